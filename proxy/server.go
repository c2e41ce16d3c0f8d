package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outrigger-mesh/outrigger/balancer"
	"github.com/outrigger-mesh/outrigger/resilience"
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

// Server owns a set of listeners and every connection they accept. The set
// may change while it serves (Apply).
type Server struct {
	// set at construction
	log *slog.Logger

	// lmu guards the listener set and the lifecycle fields below it. Apply
	// and Serve take it; the data path never does.
	lmu      sync.Mutex
	drain    time.Duration // SetDrainTimeout may change it
	entries  []*entry      // the current listeners, in order
	retiring []*entry      // removed by Apply, still draining
	addrs    map[string]net.Addr
	listened bool            // Listen succeeded
	dialCtx  context.Context // set while Serve accepts; nil before and after
	stopped  bool            // Serve's drain started: no more Apply

	bound  atomic.Bool // some listener, and every one, bound and not yet closed by a drain
	served atomic.Bool // Serve was called

	// loops counts accept loops (TCP) and net/http Serve calls (HTTP) of
	// every listener ever started; retired counts drains of removed
	// listeners. Serve waits for both.
	loops, retired sync.WaitGroup

	// connection tracking of TCP listeners; conns and forced are guarded
	// by mu
	mu     sync.Mutex
	conns  map[*conn]*entry // each open connection and its listener
	forced bool             // the drain deadline passed: close whatever registers
	wg     sync.WaitGroup
	active atomic.Int64
}

// entry is one listener in a Server.
type entry struct {
	l    Listener
	dup  bool          // its socket was taken over from a removed listener
	stop chan struct{} // closed to stop the accept loop's backoff wait
	done chan struct{} // closed when the accept loop (or net/http's Serve) returned
	// open TCP connections of this listener (HTTP listeners count their own)
	conns activity
}

func newEntry(l Listener) *entry {
	return &entry{l: l, stop: make(chan struct{}), done: make(chan struct{})}
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
	s := &Server{
		drain: cfg.DrainTimeout,
		log:   opts.logger(),
		addrs: map[string]net.Addr{},
		conns: map[*conn]*entry{},
	}
	for _, l := range listeners {
		s.entries = append(s.entries, newEntry(l))
	}
	return s
}

// Listen validates every listener's config and binds all of them, or none:
// on any failure it closes what it bound and returns an error naming the
// listener and address, like
// `listener "orders": listen tcp 127.0.0.1:9000: bind: address already in use`.
// After a success it may not be called again.
func (s *Server) Listen() error {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	if s.listened {
		return errors.New("proxy: Listen called twice")
	}
	ls := make([]Listener, len(s.entries))
	for i, e := range s.entries {
		ls[i] = e.l
	}
	if err := checkListeners(ls, nil); err != nil {
		return err
	}
	if _, err := bindAll(ls, nil); err != nil {
		return err
	}
	for _, l := range ls {
		s.addrs[l.Name()] = l.listener().Addr()
	}
	s.listened = true
	s.bound.Store(len(s.entries) > 0)
	return nil
}

// checkListeners validates ls and requires their names to be unique among
// themselves and against taken.
func checkListeners(ls []Listener, taken map[string]bool) error {
	var errs []error
	names := map[string]bool{}
	for _, l := range ls {
		if err := l.validate(); err != nil {
			errs = append(errs, err)
		}
		if names[l.Name()] || taken[l.Name()] {
			errs = append(errs, fmt.Errorf("listener %q: name used twice", l.Name()))
		}
		names[l.Name()] = true
	}
	return errors.Join(errs...)
}

// bindAll binds every listener of ls, or none. A listener whose address
// equals that of a listener in handover takes over a duplicate of that
// listener's socket instead of binding (see Apply); dup reports which did.
func bindAll(ls []Listener, handover []Listener) (dup []bool, err error) {
	lc := net.ListenConfig{KeepAliveConfig: keepAlive}
	used := make([]bool, len(handover))
	dup = make([]bool, len(ls))
	for i, l := range ls {
		var ln *net.TCPListener
		if j := handoverFor(l, handover, used); j >= 0 {
			used[j] = true
			dup[i] = true
			ln, err = dupListener(handover[j].listener())
		} else {
			var nl net.Listener
			if nl, err = lc.Listen(context.Background(), "tcp", l.listenAddr()); err == nil {
				ln = nl.(*net.TCPListener)
			}
		}
		if err != nil {
			for _, bound := range ls[:i] {
				bound.listener().Close()
				bound.setListener(nil)
			}
			return nil, fmt.Errorf("listener %q: %w", l.Name(), err)
		}
		l.setListener(ln)
	}
	return dup, nil
}

