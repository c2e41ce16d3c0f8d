package proxy

import (
	"errors"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/internal/h1"
	"github.com/outrigger-mesh/outrigger/resilience"
)

// The per-request "why" (issue 6 item 5): a request that carries
// "X-Outrigger-Debug: why" from a client allowed to ask (whyPeerAllowed)
// gets its trail back in one X-Outrigger-Why response field: listener,
// route, service, each attempt with its endpoint and outcome, the backoff
// before each retry, the retries taken, the timeouts in force and, when
// the proxy made the answer itself, its cause. The request field never
// reaches the endpoint, whoever sent it. The admin port's /why explains
// a request of a given shape without sending it; this explains a real
// one.
//
// Both engines fill a whyTrail while they serve the request: the fast
// path one per connection (h1conn.why, no allocation: the field is
// appended to the response head in the connection's write buffer),
// net/http's path one per request that asks (exchange.why and the
// request context, see whyOf). A trail is used by the request's own
// goroutine only.

// DebugHeader is the request field that asks for the trail; its value is
// a list of tokens, of which "why" is the one understood.
const DebugHeader = "X-Outrigger-Debug"

// WhyHeader is the response field carrying the trail.
const WhyHeader = "X-Outrigger-Why"

// whyAttempts is how many attempts a trail keeps: the last ones.
const whyAttempts = 8

// maxWhyLen bounds the field's value; a longer trail (long route or
// service names) is cut at an item boundary and ends with "; truncated".
const maxWhyLen = 1024

// whyPeerAllowed reports whether a client at addr may ask for the trail:
// it reveals endpoint addresses and timeouts, so for now only a client on
// the proxy's own host (loopback, all of 127.0.0.0/8 and ::1) may.
//
// Hook for allowed identities (issue 6 item 5, "or an allowed
// identity"): once the HTTP engine terminates mTLS with SPIFFE
// identities, the verified peer ID goes here as a second argument and an
// allow list from the admin config is checked next to this test; both
// engines call only this function to decide.
func whyPeerAllowed(addr netip.Addr) bool {
	return addr.Unmap().IsLoopback()
}

// whyAttempt is one attempt of a trail.
type whyAttempt struct {
	addr    netip.AddrPort
	status  int           // the response status; 0 when kind says why there is none
	kind    string        // the failure kind when no response came
	backoff time.Duration // the wait before it, when it is a retry
	retry   bool          // the retry policy took it (not a reconnect after a failed dial)
}

// whyTrail is one request's trail.
type whyTrail struct {
	on bool // the request asked and may (the fast path's per-connection trail)

	// net/http's path: the route and service (the fast path passes its
	// RequestRecord's).
	route, service string

	n       int // attempts so far; the last whyAttempts are in att
	att     [whyAttempts]whyAttempt
	retries int
	lastN   int // retryState.n at the previous attempt

	// timeouts in force: the listener's response timeout, the retry
	// policy's per-try and overall timeouts (0: none)
	respTimeout, perTry, overall time.Duration
	// the request's deadline for its response head (route timeout,
	// grpc-timeout, the retry policy's timeout: the earliest; zero:
	// none), and how long it was from the first attempt
	deadline   time.Time
	reqTimeout time.Duration
}

// bound records the request's deadline, once, before its first attempt.
func (w *whyTrail) bound(deadline time.Time) {
	if deadline.IsZero() || !w.deadline.IsZero() {
		return
	}
	w.deadline = deadline
	w.reqTimeout = time.Until(deadline).Round(time.Millisecond)
}

// reset starts the trail of a request that asked for it.
func (w *whyTrail) reset(respTimeout time.Duration) {
	*w = whyTrail{on: true, respTimeout: respTimeout}
}

// attempt records an attempt on addr: its response status, or err when
// no response head came. bound is the wait for the head the attempt had
// on the fast path (0 on net/http's path, whose per-try timeout has its
// own error). rs is the request's retry state (nil: no policy); an
// attempt after the policy allowed a retry is a retry, with rs's backoff.
func (w *whyTrail) attempt(addr netip.AddrPort, status int, err error, bound time.Duration, rs *retryState) {
	a := whyAttempt{addr: addr, status: status}
	if err != nil {
		a.status, a.kind = 0, w.kindOf(err, bound, rs)
	}
	if rs != nil {
		if w.n == 0 {
			c := rs.pol.Config()
			w.perTry, w.overall = c.PerTryTimeout, c.Timeout
		} else if rs.n != w.lastN {
			a.retry, a.backoff = true, rs.backoff
			w.retries++
		}
		w.lastN = rs.n
	}
	w.att[w.n%whyAttempts] = a
	w.n++
}

