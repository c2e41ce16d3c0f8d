package proxy

import (
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
	applyHeaderOps(resp.Header, x.route.Config.ResponseHeaders)
	return nil
}

// proxyError answers a request whose forwarding failed before the response
// started. Once the response started, ReverseProxy aborts the stream
// instead (panic(http.ErrAbortHandler): HTTP/1 closes the connection,
// HTTP/2 resets the stream), so the client never mistakes a truncated body
// for a whole one.
func (l *HTTPListener) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	var (
		dialErr *DialError
		tooBig  *http.MaxBytesError
		netErr  net.Error
	)
	var clientErr error
	if b := exchangeOf(r.Context()).body; b != nil {
		if e := b.err.Load(); e != nil {
			clientErr = *e
		}
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
// untouched. Every pick's Done is called exactly once: at once when its
// attempt failed, else when the response body is finished (EOF, read error
// or Close).
func (t *upstreamTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	l := t.l
	x := exchangeOf(req.Context())
	var body *requestBody
	if req.Body != nil && req.Body != http.NoBody {
		// http.Transport closes the body when a round trip fails; the
		// wrapper keeps it open for the next attempt. net/http's server
		// closes the real body after the handler.
		body = &requestBody{rc: req.Body}
		x.body = body
	}
	tr := l.transport
	if l.h2 != nil && !isUpgrade(req) {
		// An upgrade needs HTTP/1.1 (HTTP/2 has no Upgrade; RFC 9113
		// §8.6), so it alone goes over the HTTP/1.1 transport.
		tr = l.h2
	}
	var info balancer.PickInfo
	var dialErr error
	for attempt := 0; attempt < l.cfg.ConnectAttempts; attempt++ {
		res, err := x.up.Pick(&info)
		if err == nil && res.Endpoint == nil {
			res.Done(balancer.DoneInfo{Err: errors.New("pick returned no endpoint")})
			err = errors.New("upstream returned a pick without an endpoint")
		}
		if err != nil {
			if dialErr != nil {
				return nil, fmt.Errorf("%w; then pick: %w", dialErr, err)
			}
			return nil, fmt.Errorf("pick %s: %w", x.service, err)
		}
		out := req.WithContext(req.Context()) // shallow copy for this attempt
		u := *req.URL
		u.Host = res.Endpoint.Addr.String()
		out.URL = &u
		if body != nil {
			out.Body = body
		}
		if x.rec != nil {
			x.rec.Attempts++
			x.rec.Endpoint = res.Endpoint.Addr
		}
		span := l.startAttemptSpan(out, x, res.Endpoint)
		start := time.Now()
		resp, err := tr.RoundTrip(out)
		if err != nil {
			res.Done(balancer.DoneInfo{Err: err, Duration: time.Since(start)})
			endAttemptSpan(span, err)
			var de *DialError
			if errors.As(err, &de) && (body == nil || !body.touched.Load()) && req.Context().Err() == nil {
				info.AddTried(res.Endpoint.Addr)
				dialErr = err
				l.log.Debug("connect failed", "endpoint", res.Endpoint.ID, "attempt", attempt+1, "err", err)
				continue
			}
			return nil, err
		}
		rb := &responseBody{rc: resp.Body, done: res.Done, start: start, ctx: req.Context()}
		rb.done = tracedDone(span, resp.StatusCode, rb.done)
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
			resp.Body = rb
		}
		return resp, nil
	}
	return nil, dialErr
}

// requestBody is the client's body as given to one or more attempts. Close
// is a no-op (see RoundTrip); touched says whether any attempt read it, after
// which no retry is safe.
type requestBody struct {
	rc      io.ReadCloser
	touched atomic.Bool
	err     atomic.Pointer[error] // the client's read error other than EOF
}

func (b *requestBody) Read(p []byte) (int, error) {
	if !b.touched.Load() {
		b.touched.Store(true)
	}
	n, err := b.rc.Read(p)
	if err != nil && err != io.EOF {
		b.err.CompareAndSwap(nil, &err)
	}
	return n, err
}

func (b *requestBody) Close() error { return nil }

// responseBody calls Done once, when the body is finished: at EOF (success,
// the StatusError of a 5xx, or on a gRPC listener the GRPCStatusError of a
// non-OK grpc-status), at a read error (the endpoint failed
// mid-body), or at Close before either (the client went away or the proxy
// stopped copying: the request context's error, nil if there is none).
type responseBody struct {
	rc       io.ReadCloser
	done     func(balancer.DoneInfo)
	start    time.Time
	ctx      context.Context
	status   *StatusError
	grpc     *http.Response // on a gRPC listener: read its status at EOF
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
