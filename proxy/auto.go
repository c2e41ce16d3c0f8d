package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/route"
)

// FrontConfig is a listener that runs each connection's first phase itself
// — TLS termination, protocol detection, or both — and then hands the
// connection to the HTTP engine or forwards it as TCP. It is protocol auto
// (Sniff set), and http or grpc with TLS (Sniff nil, TLS set).
type FrontConfig struct {
	// HTTP configures the HTTP engine; its Name and Listen are the
	// listener's.
	HTTP HTTPConfig
	// TLS, when set, terminates TLS with its certificates, offering ALPN
	// "h2" and "http/1.1" ("h2" only when HTTP.GRPC). Without Sniff every
	// connection must start with a handshake; with Sniff only those whose
	// first bytes are a ClientHello are terminated, and what they carry is
	// sniffed again. The handshake runs on the connection's goroutine;
	// HTTP.HeaderTimeout, counted from accept, bounds the handshake and
	// the sniff inside together.
	TLS CertSource
	// Sniff, when set, detects each connection's protocol from its first
	// bytes (see sniff.go): HTTP/1 and the HTTP/2 preface go to the HTTP
	// engine; anything else — a TLS ClientHello when TLS is nil, another
	// protocol, or no byte within Sniff.Timeout (a server-speaks-first
	// protocol) — is forwarded as TCP, the sniffed bytes first.
	Sniff *SniffConfig
}

// SniffConfig is protocol detection and where what is not HTTP goes.
type SniffConfig struct {
	// Timeout is how long to wait for the client's first bytes before the
	// connection is forwarded as TCP; 0 means DefaultSniffTimeout (1s).
	Timeout time.Duration
	// TCP is how connections that are not HTTP are forwarded (its
	// ConnectTimeout, IdleTimeout and ConnectAttempts, as on a TCP
	// listener); its Name and Listen are ignored: the listener's are used.
	TCP TCPConfig
}