// handoverFor returns the index of the unused listener in handover whose
// socket l takes over, or -1: the one with the same configured address and
// the same name, or else the same address with a fixed (non-zero) port.
func handoverFor(l Listener, handover []Listener, used []bool) int {
	match := -1
	for j, h := range handover {
		if used[j] || h.listener() == nil || h.listenAddr() != l.listenAddr() {
			continue
		}
		if h.Name() == l.Name() {
			return j
		}
		if _, port, err := net.SplitHostPort(l.listenAddr()); err == nil && port != "0" && match < 0 {
			match = j
		}
	}
	return match
}

// dupListener returns a second listener on ln's socket: the kernel socket
// stays open, with its accept queue, until both are closed. Connections it
// accepts get Go's default TCP keep-alive, not keepAlive; the TCP accept
// loop sets keepAlive itself.
func dupListener(ln *net.TCPListener) (*net.TCPListener, error) {
	f, err := ln.File()
	if err != nil {
		return nil, fmt.Errorf("take over socket %s: %w", ln.Addr(), err)
	}
	defer f.Close()
	nl, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("take over socket %s: %w", ln.Addr(), err)
	}
	return nl.(*net.TCPListener), nil
}

// Change is one set of listener changes for Apply.
type Change struct {
	// Remove names listeners to stop: each stops accepting at once, and
	// its open connections get the drain timeout to finish (HTTP
	// listeners drain as in Serve's drain); the rest are then closed.
	// Other listeners and their connections are not touched.
	Remove []string
	// Add are new listeners to bind and start. A listener may be removed
	// and added (a new listener of the same name) in one Change.
	Add []Listener
}

// Apply removes and adds listeners, all or nothing: it validates every
// added listener (names must be unique among the listeners that remain),
// then binds them; if any step fails, it closes what it bound, changes
// nothing and returns an error naming the listener, like Listen's.
//
// An added listener with the same address as a removed one (and the same
// name, or a fixed port) takes over the removed one's socket instead of
// binding: the socket never closes, so no connection is refused, and
// connections the old listener accepted drain while the new one accepts.
// This is how a listener's settings that cannot change in place change.
//
// Apply needs a successful Listen; it may be called before Serve (added
// listeners start with Serve) and while Serve runs, but not once Serve's
// drain started. It returns before removed listeners finished draining;
// Serve waits for them.
func (s *Server) Apply(ch Change) error {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	switch {
	case !s.listened:
		return errors.New("proxy: Apply called before a successful Listen")
	case s.stopped:
		return errors.New("proxy: Apply called during the drain")
	}
	removed := map[string]*entry{}
	for _, name := range ch.Remove {
		e := s.find(name)
		if e == nil {
			return fmt.Errorf("listener %q: cannot remove: no such listener", name)
		}
		removed[name] = e
	}
	taken := map[string]bool{}
	for _, e := range s.entries {
		if removed[e.l.Name()] == nil {
			taken[e.l.Name()] = true
		}
	}
	if err := checkListeners(ch.Add, taken); err != nil {
		return err
	}
	var handover []Listener
	for _, name := range ch.Remove { // in the caller's order, for handoverFor
		handover = append(handover, removed[name].l)
	}
	dup, err := bindAll(ch.Add, handover)
	if err != nil {
		return err
	}

	// Commit: nothing below fails.
	kept := s.entries[:0:0]
	for _, e := range s.entries {
		if removed[e.l.Name()] == nil {
			kept = append(kept, e)
		}
	}
	for _, name := range ch.Remove {
		e := removed[name]
		delete(s.addrs, name)
		s.retire(e)
	}
	for i, l := range ch.Add {
		e := newEntry(l)
		e.dup = dup[i]
		kept = append(kept, e)
		s.addrs[l.Name()] = l.listener().Addr()
		if s.dialCtx != nil {
			s.start(e)
		}
	}
	s.entries = kept
	s.bound.Store(len(kept) > 0)
	return nil
}

