package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/route"
)

// Defaults for HTTPConfig's zero fields.
const (
	DefaultResponseTimeout = 15 * time.Second
	DefaultHeaderTimeout   = 10 * time.Second
	DefaultHTTPIdleTimeout = 60 * time.Second
	DefaultMaxHeaderBytes  = 64 << 10
	// upstreamIdlePerEndpoint is how many idle keep-alive connections the
	// listener keeps to one endpoint: enough for the concurrency one
	// sidecar sees, so a burst does not end in a storm of new dials.
	upstreamIdlePerEndpoint = 256
	// upstreamIdleTimeout closes pooled upstream connections nobody used
	// for this long; shorter than the usual server keep-alive timeouts
	// (nginx 75s, Go 0 = ReadTimeout, Node 5s is shorter and is why a
	// reused connection that fails before sending is retried by
	// http.Transport itself).
	upstreamIdleTimeout = 60 * time.Second
	// expectContinueWait is how long a request with "Expect: 100-continue"
	// waits for the endpoint's 100 before its body is sent anyway.
	expectContinueWait = time.Second
)

// HTTPConfig is one L7 HTTP listener: HTTP/1.1 and cleartext HTTP/2 with
// prior knowledge (h2c) on the same port.
type HTTPConfig struct {
	// Name identifies the listener in logs, errors and Server.Addrs.
	Name string
	// Listen is the host:port to bind; port 0 picks a free port.
	Listen string
	// ConnectTimeout bounds one dial to an endpoint; 0 means
	// DefaultConnectTimeout (5s).
	ConnectTimeout time.Duration
	// ConnectAttempts is how many endpoints a request tries when dialing
	// fails (safe: nothing was sent); 0 means DefaultConnectAttempts (3), at
	// most MaxConnectAttempts.
	ConnectAttempts int
	// ResponseTimeout bounds the wait for the endpoint's response headers
	// after the request was written; on expiry the client gets 504. 0 means
	// DefaultResponseTimeout (15s). Bodies have no deadline: streams may be
	// long-lived.
	ResponseTimeout time.Duration
	// HeaderTimeout bounds reading a client request's headers; 0 means
	// DefaultHeaderTimeout (10s).
	HeaderTimeout time.Duration
	// IdleTimeout closes a client keep-alive connection with no request
	// for this long; 0 means DefaultHTTPIdleTimeout (60s).
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's header section; bigger gets 431.
	// 0 means DefaultMaxHeaderBytes (64 KiB). net/http allows 4 KiB of
	// slack on HTTP/1.
	MaxHeaderBytes int
	// MaxBodyBytes bounds a request body; bigger gets 413 (at once when
	// Content-Length says so, else when the limit is crossed, if no response
	// has started). 0 means unlimited.
	MaxBodyBytes int64
	// TrustedProxies are the peers whose X-Forwarded-For, -Proto and -Host
	// are kept (the client address is appended to X-Forwarded-For); from
	// any other peer they are replaced.
	TrustedProxies []netip.Prefix
	// UpstreamProtocol is how requests go to endpoints: UpstreamHTTP1
	// (HTTP/1.1, a pool of connections per endpoint) or UpstreamH2C
	// (HTTP/2 with prior knowledge: few connections per endpoint, each
	// carrying many concurrent streams; upgrade requests still go over
	// HTTP/1.1). Empty means UpstreamH2C when GRPC is set, else
	// UpstreamHTTP1.
	UpstreamProtocol string
	// GRPC says the listener carries gRPC: errors the proxy makes itself
	// for a gRPC request (Content-Type application/grpc) are answered as
	// gRPC statuses (see grpc.go), and Done reports a non-OK grpc-status
	// as a *GRPCStatusError. gRPC needs HTTP/2 end to end, so
	// UpstreamProtocol must be UpstreamH2C.
	GRPC bool
	// NetHTTPOnly serves every connection with net/http's HTTP/1 server
	// instead of the HTTP/1.1 fast path (see doc.go): slower, for
	// comparison and as an escape hatch. The fast path runs only for
	// UpstreamHTTP1 listeners without GRPC anyway.
	NetHTTPOnly bool
}