// attemptHTTP is attempt for net/http's path.
func (w *whyTrail) attemptHTTP(addr netip.AddrPort, resp *http.Response, err error, rs *retryState) {
	status := 0
	if resp != nil {
		status = resp.StatusCode
	}
	w.attempt(addr, status, err, 0, rs)
}

// kindOf names how an attempt without a response failed, in the words of
// the error causes: connect_failure, reset, timeout (the response
// timeout), per_try_timeout, overall_timeout, refused_stream, canceled,
// failure.
func (w *whyTrail) kindOf(err error, bound time.Duration, rs *retryState) string {
	o := errOutcome(err)
	switch o.Kind {
	case resilience.KindConnectFailure:
		return "connect_failure"
	case resilience.KindRefusedStream:
		return "refused_stream"
	case resilience.KindReset:
		return "reset"
	case resilience.KindCanceled:
		return "canceled"
	case resilience.KindTimeout:
		switch {
		case !w.deadline.IsZero() && !time.Now().Before(w.deadline):
			// The request's own deadline ended it, whichever
			// bound the attempt's wait (both engines alike).
			return "request_timeout"
		case errors.Is(err, errPerTryTimeout):
			return "per_try_timeout"
		case rs != nil && bound > 0 && bound < w.respTimeout:
			// The fast path's wait was shortened by the policy.
			if c := rs.pol.Config(); c.PerTryTimeout == bound {
				return "per_try_timeout"
			}
			return "overall_timeout"
		}
		return "timeout"
	}
	return "failure"
}

// appendField appends the trail as a WhyHeader field line.
func (w *whyTrail) appendField(b []byte, listener, route, service, cause string) []byte {
	b = append(b, WhyHeader+": "...)
	b = w.appendValue(b, listener, route, service, cause)
	return append(b, "\r\n"...)
}

// value is the trail as a field value, for net/http's path.
func (w *whyTrail) value(listener, cause string) string {
	return string(w.appendValue(make([]byte, 0, 256), listener, w.route, w.service, cause))
}

// appendValue appends the trail, e.g.
//
//	listener=web; route=api; service=web.shop; attempt=1 127.0.0.1:9101 503; attempt=2 127.0.0.1:9102 200 backoff=12.5ms; retries=1; response_timeout=15s
//
// Items are "; "-separated key=value pairs, in this order, each present
// only when it applies: listener, route (absent when none matched),
// service, attempt (one per attempt, oldest first: its number, endpoint,
// then the status or failure kind, then backoff=d for a retry),
// attempts (the total, when more were made than are shown), retries,
// response_timeout, per_try_timeout, overall_timeout, cause (the
// X-Outrigger-Error of an answer the proxy made). Durations are as Go's
// time.ParseDuration reads them.
func (w *whyTrail) appendValue(b []byte, listener, route, service, cause string) []byte {
	start := len(b)
	b = appendWhyItem(b, start, "listener", listener)
	if route != "" {
		b = appendWhyItem(b, start, "route", route)
	}
	if service != "" {
		b = appendWhyItem(b, start, "service", service)
	}
	first := max(0, w.n-whyAttempts)
	for i := first; i < w.n; i++ {
		a := &w.att[i%whyAttempts]
		b = whySep(b, start)
		b = append(b, "attempt="...)
		b = strconv.AppendInt(b, int64(i+1), 10)
		b = append(b, ' ')
		b = a.addr.AppendTo(b)
		b = append(b, ' ')
		if a.kind != "" {
			b = append(b, a.kind...)
		} else {
			b = strconv.AppendInt(b, int64(a.status), 10)
		}
		if a.retry {
			b = append(b, " backoff="...)
			b = appendWhyDuration(b, a.backoff)
		}
	}
	if first > 0 {
		b = whySep(b, start)
		b = append(b, "attempts="...)
		b = strconv.AppendInt(b, int64(w.n), 10)
	}
	if w.retries > 0 {
		b = whySep(b, start)
		b = append(b, "retries="...)
		b = strconv.AppendInt(b, int64(w.retries), 10)
	}
	reqTimeout := w.reqTimeout
	if w.overall > 0 && reqTimeout >= w.overall-time.Millisecond {
		reqTimeout = 0 // the policy's overall timeout is the deadline: said once
	}
	for _, t := range [...]struct {
		key string
		d   time.Duration
	}{{"response_timeout", w.respTimeout}, {"per_try_timeout", w.perTry}, {"overall_timeout", w.overall}, {"request_timeout", reqTimeout}} {
		if t.d > 0 {
			b = whySep(b, start)
			b = append(b, t.key...)
			b = append(b, '=')
			b = appendWhyDuration(b, t.d)
		}
	}
	if cause != "" {
		b = appendWhyItem(b, start, "cause", cause)
	}
	if len(b)-start > maxWhyLen {
		b = truncateWhy(b, start)
	}
	return b
}

