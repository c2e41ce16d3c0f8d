package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/outrigger-mesh/outrigger/balancer"
	"github.com/outrigger-mesh/outrigger/proxy/route"
	"github.com/outrigger-mesh/outrigger/resilience"
)

// DialError is a failed dial to an endpoint: nothing reached it, so the
// request may be retried on another endpoint whatever its method.
type DialError struct {
	Addr string // the endpoint's host:port
	Err  error
}

func (e *DialError) Error() string { return "dial " + e.Addr + ": " + e.Err.Error() }
func (e *DialError) Unwrap() error { return e.Err }

// StatusError is the DoneInfo.Err of a request whose endpoint answered with
// a 5xx status: the exchange completed, but the endpoint reported a failure
// (what outlier detection counts).
type StatusError struct{ Code int }

func (e *StatusError) Error() string { return "upstream status " + strconv.Itoa(e.Code) }

// statusErrors are preallocated so that a 5xx costs no allocation.
var statusErrors = func() (s [100]StatusError) {
	for i := range s {
		s[i].Code = 500 + i
	}
	return s
}()

// exchange is what serveHTTP decided for one request; the ReverseProxy
// hooks find it in the request context.
type exchange struct {
	route   *route.Route
	service string
	up      Upstream
	body    *requestBody   // set by RoundTrip when the request has a body
	rec     *RequestRecord // nil unless the listener has an Observer
	why     *whyTrail      // nil unless the request asked for X-Outrigger-Why (debugwhy.go)
}

type exchangeKey struct{}

func exchangeOf(ctx context.Context) *exchange { return ctx.Value(exchangeKey{}).(*exchange) }

// viaValue is this hop's Via entry for a request of the given protocol
// version (RFC 9110 §7.6.3: received-protocol, then our pseudonym).
func viaValue(major, minor int) string {
	switch {
	case major == 2:
		return "2 outrigger"
	case major == 1 && minor == 0:
		return "1.0 outrigger"
	default:
		return "1.1 outrigger"
	}
}

// rewrite builds the upstream request. ReverseProxy has already removed the
// hop-by-hop fields of RFC 9110 §7.6.1 (Connection and the fields it names,
// Keep-Alive, Proxy-Connection, Proxy-Authenticate, Proxy-Authorization, TE
// but "trailers", Trailer, Transfer-Encoding, Upgrade unless this is an
// upgrade) and X-Forwarded-For/-Host/-Proto and Forwarded.
func (l *HTTPListener) rewrite(pr *httputil.ProxyRequest) {
	x := exchangeOf(pr.In.Context())
	in, out := pr.In, pr.Out
	rc := &x.route.Config

	out.URL.Scheme = "http"
	out.URL.Host = x.service // a placeholder: RoundTrip puts the picked endpoint here
	out.URL.Path = x.route.RewritePath(in.URL.Path)
	if in.URL.RawPath != "" {
		// URL.EscapedPath falls back to escaping Path if this is not a
		// valid encoding of it.
		out.URL.RawPath = x.route.RewritePath(in.URL.RawPath)
	}
	if rc.RewriteHost != "" {
		out.Host = rc.RewriteHost
	}

	// X-Forwarded-*: kept and extended from a trusted peer, else replaced.
	client, trusted := l.peer(in.RemoteAddr)
	h := out.Header
	if prior := in.Header["X-Forwarded-For"]; trusted && len(prior) > 0 {
		h["X-Forwarded-For"] = []string{strings.Join(prior, ", ") + ", " + client}
	} else {
		h["X-Forwarded-For"] = []string{client}
	}
	if v := in.Header["X-Forwarded-Proto"]; trusted && len(v) > 0 {
		h["X-Forwarded-Proto"] = v
	} else {
		h["X-Forwarded-Proto"] = []string{"http"}
	}
	if v := in.Header["X-Forwarded-Host"]; trusted && len(v) > 0 {
		h["X-Forwarded-Host"] = v
	} else {
		h["X-Forwarded-Host"] = []string{in.Host}
	}
	h["Via"] = append(h["Via"], viaValue(in.ProtoMajor, in.ProtoMinor))
	applyHeaderOps(h, rc.RequestHeaders)
}