// UpstreamProtocol values.
const (
	UpstreamHTTP1 = "http1"
	UpstreamH2C   = "h2c"
)

func (c HTTPConfig) withDefaults() HTTPConfig {
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.ConnectAttempts == 0 {
		c.ConnectAttempts = DefaultConnectAttempts
	}
	if c.ResponseTimeout == 0 {
		c.ResponseTimeout = DefaultResponseTimeout
	}
	if c.HeaderTimeout == 0 {
		c.HeaderTimeout = DefaultHeaderTimeout
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultHTTPIdleTimeout
	}
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if c.UpstreamProtocol == "" {
		c.UpstreamProtocol = UpstreamHTTP1
		if c.GRPC {
			c.UpstreamProtocol = UpstreamH2C
		}
	}
	return c
}

// Validate reports every problem with c, joined; zero fields are valid and
// mean their defaults.
func (c HTTPConfig) Validate() error {
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("listener has no name"))
	}
	if err := validateListen(c.Listen); err != nil {
		errs = append(errs, err)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"connect timeout", c.ConnectTimeout},
		{"response timeout", c.ResponseTimeout},
		{"header timeout", c.HeaderTimeout},
		{"idle timeout", c.IdleTimeout},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s %v is negative", d.name, d.v))
		}
	}
	if c.ConnectAttempts < 0 || c.ConnectAttempts > MaxConnectAttempts {
		errs = append(errs, fmt.Errorf("connect attempts %d out of range 1..%d (0 means %d)",
			c.ConnectAttempts, MaxConnectAttempts, DefaultConnectAttempts))
	}
	if c.MaxHeaderBytes < 0 {
		errs = append(errs, fmt.Errorf("max header bytes %d is negative", c.MaxHeaderBytes))
	}
	if c.MaxBodyBytes < 0 {
		errs = append(errs, fmt.Errorf("max body bytes %d is negative", c.MaxBodyBytes))
	}
	for _, p := range c.TrustedProxies {
		if !p.IsValid() {
			errs = append(errs, fmt.Errorf("trusted proxy prefix %v is invalid", p))
		}
	}
	switch c.UpstreamProtocol {
	case "", UpstreamH2C:
	case UpstreamHTTP1:
		if c.GRPC {
			errs = append(errs, errors.New("grpc needs upstream protocol \"h2c\", not \"http1\""))
		}
	default:
		errs = append(errs, fmt.Errorf("upstream protocol %q is not %q or %q", c.UpstreamProtocol, UpstreamHTTP1, UpstreamH2C))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("listener %q: %w", c.Name, err)
	}
	return nil
}

// Upstreams maps a route backend's service key (name.namespace) to its
// Upstream; *balancer.Balancer satisfies Upstream. It is built once before
// the listener starts and only read afterwards, from every request's
// goroutine. A service a route names but Upstreams lacks answers 503.
type Upstreams map[string]Upstream