// Validate reports every problem with c, joined; zero fields are valid and
// mean their defaults.
func (c FrontConfig) Validate() error {
	var errs []error
	if err := c.HTTP.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.TLS == nil && c.Sniff == nil {
		errs = append(errs, fmt.Errorf("listener %q: neither TLS nor sniffing is set: use an HTTPListener", c.HTTP.Name))
	}
	if c.Sniff != nil {
		if c.Sniff.Timeout < 0 {
			errs = append(errs, fmt.Errorf("listener %q: sniff timeout %v is negative", c.HTTP.Name, c.Sniff.Timeout))
		}
		if err := c.tcpConfig().Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// tcpConfig is the config of the listener's socket and TCP forwarding.
func (c FrontConfig) tcpConfig() TCPConfig {
	var t TCPConfig
	if c.Sniff != nil {
		t = c.Sniff.TCP
	}
	t.Name, t.Listen = c.HTTP.Name, c.HTTP.Listen
	return t
}

// FrontListener is a listener with a first phase per connection: TLS
// termination (FrontConfig.TLS) and/or protocol detection
// (FrontConfig.Sniff) on the connection's own goroutine, before the
// connection goes to the HTTP engine (HTTPListener.serveConn) or to L4
// forwarding (the Server's TCP path, with the sniffed bytes written
// upstream first and raw *net.TCPConns on both sides, so splice still
// serves the rest). Create it with NewFrontListener and hand it to exactly
// one Server.
type FrontListener struct {
	// set at construction
	cfg      FrontConfig // with defaults
	raw      FrontConfig // as given, for Validate
	fallback Upstream    // nil without Sniff
	http     *HTTPListener
	// tcp owns the bound socket; Server.accept runs its accept loop and
	// Server.serveConn calls first for each connection. It forwards the
	// connections first gives back (to fallback).
	tcp     *TCPListener
	tlsConf *tls.Config // nil without TLS
	log     *slog.Logger

	// atomic: connections by what their first bytes were (sniffKind; the
	// bytes inside TLS are not counted again), and failed TLS handshakes
	kinds         [sniffSilent + 1]atomic.Int64
	tlsFailures   atomic.Int64
	innerNotHTTP  atomic.Int64
	tlsLog, inLog logLimiter
}

// NewFrontListener returns a listener for cfg: HTTP is routed with routes
// over ups like an HTTPListener's, and with cfg.Sniff connections that are
// not HTTP are forwarded to fallback. It does not bind; Server.Listen
// validates cfg and binds.
func NewFrontListener(cfg FrontConfig, routes *route.Table, ups Upstreams, fallback Upstream, opts Options) *FrontListener {
	d := cfg
	if cfg.Sniff != nil {
		s := *cfg.Sniff
		if s.Timeout == 0 {
			s.Timeout = DefaultSniffTimeout
		}
		d.Sniff = &s
	}
	l := &FrontListener{
		cfg:      d,
		raw:      cfg,
		fallback: fallback,
		http:     NewHTTPListener(cfg.HTTP, routes, ups, opts),
		tcp:      NewTCPListener(d.tcpConfig(), fallback, opts),
		log:      opts.logger().With("listener", cfg.HTTP.Name),
	}
	l.tcp.front = l
	if cfg.TLS != nil {
		protos := alpnHTTP
		if cfg.HTTP.GRPC {
			protos = alpnGRPC
		}
		l.tlsConf = serverTLSConfig(cfg.TLS, protos)
	}
	return l
}

// Name returns the listener's configured name.
func (l *FrontListener) Name() string { return l.cfg.HTTP.Name }

// SetRoutes swaps the HTTP engine's routes and upstreams, as
// HTTPListener.SetRoutes. The TCP fallback keeps its upstream.
func (l *FrontListener) SetRoutes(t *route.Table, ups Upstreams) { l.http.SetRoutes(t, ups) }

// SetRouting swaps routes, upstreams and admission control, as
// HTTPListener.SetRouting.
func (l *FrontListener) SetRouting(t *route.Table, ups Upstreams, adm *Admission) {
	l.http.SetRouting(t, ups, adm)
}

func (l *FrontListener) listenAddr() string { return l.cfg.HTTP.Listen }
func (l *FrontListener) validate() error {
	err := l.raw.Validate()
	if l.raw.Sniff != nil && l.fallback == nil {
		err = errors.Join(err, fmt.Errorf("listener %q: sniffing needs an upstream for the connections that are not HTTP", l.Name()))
	}
	return err
}
func (l *FrontListener) setListener(ln *net.TCPListener) {
	l.tcp.ln = ln
	l.http.ln = ln // the engine's drain closes it too; a second close is harmless
}
func (l *FrontListener) listener() *net.TCPListener { return l.tcp.ln }

// serveEngine runs the HTTP engine's net/http server on the connections
// first hands it, until the engine shuts down (Server.Serve's drain).
func (l *FrontListener) serveEngine() { l.http.serveEngine() }

// first runs c's first phase on c's goroutine: the TLS handshake and/or
// sniffing. It reports true when c is to be forwarded as TCP (with
// c.prefix set to the bytes already read), false when the HTTP engine took
// it or it was closed.
func (l *FrontListener) first(c *conn) bool {
	if l.cfg.Sniff == nil {
		l.serveTLS(c, nil)
		return false
	}
	kind, prefix, err := sniff(c.client, l.cfg.Sniff.Timeout)
	if err != nil {
		c.shutdown(closedError, err)
		l.log.Debug("connection failed before its first bytes arrived", "client", c.client.RemoteAddr().String(), "err", err)
		return false
	}
	l.kinds[kind].Add(1)
	switch {
	case kind == sniffHTTP1 || kind == sniffH2:
		l.http.serveConn(c.client, prefix)
		return false
	case kind == sniffTLS && l.tlsConf != nil:
		l.serveTLS(c, prefix)
		return false
	}
	// TLS we hold no certificate for (the application's own, end to end),
	// another protocol, or a server that speaks first: bytes as they are.
	l.log.Debug("forwarding as TCP", "client", c.client.RemoteAddr().String(), "first_bytes", kind.String(), "sniffed", len(prefix))
	c.prefix = prefix
	return true
}

// serveTLS completes the TLS handshake of c, whose first bytes (already
// read) are prefix, and gives the TLS connection to the HTTP engine: at
// once when ALPN chose a protocol or the listener does not sniff, else
// after sniffing what the client sends inside.
func (l *FrontListener) serveTLS(c *conn, prefix []byte) {
	var raw net.Conn = c.client
	if len(prefix) > 0 {
		raw = &prefixConn{Conn: c.client, prefix: prefix}
	}
	tc := tls.Server(raw, l.tlsConf)
	// One deadline, counted from accept, bounds the whole first phase: the
	// sniff before it, the handshake and the sniff inside. Fresh timeouts
	// per step would let a slow client hold the connection for several
	// HeaderTimeouts before net/http's own ReadHeaderTimeout even starts.
	deadline := c.start.Add(l.http.cfg.HeaderTimeout)
	c.client.SetDeadline(deadline)
	if err := tc.Handshake(); err != nil {
		var re tls.RecordHeaderError
		if errors.As(err, &re) && re.Conn != nil {
			// Plaintext HTTP to a TLS port: say so, as net/http does, rather
			// than close without a word.
			if k := classifyFirstBytes(re.RecordHeader[:]); k == sniffHTTP1 || k == sniffMore {
				io.WriteString(re.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
			}
		}
		c.shutdown(closedError, err)
		l.tlsFailures.Add(1)
		l.log.Debug("TLS handshake failed", "client", c.client.RemoteAddr().String(), "err", err)
		if ok, n := l.tlsLog.allow(); ok {
			l.log.Warn("TLS handshakes failing", "err", err, "suppressed", n)
		}
		return
	}
	c.client.SetDeadline(time.Time{})
	if tc.ConnectionState().NegotiatedProtocol != "" || l.cfg.Sniff == nil {
		// "h2" goes to net/http's HTTP/2 server; "http/1.1", or no ALPN
		// on an http listener, to HTTP/1.
		l.http.serveConn(tc, nil)
		return
	}
	kind, inner, err := sniff(tc, time.Until(deadline)) // what the first phase has left
	if err == nil && (kind == sniffHTTP1 || kind == sniffH2) {
		l.http.serveConn(tc, inner)
		return
	}
	// Decrypted bytes that are not HTTP have nowhere to go: the TCP path
	// forwards raw sockets only.
	c.shutdown(closedError, err)
	l.innerNotHTTP.Add(1)
	if ok, n := l.inLog.allow(); ok {
		l.log.Warn("closing TLS connections that carry no HTTP", "first_bytes", kind.String(), "err", err, "suppressed", n)
	}
}