// peer returns the client address of a request's connection and whether
// it is a trusted proxy.
func (l *HTTPListener) peer(remoteAddr string) (string, bool) {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return remoteAddr, false
	}
	a := ap.Addr().Unmap()
	for _, p := range l.cfg.TrustedProxies {
		if p.Contains(a) {
			return a.String(), true
		}
	}
	return a.String(), false
}

// modifyResponse edits the endpoint's response before it is copied.
func (l *HTTPListener) modifyResponse(resp *http.Response) error {
	x := exchangeOf(resp.Request.Context())
	if resp.StatusCode != http.StatusSwitchingProtocols && resp.Request.ProtoMajor == 1 && isUpgrade(resp.Request) {
		// The framing guard stopped following this connection when the
		// upgrade was asked for; without the upgrade, the connection must
		// not carry another request.
		resp.Header.Set("Connection", "close")
	}
	resp.Header["Via"] = append(resp.Header["Via"], viaValue(resp.ProtoMajor, resp.ProtoMinor))
	// An endpoint's own trail field would pass for the proxy's: only
	// this hop writes one, and only when asked.
	delete(resp.Header, WhyHeader)
	applyHeaderOps(resp.Header, x.route.Config.ResponseHeaders)
	if x.why != nil {
		resp.Header.Set(WhyHeader, x.why.value(l.cfg.Name, ""))
	}
	return nil
}

// proxyError answers a request whose forwarding failed before the response
// started. Once the response started, ReverseProxy aborts the stream
// instead (panic(http.ErrAbortHandler): HTTP/1 closes the connection,
// HTTP/2 resets the stream), so the client never mistakes a truncated body
// for a whole one.
func (l *HTTPListener) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	var (
		dialErr   *DialError
		tooBig    *http.MaxBytesError
		netErr    net.Error
		switchErr *switchError
	)
	var clientErr error
	if b := exchangeOf(r.Context()).body; b != nil {
		if e := b.err.Load(); e != nil {
			clientErr = *e
		}
	}
	if r.Context().Err() != nil {
		// The client went away (or the drain's deadline ended every
		// request): nobody reads an answer, and none is made, so that
		// the record keeps status 0 as on the fast path
		// (timeout_client.go) and no breaker counts it. Returning
		// without a write would make net/http send an empty 200 (to a
		// client that only half-closed, say): abort instead — HTTP/1
		// closes without a response, HTTP/2 resets the stream.
		l.log.Debug("request abandoned by the client", "err", err)
		panic(http.ErrAbortHandler)
	}
	switch {
	case errors.As(err, &tooBig) || errors.As(clientErr, &tooBig):
		l.writeError(w, r, http.StatusRequestEntityTooLarge, causeBodyTooLarge,
			"request body larger than "+strconv.FormatInt(tooBig.Limit, 10)+" bytes", true)
	case clientErr != nil && r.Context().Err() == nil:
		// The client's body broke its framing (a bad chunk) or its
		// connection; what reached the endpoint was cut short, never
		// completed into something else.
		l.writeError(w, r, http.StatusBadRequest, causeBadRequest, "malformed request body", true)
	case errors.As(err, &dialErr):
		if ok, n := l.connectLog.allow(); ok {
			l.log.Warn("requests failing: cannot connect to endpoints", "err", err, "suppressed", n)
		}
		l.writeError(w, r, http.StatusBadGateway, causeConnectFailure, "upstream connect failure", false)
	case errors.Is(err, balancer.ErrNoEndpoints):
		if ok, n := l.noEndpointsLog.allow(); ok {
			l.log.Warn("requests failing: no endpoints", "service", exchangeOf(r.Context()).service, "err", err, "suppressed", n)
		}
		l.writeError(w, r, http.StatusServiceUnavailable, causeNoEndpoints, "no endpoints", false)
	case errors.As(err, &switchErr):
		l.log.Debug("upstream exchange failed", "err", err)
		l.writeError(w, r, http.StatusBadGateway, causeUpstreamReset, "upstream switched to another protocol than requested", true)
	case r.Context().Err() == nil && errors.As(err, &netErr) && netErr.Timeout():
		l.writeError(w, r, http.StatusGatewayTimeout, causeUpstreamTimeout, "upstream timeout", false)
	default:
		// The endpoint closed or reset the connection before a response,
		// or the client went away (then nobody reads this).
		l.log.Debug("upstream exchange failed", "err", err)
		l.writeError(w, r, http.StatusBadGateway, causeUpstreamReset, "upstream connection reset", false)
	}
}