// HTTPListener is one L7 listener: its config, routes and upstreams, and
// once a Server bound it, its socket. Create it with NewHTTPListener and hand
// it to exactly one Server.
//
// Each request is routed with routes.Match and, unless the route answers
// itself (redirect, fixed response), balanced on its own: Pick runs per
// request, so one keep-alive or HTTP/2 client connection spreads over all
// endpoints. Upstream connections are pooled per endpoint and reused.
type HTTPListener struct {
	// set at construction
	cfg       HTTPConfig // with defaults
	raw       HTTPConfig // as given, for Validate
	log       *slog.Logger
	hs        *http.Server
	rp        *httputil.ReverseProxy
	transport *http.Transport // HTTP/1.1; also upgrades when h2 is set
	h2        *http.Transport // HTTP/2 with prior knowledge; nil unless UpstreamH2C
	baseCtx   context.Context // parent of every request's context
	cancel    context.CancelFunc

	// set by Server.Listen before Serve starts
	ln *net.TCPListener
	// handoff feeds the connections serveConn gives to hs
	handoff *chanListener

	// the routing state of requests that start now; see SetRoutes
	routing atomic.Pointer[routing]

	// the fast path (h1conn.go): its upstream pools and dialer, and its
	// client connections for the drain (fastMu guards fast)
	pools    upstreamPools
	dialer   *net.Dialer
	fastMu   sync.Mutex
	fast     map[*h1conn]struct{}
	draining atomic.Bool
	// idle client connections park after parkAfter (h1park.go)
	parkAfter time.Duration
	parked    atomic.Int64

	// client connections (from serveConn until closed or hijacked) and
	// running handlers; Serve waits for both to reach zero
	active activity
	conns  atomic.Int64

	// rate limits for warnings
	noEndpointsLog, connectLog, acceptLog logLimiter

	// obs sees every finished request (nil: none); see observe.go
	obs       Observer
	obsDetail bool
	// tr traces requests (nil: off); see trace.go
	tr *tracing
}

// routing is the immutable routing state requests read: a request loads it
// once and uses that value to its end.
type routing struct {
	routes *route.Table // nil: every request gets 404
	ups    Upstreams
	adm    *Admission // nil: no limits (admit.go)
}

// SetRoutes swaps the route table and upstreams for requests that start
// after it returns, with no admission control (SetRouting). In-flight
// requests finish with the state they started with, established client
// connections stay open, and upgraded tunnels are untouched. It may be
// called from any goroutine, before or after Serve; t nil means every
// request gets 404. ups must not be modified afterwards.
func (l *HTTPListener) SetRoutes(t *route.Table, ups Upstreams) {
	l.SetRouting(t, ups, nil)
}

// SetRouting is SetRoutes with the routes' and services' admission
// control (nil: none), swapped together with them. adm.Routes is indexed
// like t's routes; adm must not be modified afterwards.
func (l *HTTPListener) SetRouting(t *route.Table, ups Upstreams, adm *Admission) {
	l.routing.Store(&routing{routes: t, ups: ups, adm: adm})
}

// NewHTTPListener returns a listener for cfg that routes with routes (nil:
// every request gets 404) and forwards to ups. It does not bind;
// Server.Listen validates cfg and binds.
func NewHTTPListener(cfg HTTPConfig, routes *route.Table, ups Upstreams, opts Options) *HTTPListener {
	d := cfg.withDefaults()
	l := &HTTPListener{
		cfg:     d,
		raw:     cfg,
		log:     opts.logger().With("listener", cfg.Name),
		handoff: newChanListener(),

		obs:       opts.Observer,
		obsDetail: opts.ObserveDetail,
		parkAfter: parkAfter,
		tr:        opts.tracing(cfg.Name),
	}
	l.SetRoutes(routes, ups)
	l.dialer = &net.Dialer{Timeout: d.ConnectTimeout, KeepAliveConfig: keepAlive}
	l.baseCtx, l.cancel = context.WithCancel(context.Background())
	l.transport = newUpstreamTransport(d, false)
	l.transport.DialContext = l.admitDial(l.transport.DialContext)
	if d.UpstreamProtocol == UpstreamH2C {
		l.h2 = newUpstreamTransport(d, true)
		l.h2.DialContext = l.admitDial(l.h2.DialContext)
	}
	l.rp = &httputil.ReverseProxy{
		Rewrite:        l.rewrite,
		Transport:      &upstreamTransport{l: l},
		ModifyResponse: l.modifyResponse,
		ErrorHandler:   l.admitProxyError,
		// FlushInterval 0: ReverseProxy flushes after every write for
		// text/event-stream and for responses without Content-Length, and
		// lets the ResponseWriter buffer the rest.
		ErrorLog:   slog.NewLogLogger(l.log.Handler(), slog.LevelDebug),
		BufferPool: copyBuffers,
	}
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	// HTTP/2 over TLS for a *tls.Conn handed to serveConn whose ALPN chose
	// "h2"; it has no effect on cleartext connections.
	protos.SetHTTP2(true)
	l.hs = &http.Server{
		Handler:           http.HandlerFunc(l.serveHTTP),
		Protocols:         &protos,
		ReadHeaderTimeout: d.HeaderTimeout,
		IdleTimeout:       d.IdleTimeout,
		MaxHeaderBytes:    d.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(l.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return l.baseCtx },
		ConnContext:       connContext,
		ConnState:         l.connState,
		// "OPTIONS *" comes to serveHTTP like any request, so that the
		// framing guard's request count stays exact.
		DisableGeneralOptionsHandler: true,
	}
	return l
}