// SetDrainTimeout changes the drain timeout of listeners removed from now
// on and of Serve's drain, if it has not started; d <= 0 means
// DefaultDrainTimeout.
func (s *Server) SetDrainTimeout(d time.Duration) {
	if d <= 0 {
		d = DefaultDrainTimeout
	}
	s.lmu.Lock()
	s.drain = d
	s.lmu.Unlock()
}

// find returns the current listener called name, or nil. lmu is held.
func (s *Server) find(name string) *entry {
	for _, e := range s.entries {
		if e.l.Name() == name {
			return e
		}
	}
	return nil
}

// Bound reports whether the server has listeners and every one is bound
// and accepting: true from a successful Listen (or, for a server that had
// none, the Apply that added the first) until the drain starts.
func (s *Server) Bound() bool { return s.bound.Load() }

// Addrs returns the bound address of each current listener by name (the
// real port when the config said port 0); it is empty before Listen.
func (s *Server) Addrs() map[string]net.Addr {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	m := make(map[string]net.Addr, len(s.addrs))
	for k, v := range s.addrs {
		m[k] = v
	}
	return m
}

// ActiveConns returns the number of accepted connections not yet closed,
// of current listeners and of removed ones still draining (an upgraded
// HTTP connection is no longer counted).
func (s *Server) ActiveConns() int64 {
	n := s.active.Load()
	s.lmu.Lock()
	defer s.lmu.Unlock()
	for _, list := range [][]*entry{s.entries, s.retiring} {
		for _, e := range list {
			if _, h := parts(e.l); h != nil {
				n += h.conns.Load()
			}
		}
	}
	return n
}

// Serve accepts on every listener until ctx ends, then drains: the
// listeners close at once, open connections run until they finish or
// DrainTimeout passes, and then the rest are closed. It returns nil once
// every goroutine it started has exited, those of removed listeners
// included. Listen must have succeeded; Serve may be called once.
func (s *Server) Serve(ctx context.Context) error {
	s.lmu.Lock()
	listened := s.listened
	s.lmu.Unlock()
	if !listened {
		return errors.New("proxy: Serve called before a successful Listen")
	}
	if !s.served.CompareAndSwap(false, true) {
		return errors.New("proxy: Serve called twice")
	}
	// dialCtx is canceled when the drain deadline passes, aborting dials in
	// flight; until then dials run to their ConnectTimeout.
	dialCtx, cancelDials := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelDials()

	s.lmu.Lock()
	s.dialCtx = dialCtx
	for _, e := range s.entries {
		s.start(e)
	}
	s.lmu.Unlock()

	<-ctx.Done()
	s.lmu.Lock()
	s.stopped = true
	s.dialCtx = nil
	entries := s.entries
	drain := s.drain
	s.lmu.Unlock()
	s.bound.Store(false)

	drainCtx, cancelDrain := context.WithTimeout(context.Background(), drain)
	defer cancelDrain()
	var https []*HTTPListener
	var draining sync.WaitGroup
	for _, e := range entries {
		close(e.stop)
		tl, hl := parts(e.l)
		if tl != nil {
			tl.ln.Close()
		}
		if hl != nil {
			// HTTP engines close their sockets and idle connections in
			// shutdown, and finish busy ones after their current response.
			https = append(https, hl)
			draining.Go(func() { hl.shutdown(drainCtx) })
		}
	}
	s.loops.Wait() // no s.wg.Add after this
	s.log.Info("draining connections", "active", s.ActiveConns(), "timeout", drain.String())

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
	s.retired.Wait()
	return nil
}

// start runs e's accept loop (TCP) or net/http's Serve (HTTP). lmu is held
// and dialCtx set.
func (s *Server) start(e *entry) {
	dialCtx := s.dialCtx
	s.loops.Add(1)
	go func() {
		defer s.loops.Done()
		defer close(e.done)
		var wg sync.WaitGroup
		switch l := e.l.(type) {
		case *TCPListener:
			s.accept(dialCtx, e, l)
		case *HTTPListener:
			l.serve()
		case *FrontListener: // TCP accept loop and forwarding, HTTP engine
			wg.Go(l.serveEngine)
			s.accept(dialCtx, e, l.tcp)
		}
		wg.Wait()
	}()
}