// upstreamTransport picks an endpoint for each request and sends it there
// over the listener's pooled http.Transport.
type upstreamTransport struct{ l *HTTPListener }

// RoundTrip picks, sends, and on a dial error picks another endpoint (up to
// ConnectAttempts): a failed dial sent nothing, and the request body is
// untouched. With a retry policy (WithRetry) it also retries what the
// policy allows (see retry.go), discarding a retried response whole.
// Every pick's Done is called exactly once: at once when its attempt
// failed or its response was discarded, else when the response body is
// finished (EOF, read error or Close).
func (t *upstreamTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	l := t.l
	x := exchangeOf(req.Context())
	// The deadline of the response head over all attempts (timeout.go;
	// zero: none); with grpcTimeout each attempt carries what is left of
	// it as its grpc-timeout.
	deadline, grpcTimeout := l.deadlineOf(req, x.route)
	up, pol, budget := retryOf(x.up, x.route)
	var rs *retryState
	if pol != nil {
		rs = &retryState{}
		rs.begin(pol, budget, methodName([]byte(req.Method), false),
			len(req.Header["Idempotency-Key"])+len(req.Header["X-Idempotency-Key"]) > 0, x.route.Config.Idempotent)
		rs.bound(deadline)
		deadline = rs.deadline
	}
	if x.why != nil {
		x.why.bound(deadline)
	}
	grpcTimeout = grpcTimeout && !deadline.IsZero()
	var body *requestBody
	if req.Body != nil && req.Body != http.NoBody {
		// http.Transport closes the body when a round trip fails; the
		// wrapper keeps it open for the next attempt. net/http's server
		// closes the real body after the handler.
		body = &requestBody{rc: req.Body}
		if rs != nil && pol.KeepBody(max(req.ContentLength, 0)) {
			body.keep, body.size = pol.Config().MaxReplayBody, req.ContentLength
		}
		x.body = body
	}
	resp, err := t.attempts(req, up, rs, body, deadline, grpcTimeout)
	if rs != nil && resp == nil {
		rs.end()
	}
	return resp, err
}