// newUpstreamTransport returns a pooled transport to endpoints speaking
// HTTP/1.1, or with h2c HTTP/2 with prior knowledge only. The HTTP/2 one
// keeps one connection per endpoint and multiplexes every request over it
// (net/http dials another only when the endpoint's stream limit is
// reached); its timeouts and limits come from the same fields.
func newUpstreamTransport(d HTTPConfig, h2c bool) *http.Transport {
	dialer := &net.Dialer{Timeout: d.ConnectTimeout, KeepAliveConfig: keepAlive}
	t := &http.Transport{
		Proxy: nil, // never HTTP_PROXY from the environment
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, &DialError{Addr: addr, Err: err}
			}
			return c, nil
		},
		MaxIdleConnsPerHost:   upstreamIdlePerEndpoint,
		IdleConnTimeout:       upstreamIdleTimeout,
		ResponseHeaderTimeout: d.ResponseTimeout,
		ExpectContinueTimeout: expectContinueWait,
		// The proxy must not add Accept-Encoding and decompress: the
		// client gets the endpoint's bytes as they are.
		DisableCompression: true,
		Protocols:          new(http.Protocols),
		// Response headers are bounded like request headers.
		MaxResponseHeaderBytes: int64(d.MaxHeaderBytes),
	}
	if h2c {
		t.Protocols.SetUnencryptedHTTP2(true)
		// For HTTP/2 this bounds dials in progress, not connections: a
		// burst of requests to a new endpoint waits for one dial and
		// shares its connection, instead of each dialing one that HTTP/2
		// then throws away.
		t.MaxConnsPerHost = 1
	} else {
		t.Protocols.SetHTTP1(true)
	}
	return t
}

// copyBuffers are the body copy buffers of every HTTP listener; without a
// pool ReverseProxy allocates 32 KiB per request.
var copyBuffers = &bufferPool{pool: sync.Pool{New: func() any { return new([32 << 10]byte) }}}

type bufferPool struct{ pool sync.Pool }

func (p *bufferPool) Get() []byte { return p.pool.Get().(*[32 << 10]byte)[:] }
func (p *bufferPool) Put(b []byte) {
	if len(b) == 32<<10 {
		p.pool.Put((*[32 << 10]byte)(b))
	}
}

// Name returns the listener's configured name.
func (l *HTTPListener) Name() string { return l.cfg.Name }

func (l *HTTPListener) listenAddr() string              { return l.cfg.Listen }
func (l *HTTPListener) validate() error                 { return l.raw.Validate() }
func (l *HTTPListener) setListener(ln *net.TCPListener) { l.ln = ln }
func (l *HTTPListener) listener() *net.TCPListener      { return l.ln }

