package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outrigger-mesh/outrigger/balancer"
)

// DefaultDrainTimeout is ServerConfig.DrainTimeout when zero.
const DefaultDrainTimeout = 20 * time.Second

// ServerConfig is the set of listeners' shared settings.
type ServerConfig struct {
	// DrainTimeout is how long open connections may run after Serve's
	// context ended before they are closed; 0 means DefaultDrainTimeout
	// (20s). Keep it shorter than the pod's termination grace period.
	DrainTimeout time.Duration
}

// Listener is a listener a Server can own: a *TCPListener or an
// *HTTPListener. It is implemented only by this package's listeners; a
// listener belongs to exactly one Server.
type Listener interface {
	// Name returns the listener's configured name.
	Name() string

	listenAddr() string
	validate() error
	setListener(ln *net.TCPListener) // nil after a failed Listen
	listener() *net.TCPListener
}

// Server owns a set of listeners and every connection they accept.
type Server struct {
	// set at construction
	drain     time.Duration
	log       *slog.Logger
	listeners []Listener

	// set by Listen
	listened atomic.Bool
	bound    atomic.Bool // every listener bound and not yet closed by a drain
	addrs    map[string]net.Addr

	served atomic.Bool // Serve was called

	// connection tracking; conns and forced are guarded by mu
	mu     sync.Mutex
	conns  map[*conn]struct{}
	forced bool // the drain deadline passed: close whatever registers
	wg     sync.WaitGroup
	active atomic.Int64
}

// NewServer returns a server for listeners; it binds nothing until Listen.
//
// It is generic only so that both a []*TCPListener and a []Listener (TCP and
// HTTP listeners mixed) can be passed with `listeners...`; L is inferred.
// With no listener at all, name the type: NewServer[Listener](cfg, opts).
func NewServer[L Listener](cfg ServerConfig, opts Options, listeners ...L) *Server {
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	ls := make([]Listener, len(listeners))
	for i, l := range listeners {
		ls[i] = l
	}
	return &Server{
		drain:     cfg.DrainTimeout,
		log:       opts.logger(),
		listeners: ls,
		addrs:     map[string]net.Addr{},
		conns:     map[*conn]struct{}{},
	}
}

// Listen validates every listener's config and binds all of them, or none:
// on any failure it closes what it bound and returns an error naming the
// listener and address, like
// `listener "orders": listen tcp 127.0.0.1:9000: bind: address already in use`.
// After a success it may not be called again.
func (s *Server) Listen() error {
	if !s.listened.CompareAndSwap(false, true) {
		return errors.New("proxy: Listen called twice")
	}
	var errs []error
	names := map[string]bool{}
	for _, l := range s.listeners {
		if err := l.validate(); err != nil {
			errs = append(errs, err)
		}
		if names[l.Name()] {
			errs = append(errs, fmt.Errorf("listener %q: name used twice", l.Name()))
		}
		names[l.Name()] = true
	}
	if err := errors.Join(errs...); err != nil {
		s.listened.Store(false)
		return err
	}
	lc := net.ListenConfig{KeepAliveConfig: keepAlive}
	for i, l := range s.listeners {
		ln, err := lc.Listen(context.Background(), "tcp", l.listenAddr())
		if err != nil {
			for _, bound := range s.listeners[:i] {
				bound.listener().Close()
				bound.setListener(nil)
			}
			clear(s.addrs)
			s.listened.Store(false)
			return fmt.Errorf("listener %q: %w", l.Name(), err)
		}
		l.setListener(ln.(*net.TCPListener))
		s.addrs[l.Name()] = ln.Addr()
	}
	s.bound.Store(true)
	return nil
}

// Bound reports whether every listener is bound and accepting: true from a
// successful Listen until the drain starts.
func (s *Server) Bound() bool { return s.bound.Load() }

// Addrs returns the bound address of each listener by name (the real port
// when the config said port 0); it is empty before Listen.
func (s *Server) Addrs() map[string]net.Addr {
	m := make(map[string]net.Addr, len(s.addrs))
	for k, v := range s.addrs {
		m[k] = v
	}
	return m
}

// ActiveConns returns the number of accepted connections not yet closed
// (an upgraded HTTP connection is no longer counted).
func (s *Server) ActiveConns() int64 {
	n := s.active.Load()
	for _, l := range s.listeners {
		if h, ok := l.(*HTTPListener); ok {
			n += h.conns.Load()
		}
	}
	return n
}