// attempts is RoundTrip's loop over picks. deadline (zero: none) bounds
// every attempt's wait for its response head, and no attempt starts after
// it; with grpcTimeout each attempt carries what is left as its
// grpc-timeout.
func (t *upstreamTransport) attempts(req *http.Request, up Upstream, rs *retryState, body *requestBody,
	deadline time.Time, grpcTimeout bool) (*http.Response, error) {
	l := t.l
	x := exchangeOf(req.Context())
	tr := l.transport
	if l.h2 != nil && !isUpgrade(req) {
		// An upgrade needs HTTP/1.1 (HTTP/2 has no Upgrade; RFC 9113
		// §8.6), so it alone goes over the HTTP/1.1 transport.
		tr = l.h2
	}
	var info balancer.PickInfo
	var lastErr error            // the previous attempt's error, when it failed
	dials := 0                   // failed dials
	var next balancer.PickResult // picked while a retried response was held (Endpoint nil: none)
	for {
		res, err := next, error(nil)
		next = balancer.PickResult{}
		if res.Endpoint == nil {
			res, err = pickEndpoint(up, &info)
		}
		if err != nil {
			if lastErr != nil {
				return nil, fmt.Errorf("%w; then pick: %w", lastErr, err)
			}
			return nil, fmt.Errorf("pick %s: %w", x.service, err)
		}
		out := req.WithContext(req.Context()) // shallow copy for this attempt
		u := *req.URL
		u.Host = res.Endpoint.Addr.String()
		out.URL = &u
		if body != nil {
			out.Body = body.attempt()
		}
		if x.rec != nil {
			x.rec.Attempts++
			x.rec.Endpoint = res.Endpoint.Addr
		}
		var stop func() bool // the per-try timer; nil without a retry policy or deadline
		var cancel context.CancelFunc
		d := untilDeadline(0, deadline)
		if rs != nil {
			d = rs.attemptTimeout(0) // rs.deadline is deadline
		}
		if d > 0 {
			// The transport's ResponseTimeout still applies too.
			out, stop, cancel = perTry(out, d)
		}
		if grpcTimeout {
			// The endpoint gets what this attempt may take: the
			// per-try bound when it is the nearer one.
			dl := deadline
			if d > 0 {
				if t := time.Now().Add(d); dl.IsZero() || t.Before(dl) {
					dl = t
				}
			}
			setGRPCTimeout(out, dl)
		}
		span := l.startAttemptSpan(out, x, res.Endpoint)
		start := time.Now()
		resp, err := tr.RoundTrip(out)
		if stop != nil && !stop() {
			// The timer fired: its cancel breaks the response too, if
			// one came meanwhile.
			if err == nil {
				resp.Body.Close()
				err = context.DeadlineExceeded
			}
			err = &perTryTimeoutError{err}
		}
		if err == nil && resp.StatusCode == http.StatusSwitchingProtocols {
			if serr := checkSwitch(out, resp); serr != nil {
				// ReverseProxy would answer it through its ErrorHandler
				// without closing the body: Done never called, the
				// connection and the per-try context kept. A failed
				// attempt instead, its connection closed.
				resp.Body.Close()
				resp, err = nil, serr
			}
		}
		if x.why != nil {
			x.why.attemptHTTP(res.Endpoint.Addr, resp, err, rs)
		}
		if err != nil {
			if cancel != nil {
				cancel()
			}
			doneErr := err
			if req.Context().Err() != nil {
				// The client left (net/http canceled the request's
				// context): neutral, the endpoint is not at fault.
				doneErr = context.Canceled
			}
			res.Done(balancer.DoneInfo{Err: doneErr, Duration: time.Since(start)})
			endAttemptSpan(span, doneErr)
			if req.Context().Err() != nil {
				return nil, err
			}
			if pastDeadline(deadline) {
				// Out of time, whatever this attempt's failure was.
				l.log.Debug("request out of time", "err", err)
				return nil, errRequestTimeout
			}
			info.AddTried(res.Endpoint.Addr)
			lastErr = err
			var de *DialError
			dialed := !errors.As(err, &de)
			if !dialed && (body == nil || !body.touched.Load()) {
				if dials++; dials < l.cfg.ConnectAttempts {
					l.log.Debug("connect failed", "endpoint", res.Endpoint.ID, "attempt", dials, "err", err)
					continue
				}
			}
			if rs != nil {
				sent := dialed || (body != nil && body.touched.Load())
				if d, ok := rs.decide(errOutcome(err), sent, body.replayable()); ok {
					l.log.Debug("retrying", "endpoint", res.Endpoint.ID, "reason", string(d.Reason), "attempt", rs.n, "err", err)
					if !rs.wait(req.Context()) {
						return nil, err
					}
					if x.rec != nil {
						x.rec.Retries++
					}
					continue
				}
			}
			return nil, err
		}
		done := tracedDone(span, resp.StatusCode, res.Done)
		if rs != nil {
			o, grpcBody := t.responseOutcome(req, resp, body, rs.pol.RetriesGRPC())
			if grpcBody != nil {
				resp.Body = grpcBody
			}
			if d, ok := rs.decide(o, true, body.replayable()); ok {
				// The attempt's outcome goes to its endpoint before the
				// next Pick, as for any finished attempt: the picker
				// must see it (an ejection or a tripped breaker it
				// causes, a least-request count), or the retry could go
				// to the very endpoint this response just ejected, past
				// its breaker. The response itself is held until the
				// next endpoint is picked, after the backoff: when none
				// is (that Done ejected the last one, or the picker
				// emptied), it is the client's answer after all
				// (doc.go).
				doneDiscarded(done, resp.StatusCode, o, start)
				done = doneReported
				info.AddTried(res.Endpoint.Addr)
				if !rs.wait(req.Context()) {
					// The client left: nobody reads an answer.
					discardBody(resp.Body)
					if cancel != nil {
						cancel()
					}
					return nil, context.Canceled
				}
				var perr error
				if next, perr = pickEndpoint(up, &info); perr == nil {
					// None of the response reaches the client; its
					// connection is kept when the body is small.
					discardBody(resp.Body)
					if cancel != nil {
						cancel()
					}
					lastErr = nil
					l.log.Debug("retrying", "endpoint", res.Endpoint.ID, "status", resp.StatusCode, "reason", string(d.Reason), "attempt", rs.n)
					if x.rec != nil {
						x.rec.Retries++
					}
					continue
				}
				rs.cancelRetry()
				l.log.Debug("not retrying: no endpoint to retry on", "endpoint", res.Endpoint.ID, "status", resp.StatusCode, "err", perr)
			}
		}
		rb := &responseBody{rc: resp.Body, done: done, start: start, ctx: req.Context(), rs: rs, cancel: cancel}
		if resp.StatusCode >= 500 && resp.StatusCode < 600 {
			rb.status = &statusErrors[resp.StatusCode-500]
		} else if l.cfg.GRPC {
			rb.grpc = resp // the call's status is known at EOF
		}
		if rwc, ok := resp.Body.(io.ReadWriteCloser); ok && resp.StatusCode == http.StatusSwitchingProtocols {
			// ReverseProxy tunnels an upgrade through the body, which
			// must stay an io.ReadWriteCloser.
			resp.Body = &upgradeBody{responseBody: rb, w: rwc}
		} else {
			// A tunnel's body is read on ReverseProxy's copying
			// goroutines: only this one is read where the record is.
			rb.rec = x.rec
			resp.Body = rb
		}
		return resp, nil
	}
}