// shutdown starts the graceful part of the drain: the socket closes, idle
// keep-alive connections close, HTTP/2 connections get GOAWAY, and busy
// HTTP/1 connections close after their current response. It returns when
// every connection and handler is gone or ctx ends.
func (l *HTTPListener) shutdown(ctx context.Context) {
	l.ln.Close()
	l.drainFast()
	if err := l.hs.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		l.log.Debug("shutdown", "err", err)
	}
	l.active.wait(ctx.Done())
}

// forceClose ends what the drain deadline left: every request's context is
// canceled (aborting its upstream exchange, upgraded tunnels included) and
// every client connection is closed.
func (l *HTTPListener) forceClose() {
	l.cancel()
	l.ln.Close()
	l.closeFast()
	l.hs.Close()
}

// finish waits for every connection and handler to end, then closes the
// pooled upstream connections.
func (l *HTTPListener) finish() {
	l.active.wait(nil)
	l.cancel()
	l.transport.CloseIdleConnections()
	l.pools.closeAll()
	if l.h2 != nil {
		l.h2.CloseIdleConnections()
	}
}

func (l *HTTPListener) connState(_ net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		// Counted by serveConn when it accepted the connection.
	case http.StateClosed, http.StateHijacked:
		// Terminal states; a hijacked connection lives on in its handler,
		// which active still counts.
		l.conns.Add(-1)
		l.active.done()
	}
}

// activity counts things that must end before Serve returns. Unlike a
// sync.WaitGroup it may go from zero back up while someone waits (an
// HTTP/2 stream's handler goroutine can start after its connection
// closed).
type activity struct {
	mu   sync.Mutex
	n    int
	zero chan struct{} // closed and reset when n drops to 0; nil if nobody waits
}

func (a *activity) add() {
	a.mu.Lock()
	a.n++
	a.mu.Unlock()
}

func (a *activity) done() {
	a.mu.Lock()
	a.n--
	if a.n == 0 && a.zero != nil {
		close(a.zero)
		a.zero = nil
	}
	a.mu.Unlock()
}

// wait returns when the count is zero or stop is closed (nil: never).
func (a *activity) wait(stop <-chan struct{}) {
	for {
		a.mu.Lock()
		if a.n == 0 {
			a.mu.Unlock()
			return
		}
		if a.zero == nil {
			a.zero = make(chan struct{})
		}
		z := a.zero
		a.mu.Unlock()
		select {
		case <-z:
		case <-stop:
			return
		}
	}
}

// Error causes, sent in the X-Outrigger-Error header of every response the
// proxy makes itself, so that a client (and its operator) can tell them from
// the application's own errors.
const (
	causeNoRoute         = "no_route"          // 404
	causeNoEndpoints     = "no_endpoints"      // 503
	causeConnectFailure  = "connect_failure"   // 502
	causeUpstreamTimeout = "upstream_timeout"  // 504
	causeUpstreamReset   = "upstream_reset"    // 502
	causeBodyTooLarge    = "body_too_large"    // 413
	causeHeadersTooLarge = "headers_too_large" // 431 (see doc.go)
	causeBadRequest      = "bad_request"       // 400
	// and the admission refusals of admit.go: rate_limited (429),
	// overflow and circuit_open (503)
)

// ErrorHeader is the response header naming the cause of an error response
// the proxy made itself (no_route, no_endpoints, connect_failure,
// upstream_timeout, upstream_reset, body_too_large, bad_request,
// rate_limited, overflow, circuit_open).
const ErrorHeader = "X-Outrigger-Error"

// writeError answers with a short error the proxy made itself: as a gRPC
// status on a gRPC listener when r is a gRPC request, else text/plain.
// With closeConn the HTTP/1 connection closes after the response: its
// framing can no longer be trusted, or an unread body would have to be
// drained.
func (l *HTTPListener) writeError(w http.ResponseWriter, r *http.Request, status int, cause, msg string, closeConn bool) {
	if why := whyOf(r); why != nil {
		w.Header().Set(WhyHeader, why.value(l.cfg.Name, cause))
	}
	if l.cfg.GRPC && isGRPCRequest(r) {
		writeGRPCError(w, cause, msg)
		return
	}
	closeConn = closeConn || upgradeRefused(r)
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set(ErrorHeader, cause)
	if rec := recordOf(w); rec != nil {
		rec.Cause = cause
	}
	h.Del("Content-Length")
	if closeConn {
		h.Set("Connection", "close")
	}
	w.WriteHeader(status)
	io.WriteString(w, msg+"\n")
}