// whySep appends the separator before an item that is not the first.
func whySep(b []byte, start int) []byte {
	if len(b) > start {
		b = append(b, "; "...)
	}
	return b
}

// appendWhyItem appends key=value; bytes of value that would break the
// field or its parsing (controls, ';', spaces, non-ASCII) become '_'.
// Names come from the config, which validates them loosely.
func appendWhyItem(b []byte, start int, key, value string) []byte {
	b = whySep(b, start)
	b = append(b, key...)
	b = append(b, '=')
	for i := 0; i < len(value); i++ {
		c := value[i]
		if c <= ' ' || c == ';' || c >= 0x7f {
			c = '_'
		}
		b = append(b, c)
	}
	return b
}

// truncateWhy cuts the value that starts at b[start] to at most
// maxWhyLen bytes at an item boundary and marks it.
func truncateWhy(b []byte, start int) []byte {
	const mark = "; truncated"
	v := b[start : start+maxWhyLen-len(mark)+1]
	cut := len(v) - 1
	for cut > 0 && !(v[cut-1] == ';' && v[cut] == ' ') {
		cut--
	}
	if cut > 0 {
		cut-- // drop the ';' too
	}
	b = b[:start+cut]
	return append(b, mark...)
}

// appendWhyDuration appends d as time.ParseDuration reads it, without
// allocating (time.Duration.String allocates): whole seconds as "15s",
// else milliseconds with up to three decimals ("12.345ms"), below a
// millisecond whole microseconds ("250us").
func appendWhyDuration(b []byte, d time.Duration) []byte {
	switch {
	case d%time.Second == 0:
		b = strconv.AppendInt(b, int64(d/time.Second), 10)
		return append(b, 's')
	case d >= time.Millisecond:
		us := int64(d+time.Microsecond/2) / int64(time.Microsecond)
		b = strconv.AppendInt(b, us/1000, 10)
		if frac := us % 1000; frac != 0 {
			b = append(b, '.')
			digits := [3]byte{byte('0' + frac/100), byte('0' + frac/10%10), byte('0' + frac%10)}
			n := 3
			for digits[n-1] == '0' {
				n--
			}
			b = append(b, digits[:n]...)
		}
		return append(b, "ms"...)
	default:
		b = strconv.AppendInt(b, int64(d/time.Microsecond), 10)
		return append(b, "us"...)
	}
}

// whyKey is the request context key of a net/http-path trail.
type whyKey struct{}

// whyOf returns the trail of a request on net/http's path that asked for
// it, else nil.
func whyOf(r *http.Request) *whyTrail {
	w, _ := r.Context().Value(whyKey{}).(*whyTrail)
	return w
}

// whyBegin removes the DebugHeader fields of a request on net/http's path
// (they never reach the endpoint; serveHTTP edits the request's fields in
// place as for an h2c upgrade) and returns its trail when it asks "why"
// and its client may ask, else nil.
func (l *HTTPListener) whyBegin(r *http.Request) *whyTrail {
	asks := false
	for _, v := range r.Header[DebugHeader] {
		asks = asks || h1.HasToken([]byte(v), "why")
	}
	delete(r.Header, DebugHeader)
	if !asks {
		return nil
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil || !whyPeerAllowed(ap.Addr()) {
		return nil
	}
	w := new(whyTrail)
	w.reset(l.cfg.ResponseTimeout)
	return w
}