// perTry returns out with a context that the per-try timer cancels after
// d, unless stop is called first (when the response head came); cancel
// releases the context once the response is done with.
func perTry(out *http.Request, d time.Duration) (*http.Request, func() bool, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(out.Context())
	t := time.AfterFunc(d, func() { cancel(errPerTryTimeout) })
	return out.WithContext(ctx), t.Stop, func() { cancel(nil) }
}

// responseOutcome classifies a response for the retry policy: its
// status, and for a gRPC call its grpc-status. A gRPC response without
// grpc-status in its head carries it in trailers: with peek (the policy
// retries gRPC statuses) and the request body all sent, one read of the
// body tells whether the call ends at once (trailers, no message), and
// the body returned replays what that read got. A response that has a
// message is not retried on its status.
func (t *upstreamTransport) responseOutcome(req *http.Request, resp *http.Response, body *requestBody, peek bool) (resilience.Outcome, io.ReadCloser) {
	o := resilience.Response(resp.StatusCode)
	if !t.l.cfg.GRPC || resp.StatusCode != http.StatusOK || !isGRPCRequest(req) {
		return o, nil
	}
	if v := resp.Header.Get("Grpc-Status"); v != "" {
		return grpcOutcome(v), nil
	}
	if !peek || (body != nil && !body.eof.Load()) {
		// No gRPC status to retry on, or a client stream still
		// sending: do not wait.
		return o, nil
	}
	var b [512]byte
	var n int
	var err error
	for n == 0 && err == nil {
		n, err = resp.Body.Read(b[:])
	}
	if n == 0 && err == io.EOF {
		return grpcOutcome(resp.Trailer.Get("Grpc-Status")), nil
	}
	return o, &prefixedBody{prefix: append([]byte(nil), b[:n]...), rc: resp.Body, err: err}
}