// serveHTTP is every request's entry: strictness checks, route, then
// answer directly or forward.
func (l *HTTPListener) serveHTTP(w http.ResponseWriter, r *http.Request) {
	l.active.add()
	defer l.active.done()
	var why *whyTrail
	if _, ok := r.Header[DebugHeader]; ok {
		if why = l.whyBegin(r); why != nil {
			// Proxy-made answers before the exchange exists (no route,
			// admission refusals) find it in the context (writeError).
			r = r.WithContext(context.WithValue(r.Context(), whyKey{}, why))
		}
	}
	if l.obs != nil || l.tr != nil {
		ow := l.beginObserved(w, r)
		if l.obs != nil {
			defer l.endObserved(ow)
		}
		w = ow
	}
	if l.tr != nil {
		rec := recordOf(w)
		r = l.startServerSpan(r, rec)
		defer l.endServerSpan(r, rec)
	}

	if r.ProtoMajor == 1 {
		if headerHasToken(r.Header, "Upgrade", "h2c") {
			// Never pass on an upgrade to h2c: the endpoint would then take
			// any request over the tunnel, past routing ("h2c smuggling").
			// Clients that want HTTP/2 use prior knowledge, served here.
			r.Header.Del("Upgrade")
			r.Header.Del("Http2-Settings")
		}
		if msg := checkFraming(r); msg != "" {
			l.writeError(w, r, http.StatusBadRequest, causeBadRequest, msg, true)
			return
		}
	}
	if max := l.cfg.MaxBodyBytes; max > 0 && r.ContentLength > max {
		l.writeError(w, r, http.StatusRequestEntityTooLarge, causeBodyTooLarge,
			"request body larger than "+strconv.FormatInt(max, 10)+" bytes", true)
		return
	}
	rs := l.routing.Load()
	var rt *route.Route
	if rs.routes != nil {
		rt = rs.routes.Match(r.Host, r.URL.Path, r.Method, r.Header, r.URL.RawQuery)
	}
	if rt == nil {
		l.writeError(w, r, http.StatusNotFound, causeNoRoute, "no route", false)
		return
	}
	rec := recordOf(w)
	if rec != nil {
		rec.Route = rt.Name
	}
	if why != nil {
		why.route = rt.Name
	}
	if why != nil && (rt.Config.Redirect != nil || rt.Config.Fixed != nil) {
		w.Header().Set(WhyHeader, why.value(l.cfg.Name, "")) // a direct answer: the trail is whole
	}
	switch rc := &rt.Config; {
	case rc.Redirect != nil:
		redirect(w, r, rc)
		return
	case rc.Fixed != nil:
		fixed(w, r, rc)
		return
	}
	svc := rt.PickBackend()
	if rec != nil {
		rec.Service = svc
	}
	if why != nil {
		why.service = svc
	}
	up := rs.ups[svc]
	if up == nil {
		if ok, n := l.noEndpointsLog.allow(); ok {
			l.log.Warn("route names a service with no upstream", "route", rt.Name, "service", svc, "suppressed", n)
		}
		l.writeError(w, r, http.StatusServiceUnavailable, causeNoEndpoints, "no endpoints", false)
		return
	}
	var adm *httpAdmit
	if rs.adm != nil {
		if adm, w = l.admitHTTP(w, r, rs.adm, rt, svc); w == nil {
			return // refused
		}
		if adm != nil {
			defer adm.finish(l.cfg.GRPC && isGRPCRequest(r), r)
		}
	}
	if l.cfg.MaxBodyBytes > 0 && r.Body != nil && r.Body != http.NoBody {
		r.Body = http.MaxBytesReader(w, r.Body, l.cfg.MaxBodyBytes)
	}
	x := &exchange{route: rt, service: svc, up: up, rec: rec, why: why}
	l.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), exchangeKey{}, x)))
	if adm != nil {
		adm.returned = true
	}
}