// parts returns the L4 part (accept loop and TCP forwarding) and the HTTP
// engine of a listener; either may be nil.
func parts(l Listener) (*TCPListener, *HTTPListener) {
	switch l := l.(type) {
	case *TCPListener:
		return l, nil
	case *HTTPListener:
		return nil, l
	case *FrontListener:
		return l.tcp, l.http
	}
	return nil, nil
}

// retire stops a removed listener accepting and drains its connections in
// the background, for the drain timeout; the rest are then closed. lmu is
// held. The socket closes here, unless an added listener took it over.
func (s *Server) retire(e *entry) {
	drain := s.drain
	started := s.dialCtx != nil
	s.retiring = append(s.retiring, e)
	close(e.stop)
	// Stop accepting before Apply returns: an added listener that took
	// over the socket is then the only one taking connections from its
	// queue, so none lands on this listener while it shuts down.
	tl, hl := parts(e.l)
	if tl != nil {
		tl.ln.Close()
	}
	if hl != nil {
		hl.ln.Close()
	}
	if !started {
		// Never served: nothing to drain.
		if hl != nil {
			hl.finish()
		}
		s.retiring = slices.DeleteFunc(s.retiring, func(x *entry) bool { return x == e })
		return
	}
	s.log.Info("listener removed; draining its connections", "listener", e.l.Name(), "timeout", drain.String())
	s.retired.Go(func() {
		defer func() {
			s.lmu.Lock()
			s.retiring = slices.DeleteFunc(s.retiring, func(x *entry) bool { return x == e })
			s.lmu.Unlock()
		}()
		ctx, cancel := context.WithTimeout(context.Background(), drain)
		defer cancel()
		if hl != nil {
			hl.shutdown(ctx) // closes the socket first
		}
		<-e.done // no track for e after this
		e.conns.wait(ctx.Done())
		if ctx.Err() != nil {
			s.mu.Lock()
			n := 0
			for c, ce := range s.conns {
				if ce == e {
					c.shutdown(closedDrain, nil)
					n++
				}
			}
			s.mu.Unlock()
			if hl != nil {
				n += int(hl.conns.Load())
				hl.forceClose()
			}
			s.log.Warn("drain timeout of removed listener: closed open connections", "listener", e.l.Name(), "closed", n)
			e.conns.wait(nil)
		}
		if hl != nil {
			hl.finish()
		}
	})
}

// accept runs one TCP listener's accept loop until the listener is closed.
// Accept errors other than the listener's close (EMFILE, ENFILE,
// ECONNABORTED, ...) back off from 5ms up to 1s, like net/http, and never
// end the loop. Each connection uses the listener's current generation
// (TCPListener.Update).
func (s *Server) accept(dialCtx context.Context, e *entry, l *TCPListener) {
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
			case <-e.stop:
				t.Stop()
				return
			}
			continue
		}
		delay = 0
		if e.dup {
			// A socket taken over from another listener (dupListener)
			// hands out connections without our keep-alive settings.
			nc.SetKeepAliveConfig(keepAlive)
		}
		c := newConn(l.current(), nc)
		if !s.track(c, e) {
			nc.Close()
			continue
		}
		go s.serveConn(dialCtx, c)
	}
}

// track registers c; it reports false when the drain deadline has passed.
func (s *Server) track(c *conn, e *entry) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.forced {
		return false
	}
	s.conns[c] = e
	s.wg.Add(1)
	s.active.Add(1)
	e.conns.add()
	return true
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	e := s.conns[c]
	delete(s.conns, c)
	s.mu.Unlock()
	s.active.Add(-1)
	e.conns.done()
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
	if l.front != nil && !l.front.first(c) {
		return // TLS and/or sniffing gave it to the HTTP engine, or closed it
	}
	c.startSpan()
	defer c.endSpan()
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
		d, reason := c.doneInfo()
		res.Done(d)
		l.log.Debug("connection closed", "client", c.client.RemoteAddr().String(),
			"endpoint", res.Endpoint.ID, "addr", res.Endpoint.Addr.String(), "reason", reason.String(),
			"sent", c.dirs[0].n, "received", c.dirs[1].n, "duration", d.Duration.String(), "err", d.Err,
			"client_side", d.Outcome.Kind == resilience.KindCanceled)
	}()
	if !c.setUpstream(up) {
		return
	}
	c.forward(up)
}