// grpcOutcome is the outcome of a gRPC call that ended with grpc-status v.
func grpcOutcome(v string) resilience.Outcome {
	var code int
	if e, ok := grpcStatusErr(v).(*GRPCStatusError); ok {
		code = e.Code
	}
	return resilience.GRPCResponse(code)
}

// prefixedBody is a response body whose first bytes were read already.
type prefixedBody struct {
	prefix []byte
	rc     io.ReadCloser
	err    error // the error of the read that got prefix
}

func (b *prefixedBody) Read(p []byte) (int, error) {
	if len(b.prefix) > 0 {
		n := copy(p, b.prefix)
		b.prefix = b.prefix[n:]
		return n, nil
	}
	if b.err != nil {
		return 0, b.err
	}
	return b.rc.Read(p)
}

func (b *prefixedBody) Close() error { return b.rc.Close() }

// requestBody is the client's body as given to one or more attempts. Close
// is a no-op (see RoundTrip); touched says whether any attempt read it.
// With keep > 0 it keeps what it read, up to keep bytes, so that an
// attempt after the first can send it again once it was read to its end.
type requestBody struct {
	rc      io.ReadCloser
	touched atomic.Bool
	err     atomic.Pointer[error] // the client's read error other than EOF

	// Written by the reading attempt; read by RoundTrip after keptN or
	// eof says the body is whole (the atomics order them).
	keep  int64  // the most bytes kept for replay; 0: none
	size  int64  // the body's Content-Length; -1: unknown
	kept  []byte // what was read, while within keep
	over  bool   // more than keep was read
	keptN atomic.Int64
	eof   atomic.Bool
}

func (b *requestBody) Read(p []byte) (int, error) {
	if !b.touched.Load() {
		b.touched.Store(true)
	}
	n, err := b.rc.Read(p)
	if b.keep > 0 && !b.over && n > 0 {
		if int64(len(b.kept)+n) > b.keep {
			b.over, b.kept = true, nil
			b.keptN.Store(-1)
		} else {
			b.kept = append(b.kept, p[:n]...)
			b.keptN.Store(int64(len(b.kept)))
		}
	}
	if err == io.EOF {
		b.eof.Store(true)
	}
	if err != nil && err != io.EOF {
		b.err.CompareAndSwap(nil, &err)
	}
	return n, err
}

func (b *requestBody) Close() error { return nil }

// replayable reports whether the body can be sent again: nobody read it
// yet, or it was read to its end (all its Content-Length, or EOF) and kept
// whole. A nil body has nothing to send.
func (b *requestBody) replayable() bool {
	if b == nil || !b.touched.Load() {
		return true
	}
	if b.keep == 0 {
		return false
	}
	k := b.keptN.Load()
	return k >= 0 && ((b.size >= 0 && k == b.size) || (b.eof.Load() && b.keptN.Load() >= 0))
}

// attempt returns the body for the next attempt: b itself until it was
// read, then (replayable only) a reader of the kept bytes. An attempt
// that failed may leave its transport's writer still reading b: a reader
// per attempt keeps them apart.
func (b *requestBody) attempt() io.ReadCloser {
	if !b.touched.Load() {
		return b
	}
	return &replayBody{Reader: bytes.NewReader(b.kept)}
}