// Serve accepts on every listener until ctx ends, then drains: the
// listeners close at once, open connections run until they finish or
// DrainTimeout passes, and then the rest are closed. It returns nil once
// every goroutine it started has exited. Listen must have succeeded; Serve
// may be called once.
func (s *Server) Serve(ctx context.Context) error {
	if !s.bound.Load() {
		return errors.New("proxy: Serve called before a successful Listen")
	}
	if !s.served.CompareAndSwap(false, true) {
		return errors.New("proxy: Serve called twice")
	}
	// dialCtx is canceled when the drain deadline passes, aborting dials in
	// flight; until then dials run to their ConnectTimeout.
	dialCtx, cancelDials := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelDials()

	stop := make(chan struct{})
	var accepting sync.WaitGroup
	var tcps []*TCPListener
	var https []*HTTPListener
	for _, l := range s.listeners {
		switch l := l.(type) {
		case *TCPListener:
			tcps = append(tcps, l)
			accepting.Go(func() { s.accept(dialCtx, l, stop) })
		case *HTTPListener:
			https = append(https, l)
			accepting.Go(l.serve)
		}
	}

	<-ctx.Done()
	s.bound.Store(false)
	close(stop)
	drainCtx, cancelDrain := context.WithTimeout(context.Background(), s.drain)
	defer cancelDrain()
	for _, l := range tcps {
		l.ln.Close()
	}
	// HTTP listeners close their sockets and idle connections in shutdown,
	// and finish busy ones after their current response.
	var draining sync.WaitGroup
	for _, l := range https {
		draining.Go(func() { l.shutdown(drainCtx) })
	}
	accepting.Wait() // no s.wg.Add after this
	s.log.Info("draining connections", "active", s.ActiveConns(), "timeout", s.drain.String())

	finished := make(chan struct{})
	go func() {
		s.wg.Wait()
		draining.Wait()
		close(finished)
	}()
	select {
	case <-finished:
	case <-drainCtx.Done():
		s.mu.Lock()
		s.forced = true
		n := len(s.conns)
		for c := range s.conns {
			c.shutdown(closedDrain, nil)
		}
		s.mu.Unlock()
		for _, l := range https {
			n += int(l.conns.Load())
			l.forceClose()
		}
		cancelDials()
		s.log.Warn("drain timeout: closed open connections", "closed", n)
		<-finished
	}
	for _, l := range https {
		l.finish()
	}
	return nil
}

// accept runs one listener's accept loop until the listener is closed.
// Accept errors other than the listener's close (EMFILE, ENFILE,
// ECONNABORTED, ...) back off from 5ms up to 1s, like net/http, and never
// end the loop.
func (s *Server) accept(dialCtx context.Context, l *TCPListener, stop <-chan struct{}) {
	var delay time.Duration
	for {
		nc, err := l.ln.AcceptTCP()
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
			case <-stop:
				t.Stop()
				return
			}
			continue
		}
		delay = 0
		c := newConn(l, nc)
		if !s.track(c) {
			nc.Close()
			continue
		}
		go s.serveConn(dialCtx, c)
	}
}

// track registers c; it reports false when the drain deadline has passed.
func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.forced {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.active.Add(1)
	return true
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.active.Add(-1)
	s.wg.Done()
}

// serveConn is one connection's life: pick and dial, copy, Done.
func (s *Server) serveConn(dialCtx context.Context, c *conn) {
	defer s.untrack(c)
	defer func() {
		if r := recover(); r != nil {
			c.shutdown(closedError, fmt.Errorf("panic: %v", r))
			c.l.log.Error("panic in connection", "panic", r)
		}
	}()
	l := c.l
	res, up, err := c.connect(dialCtx)
	if err != nil {
		c.shutdown(closedNoUpstream, err)
		l.log.Debug("connection closed: no upstream", "client", c.client.RemoteAddr().String(), "err", err)
		lim := &l.connectLog
		if errors.Is(err, balancer.ErrNoEndpoints) {
			lim = &l.noEndpointsLog
		}
		if ok, n := lim.allow(); ok {
			l.log.Warn("closing client connections: no upstream", "err", err, "suppressed", n)
		}
		return
	}
	defer func() {
		if r := recover(); r != nil {
			c.shutdown(closedError, fmt.Errorf("panic: %v", r))
			l.log.Error("panic in connection", "panic", r)
		}
		reason, err := c.result()
		res.Done(balancer.DoneInfo{Err: err, Duration: time.Since(c.start)})
		l.log.Debug("connection closed", "client", c.client.RemoteAddr().String(),
			"endpoint", res.Endpoint.ID, "addr", res.Endpoint.Addr.String(), "reason", reason.String(),
			"sent", c.dirs[0].n, "received", c.dirs[1].n, "duration", time.Since(c.start).String(), "err", err)
	}()
	if !c.setUpstream(up) {
		return
	}
	c.forward(up)
}