// redirect answers with the route's redirect; empty fields keep the
// request's values, and the query is kept.
func redirect(w http.ResponseWriter, r *http.Request, rc *route.RouteConfig) {
	code, loc := redirectLocation(r.Host, r.URL.EscapedPath(), r.URL.RawQuery, rc.Redirect)
	applyHeaderOps(w.Header(), rc.ResponseHeaders)
	w.Header().Set("Location", loc)
	if upgradeRefused(r) {
		w.Header().Set("Connection", "close")
	}
	w.WriteHeader(code)
}

// upgradeRefused reports whether r asked for an HTTP/1 upgrade that the
// answer about to be written refuses. The framing guard stopped following
// the connection when the upgrade was asked for (httpguard.go), so the
// connection must not carry another request: the answer closes it, as
// modifyResponse does for an endpoint's refusal.
func upgradeRefused(r *http.Request) bool { return r.ProtoMajor == 1 && isUpgrade(r) }

// redirectLocation returns the status and Location of redirect rd for a
// request with the given Host, escaped path and raw query.
func redirectLocation(reqHost, escPath, rawQuery string, rd *route.Redirect) (int, string) {
	scheme := rd.Scheme
	if scheme == "" {
		scheme = "http"
	}
	host, port := reqHost, ""
	if h, p, err := net.SplitHostPort(reqHost); err == nil {
		host, port = h, p
	}
	if rd.Host != "" {
		host = rd.Host
	}
	if rd.Port != 0 {
		port = strconv.Itoa(rd.Port)
	}
	if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
		port = ""
	}
	hostport := host
	if port != "" {
		hostport = net.JoinHostPort(host, port)
	} else if isIPv6(host) { // "::1" whose default port was dropped
		hostport = "[" + host + "]"
	}
	path := escPath
	if rd.Path != "" {
		path = rd.Path
	}
	loc := scheme + "://" + hostport + path
	if rawQuery != "" {
		loc += "?" + rawQuery
	}
	code := rd.Code
	if code == 0 {
		code = http.StatusFound
	}
	return code, loc
}

func isIPv6(s string) bool {
	a, err := netip.ParseAddr(s)
	return err == nil && a.Is6()
}

// fixed answers with the route's fixed response.
func fixed(w http.ResponseWriter, r *http.Request, rc *route.RouteConfig) {
	fx := rc.Fixed
	h := w.Header()
	applyHeaderOps(h, rc.ResponseHeaders)
	if fx.Body != "" {
		ct := fx.ContentType
		if ct == "" {
			ct = "text/plain; charset=utf-8"
		}
		h.Set("Content-Type", ct)
		h.Set("Content-Length", strconv.Itoa(len(fx.Body)))
	}
	if upgradeRefused(r) {
		h.Set("Connection", "close")
	}
	w.WriteHeader(fx.Status)
	if r.Method != http.MethodHead {
		io.WriteString(w, fx.Body)
	}
}

// applyHeaderOps edits h in the route package's order: Remove, Set, Add.
// Names are canonical already (route.New).
func applyHeaderOps(h http.Header, ops route.HeaderOps) {
	for _, name := range ops.Remove {
		delete(h, name)
	}
	for _, kv := range ops.Set {
		h[kv[0]] = []string{kv[1]}
	}
	for _, kv := range ops.Add {
		h[kv[0]] = append(h[kv[0]], kv[1])
	}
}