// replayBody is a kept body sent again; Close is a no-op like requestBody's.
type replayBody struct{ *bytes.Reader }

func (replayBody) Close() error { return nil }

// responseBody calls Done once, when the body is finished: at EOF (success,
// the StatusError of a 5xx, or on a gRPC listener the GRPCStatusError of a
// non-OK grpc-status), at a read error (the endpoint failed
// mid-body), or at Close before either (the client went away or the proxy
// stopped copying: the request context's error, nil if there is none).
type responseBody struct {
	rc       io.ReadCloser
	rs       *retryState        // the request's retry accounting, ended with the body; nil: none
	cancel   context.CancelFunc // releases the attempt's per-try context; nil: none
	done     func(balancer.DoneInfo)
	start    time.Time
	ctx      context.Context
	status   *StatusError
	grpc     *http.Response // on a gRPC listener: read its status at EOF
	rec      *RequestRecord // the request's record (nil: none); read on the handler's goroutine only
	finished atomic.Bool
}

func (b *responseBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil {
		if err == io.EOF {
			if b.grpc != nil {
				// Trailers are in place once the body returned EOF.
				b.finish(responseGRPCErr(b.grpc))
				return n, err
			}
			b.finish(nil)
		} else {
			if b.rec != nil && b.ctx.Err() == nil {
				// The endpoint broke the body after the head: as on
				// the fast path (h1relay.go).
				b.rec.Cause = causeUpstreamReset
			}
			b.finish(err)
		}
	}
	return n, err
}

func (b *responseBody) Close() error {
	err := b.rc.Close()
	b.finish(b.ctx.Err())
	return err
}

func (b *responseBody) finish(err error) {
	if b.finished.Swap(true) {
		return
	}
	if err == nil && b.status != nil {
		err = b.status
	}
	b.done(balancer.DoneInfo{Err: err, Duration: time.Since(b.start)})
	if b.cancel != nil {
		b.cancel()
	}
	if b.rs != nil {
		b.rs.end()
	}
}

// switchError is a 101 Switching Protocols that cannot be tunneled: to
// another protocol than the request asked for (or none), or without a
// connection to tunnel over.
type switchError struct{ got, want string }

func (e *switchError) Error() string {
	return fmt.Sprintf("upstream switched protocols to %q when %q was requested", e.got, e.want)
}

// checkSwitch returns a *switchError for a 101 response to req that
// ReverseProxy would not tunnel (handleUpgradeResponse): its Upgrade
// token not printable ASCII or not the request's (ASCII
// case-insensitive, each counted only when Connection lists "upgrade"),
// or a body that is not the connection.
func checkSwitch(req *http.Request, resp *http.Response) error {
	want, got := upgradeToken(req.Header), upgradeToken(resp.Header)
	for i := 0; i < len(got); i++ {
		if got[i] < ' ' || got[i] > '~' {
			return &switchError{got, want}
		}
	}
	if !strings.EqualFold(got, want) {
		return &switchError{got, want}
	}
	if _, ok := resp.Body.(io.ReadWriteCloser); !ok {
		return &switchError{got, want}
	}
	return nil
}

// upgradeToken is the Upgrade field of h when its Connection lists
// "upgrade", else "" (as ReverseProxy reads it).
func upgradeToken(h http.Header) string {
	if !headerHasToken(h, "Connection", "upgrade") {
		return ""
	}
	return h.Get("Upgrade")
}

// upgradeBody is the body of a 101 response: the endpoint's side of the
// tunnel.
type upgradeBody struct {
	*responseBody
	w io.Writer
}

func (b *upgradeBody) Write(p []byte) (int, error) { return b.w.Write(p) }

// headerHasToken reports whether a comma-separated field of h lists token
// (ASCII case-insensitive).
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h[name] {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}
