package proxy

import (
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"
)

// serve accepts on the bound socket until shutdown or forceClose closes it,
// and serves each connection with serveConn. Accept errors other than the
// socket's close (EMFILE, ENFILE, ECONNABORTED, ...) back off from 5ms up to
// 1s, like Server.accept, and never end the loop. It returns when the
// accept loop and net/http's Serve have both returned.
func (l *HTTPListener) serve() {
	var wg sync.WaitGroup
	wg.Go(l.serveEngine)
	defer wg.Wait()
	// If Accept stops first (forceClose), net/http must stop too.
	defer l.handoff.Close()
	var delay time.Duration
	for {
		c, err := l.ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			if ok, n := l.acceptLog.allow(); ok {
				l.log.Warn("accept failed; backing off", "err", err, "delay", delay.String(), "suppressed", n)
			}
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-l.handoff.done:
				t.Stop()
				return
			}
			continue
		}
		delay = 0
		go l.serveConn(c, nil)
	}
}

// serveEngine runs what serves connections handed to serveConn: net/http's
// Serve on the handoff listener, and the sweep of the fast path's idle
// upstream connections. It returns when the handoff listener is closed
// (shutdown, forceClose, or serve's accept loop ending). A FrontListener,
// which owns the socket and its own accept loop, runs it instead of serve.
func (l *HTTPListener) serveEngine() {
	var wg sync.WaitGroup
	wg.Go(func() {
		// The fast path's idle upstream connections expire here; the
		// drain closes the rest in finish.
		t := time.NewTicker(upstreamIdleTimeout / 4)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				l.pools.sweep(monotime())
			case <-l.handoff.done:
				return
			}
		}
	})
	defer wg.Wait()
	err := l.hs.Serve(l.handoff)
	// The drain closes the handoff listener before it shuts hs down:
	// either way it is a normal end, not an error to report.
	if err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		l.log.Error("http listener stopped", "err", err)
	}
}

// serveConn serves one accepted client connection on the HTTP engine until
// it closes. c is a raw *net.TCPConn, a *tls.Conn whose handshake is done, or
// any net.Conn; prefix holds bytes already read from c (protocol sniffing)
// that logically come first, and is owned by serveConn from now on.
//
// On a plain HTTP listener with upstream protocol http1 the connection
// runs the HTTP/1.1 fast path (h1conn.go), which hands it to net/http at
// the first request it does not do; a *tls.Conn whose ALPN chose "h2",
// gRPC and h2c-upstream listeners, and NetHTTPOnly go to net/http at once.
// For net/http: a *tls.Conn with an empty prefix goes to net/http as it is, so that an
// ALPN-negotiated "h2" is served as HTTP/2 and requests carry their TLS
// state; a *tls.Conn whose ALPN chose "h2" must come with an empty prefix
// (HTTP/2 over TLS cannot be replayed into net/http). Any other connection
// is served through the framing guard (httpguard.go), the prefix replayed
// first; a wrapped *tls.Conn keeps its TLS state for requests.
//
// serveConn counts the connection in l.conns and l.active from now until
// it closes; it may be called from any goroutine, also concurrently, and
// closes c itself when the listener is shutting down.
func (l *HTTPListener) serveConn(c net.Conn, prefix []byte) {
	l.conns.Add(1)
	l.active.add()
	if l.fastEnabled() {
		if tc, ok := c.(*tls.Conn); !ok || tc.ConnectionState().NegotiatedProtocol != "h2" {
			l.serveFast(c, prefix)
			return
		}
	}
	l.toNetHTTP(c, prefix)
}

// tlsPrefixConn is a TLS connection with replayed bytes: through the
// framing guard, with the TLS state net/http puts in Request.TLS.
type tlsPrefixConn struct {
	*guardConn
	tc *tls.Conn
}

// ConnectionState is what net/http looks for on a connection that is not a
// *tls.Conn.
func (c *tlsPrefixConn) ConnectionState() tls.ConnectionState { return c.tc.ConnectionState() }

// chanListener is the net.Listener net/http's Serve accepts from:
// serveConn pushes connections into it. Closing it (http.Server.Shutdown or
// Close do, and serve on its way out) makes Accept fail and push refuse.
type chanListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

// newChanListener returns an open chanListener.
func newChanListener() *chanListener {
	return &chanListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

// push hands c to Accept; it blocks until Accept takes it and reports
// false if the listener closed first.
func (l *chanListener) push(c net.Conn) bool {
	select {
	case <-l.done:
		return false
	default:
	}
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

// Accept returns the next pushed connection, or net.ErrClosed.
func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close makes Accept and push fail; it may be called more than once.
func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

// Addr is a placeholder: net/http only prints it.
func (l *chanListener) Addr() net.Addr { return chanAddr{} }

// chanAddr is chanListener's address.
type chanAddr struct{}

func (chanAddr) Network() string { return "handoff" }
func (chanAddr) String() string  { return "handoff" }
