package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/outrigger-mesh/outrigger/balancer"
	"github.com/outrigger-mesh/outrigger/resilience"
)

// chunkSize is how many bytes one ReadFrom call may move before the
// direction renews its read deadline and records activity. It matches the
// splice pipe Go uses (internal/poll maxSpliceSize), so a busy connection
// costs one deadline update per MiB.
const chunkSize = 1 << 20

// closeReason says why a connection's sockets were closed; the first reason
// wins.
type closeReason int32

const (
	closedNot   closeReason = iota
	closedEOF               // both directions finished
	closedIdle              // no byte moved for IdleTimeout
	closedDrain             // the drain deadline passed
	closedError             // a copy or half-close failed, or a panic
	closedNoUpstream
)

func (r closeReason) String() string {
	return [...]string{"open", "eof", "idle", "drain", "error", "no upstream"}[r]
}

// label is r as ConnRecord.Reason: a constant, so reporting it costs
// nothing.
func (r closeReason) label() string {
	return [...]string{"", "eof", "idle", "drain", "error", "no_upstream"}[r]
}

// idleWindows is how many read deadlines one IdleTimeout is cut into. A
// chunk in progress reports its bytes only when its ReadFrom returns, so a
// connection is closed between IdleTimeout and IdleTimeout+IdleTimeout/
// idleWindows after its last byte; an idle connection costs each direction
// that many wake-ups per IdleTimeout.
const idleWindows = 4

// errIdle ends a direction whose connection has been idle for IdleTimeout.
var errIdle = errors.New("idle timeout")

// Errors of a direction whose side is known without asking the kernel:
// the sniffed prefix is written to the upstream, a half-close goes to the
// direction's destination.
var (
	errWritePrefix = errors.New("write sniffed bytes upstream")
	errHalfClose   = errors.New("half-close")
)

// aLongTimeAgo is a deadline in the past: setting it makes a blocked read
// return at once (the trick net/http uses to abort reads).
var aLongTimeAgo = time.Unix(1, 0)

// conn is one accepted connection, from accept to close.
type conn struct {
	// set at construction
	l      *TCPListener
	client *net.TCPConn
	start  time.Time
	idle   time.Duration
	window time.Duration // longest read deadline: idle/idleWindows

	mu       sync.Mutex // guards the fields below
	upstream *net.TCPConn
	closed   bool
	reason   closeReason
	err      error // with closedError
	// clientErr says err came from the client's side of the connection
	// (reading from or writing to the client); it says nothing about the
	// endpoint, and Done reports it as neutral.
	clientErr bool

	// the connection's span, nil when tracing is off (trace_tcp.go)
	span trace.Span

	// set before forward starts, by the auto listener's sniff (auto.go):
	// bytes already read from the client, written upstream before the rest
	prefix []byte

	// set by forward before the directions start
	dirs [2]direction // [0] client→upstream, [1] upstream→client

	// for l.obs, owned by the connection's goroutine: filled by connect,
	// finished by observeClosed
	rec ConnRecord

	// atomic, shared by both directions
	last    atomic.Int64 // nanoseconds after start of the last recorded byte movement
	probe   atomic.Int32 // 0, or 1+i when direction i asked the other to report
	probeAt atomic.Int64 // when the probe was set; written and read by its setter only

	kmu    sync.Mutex    // guards the kernel's counters at kernelMoved's last look:
	kBytes uint64        // kernelBytes of both sockets, summed
	kAt    time.Duration // when kBytes was read, after start
	kOK    bool          // kBytes and kAt are set
}

// direction is one way of a connection. Its fields other than finished are
// owned by the goroutine copying it.
type direction struct {
	src, dst *net.TCPConn
	lr       io.LimitedReader // reused for every chunk: no allocation per chunk
	n        int64
	finished chan struct{} // closed when src is done (EOF or error)
}

func newConn(l *TCPListener, client *net.TCPConn) *conn {
	idle := l.cfg.IdleTimeout
	return &conn{l: l, client: client, start: time.Now(), idle: idle, window: max(idle/idleWindows, time.Millisecond)}
}

// shutdown closes both sockets, recording why if nothing was recorded
// before. It is safe from any goroutine, any number of times.
func (c *conn) shutdown(r closeReason, err error) {
	c.shutdownSide(r, err, false)
}

// shutdownSide is shutdown with the side err came from: clientErr when it
// was the client's socket.
func (c *conn) shutdownSide(r closeReason, err error, clientErr bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reason == closedNot {
		c.reason, c.err, c.clientErr = r, err, clientErr
	}
	if c.closed {
		return
	}
	c.closed = true
	c.client.Close()
	if c.upstream != nil {
		c.upstream.Close()
	}
}

// setUpstream attaches the dialed socket, or closes it and reports false if
// the connection was shut down meanwhile (by the drain deadline).
func (c *conn) setUpstream(u *net.TCPConn) bool {
	c.mu.Lock()
	closed := c.closed
	if closed {
		u.Close()
	} else {
		c.upstream = u
	}
	c.mu.Unlock()
	if closed && c.l.obs != nil {
		c.observeClosed(closedDrain) // forward will not run
	}
	return !closed
}

// result is the connection's outcome for Done and the log: the error of a
// failed copy, nil when the connection ended normally or the proxy closed it
// (idle, drain); clientErr when the error came from the client's side.
func (c *conn) result() (reason closeReason, err error, clientErr bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reason, c.err, c.clientErr
}

// doneInfo is the connection's outcome for its pick's Done. An error on
// the client's side (a reset client, a write to a client that left) is
// neutral for the endpoint: breakers and outlier detection skip it.
func (c *conn) doneInfo() (balancer.DoneInfo, closeReason) {
	reason, err, clientErr := c.result()
	d := balancer.DoneInfo{Err: err, Duration: time.Since(c.start)}
	if clientErr {
		d.Outcome = resilience.Outcome{Kind: resilience.KindCanceled}
	}
	return d, reason
}

// clientFault reports whether the error that ended direction i came from
// the client's socket. A splice (dst.ReadFrom(src)) does not say whether
// its read or its write failed, so the kernel's view decides: the client's
// connection was reset and the endpoint's was not. When both or neither
// were, or the platform cannot tell, the error is the endpoint's, as
// before: a breaker must not miss a failing endpoint.
func (c *conn) clientFault(i int, err error) bool {
	if errors.Is(err, errWritePrefix) {
		return false
	}
	if errors.Is(err, errHalfClose) {
		return c.dirs[i].dst == c.client
	}
	client, ok1 := peerGone(c.client)
	upstream, ok2 := peerGone(c.dirs[0].dst)
	return ok1 && ok2 && client && !upstream
}

// connect picks and dials until a dial succeeds or ConnectAttempts are used
// up. Every failed dial is reported to its pick's Done at once and the
// endpoint is added to PickInfo.Tried, so the next pick avoids it. Retrying
// is safe because a failed dial sent nothing.
//
// With a TCPObserver, connect reports the connection opened, and closed
// with "no_upstream" when it fails (or panics).
func (c *conn) connect(ctx context.Context) (res balancer.PickResult, up *net.TCPConn, err error) {
	if c.l.obs == nil {
		return c.pickAndDial(ctx)
	}
	c.rec = ConnRecord{Listener: c.l.cfg.Name, Service: c.l.service, Start: c.start}
	c.l.obs.ConnOpened(&c.rec)
	ok := false
	defer func() {
		if !ok {
			c.observeClosed(closedNoUpstream)
		}
	}()
	res, up, err = c.pickAndDial(ctx)
	if err == nil {
		c.rec.Endpoint = res.Endpoint.Addr
	}
	ok = err == nil
	return res, up, err
}

// observeClosed reports the end of a connection that connect reported
// opened, with reason r unless the connection recorded one.
func (c *conn) observeClosed(r closeReason) {
	if reason, _, _ := c.result(); reason != closedNot {
		r = reason
	}
	c.rec.Received, c.rec.Sent = c.dirs[0].n, c.dirs[1].n
	c.rec.Reason = r.label()
	c.rec.Duration = time.Since(c.start)
	c.l.obs.ConnClosed(&c.rec)
}

// pickAndDial is connect without the observer.
func (c *conn) pickAndDial(ctx context.Context) (balancer.PickResult, *net.TCPConn, error) {
	var info balancer.PickInfo
	var dialErr error
	for attempt := 0; attempt < c.l.cfg.ConnectAttempts; attempt++ {
		res, err := c.l.up.Pick(&info)
		if err == nil && res.Endpoint == nil {
			res.Done(balancer.DoneInfo{Err: errors.New("pick returned no endpoint")})
			err = fmt.Errorf("upstream returned a pick without an endpoint")
		}
		if err != nil {
			if dialErr != nil {
				return balancer.PickResult{}, nil, fmt.Errorf("%w; then pick: %w", dialErr, err)
			}
			return balancer.PickResult{}, nil, fmt.Errorf("pick: %w", err)
		}
		t0 := time.Now()
		nc, err := c.l.dialer.DialContext(ctx, "tcp", res.Endpoint.Addr.String())
		if err == nil {
			c.traceConnected(res.Endpoint, attempt+1)
			return res, nc.(*net.TCPConn), nil
		}
		res.Done(balancer.DoneInfo{Err: err, Duration: time.Since(t0)})
		c.traceConnectFailed(res.Endpoint, err)
		info.AddTried(res.Endpoint.Addr)
		c.l.log.Debug("connect failed", "client", c.client.RemoteAddr().String(),
			"endpoint", res.Endpoint.ID, "attempt", attempt+1, "err", err)
		dialErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return balancer.PickResult{}, nil, dialErr
}

// forward copies both ways until both directions finished, then closes
// both sockets. Direction 0 runs on a new goroutine, direction 1 on the
// caller's.
func (c *conn) forward(up *net.TCPConn) {
	if c.l.obs != nil {
		// Deferred, so that a panic still balances ConnOpened.
		defer c.observeClosed(closedEOF)
	}
	c.dirs[0] = direction{src: c.client, dst: up, finished: make(chan struct{})}
	c.dirs[1] = direction{src: up, dst: c.client, finished: make(chan struct{})}
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		c.run(0)
	}()
	c.run(1)
	<-exited
	c.shutdown(closedEOF, nil)
}

// run copies direction i, turns its EOF into a half-close of its
// destination, and then watches the other direction for idleness until it
// finishes too.
func (c *conn) run(i int) {
	d := &c.dirs[i]
	var err error
	func() {
		// finished closes last, even after a panic, so that the other
		// direction's watch never waits forever.
		defer close(d.finished)
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("panic: %v", r)
				c.l.log.Error("panic in connection", "panic", r)
				c.shutdown(closedError, err)
			}
		}()
		if i == 0 && len(c.prefix) > 0 {
			if err = c.writePrefix(); err != nil {
				err = fmt.Errorf("%w: %w", errWritePrefix, err)
			}
		}
		if err == nil {
			err = c.copy(i)
		}
		if err == nil {
			// EOF from src: pass it on (RFC 9293 half-close) and keep the
			// reverse direction running.
			if err = d.dst.CloseWrite(); err != nil {
				err = fmt.Errorf("%w: %w", errHalfClose, err)
			}
		}
		switch {
		case errors.Is(err, errIdle):
			c.shutdown(closedIdle, nil)
		case err != nil:
			// Which side failed is read before shutdown closes both.
			c.shutdownSide(closedError, err, c.clientFault(i, err))
		}
	}()
	if err == nil {
		c.watch(i)
	}
}

// writePrefix sends the bytes sniffed from the client to the upstream,
// before direction 0 splices the rest. They are at most sniffMax bytes, far
// less than a socket buffer, so the write does not wait on the upstream.
func (c *conn) writePrefix() error {
	d := &c.dirs[0]
	n, err := d.dst.Write(c.prefix)
	d.n += int64(n)
	if n > 0 {
		c.touch()
	}
	return err
}

// copy moves src to dst of direction i in chunks until EOF (nil), an error,
// or idleness (errIdle). Each chunk is one dst.ReadFrom(&LimitedReader{src})
// on raw *net.TCPConns, which Go serves with splice(2) on Linux.
//
// Only read deadlines are used. A read deadline fires while the splice pipe
// is empty, so nothing is lost and the copy can go on; a write deadline that
// fired mid-pump would make internal/poll discard the bytes still in the
// pipe. A write stuck on a peer that reads nothing is caught by idleCheck's
// probe instead.
func (c *conn) copy(i int) error {
	d := &c.dirs[i]
	d.lr.R = d.src
	wait := c.window
	for {
		if err := d.src.SetReadDeadline(time.Now().Add(wait)); err != nil {
			return err
		}
		wait = c.window
		// The other direction may have poked our deadline just before we
		// renewed it; answer its probe now rather than a whole wait later.
		if c.probe.Load() == int32(2-i) {
			if _, expired := c.idleCheck(i); expired {
				return errIdle
			}
		}
		d.lr.N = chunkSize
		n, err := d.dst.ReadFrom(&d.lr)
		d.n += n
		if n > 0 {
			c.touch()
		}
		switch {
		case err == nil && d.lr.N > 0:
			return nil // EOF
		case err == nil, n > 0 && errors.Is(err, os.ErrDeadlineExceeded):
			continue // the chunk is full, or bytes moved before the deadline
		case !errors.Is(err, os.ErrDeadlineExceeded):
			return err
		}
		w, expired := c.idleCheck(i)
		if expired {
			return errIdle
		}
		wait = w
	}
}

// watch runs after direction i finished cleanly: the other direction may
// be stuck writing to a peer that reads nothing, which its own read deadline
// cannot see, so direction i keeps checking for idleness until the other
// finishes.
func (c *conn) watch(i int) {
	t := time.NewTimer(c.window)
	defer t.Stop()
	for {
		select {
		case <-c.dirs[1-i].finished:
			return
		case <-t.C:
		}
		w, expired := c.idleCheck(i)
		if expired {
			c.shutdown(closedIdle, nil)
			return
		}
		t.Reset(w)
	}
}

// touch records that bytes moved now, and cancels any probe: the
// connection is not idle.
func (c *conn) touch() {
	c.touchAt(time.Since(c.start))
}

func (c *conn) touchAt(now time.Duration) {
	c.last.Store(int64(now))
	if c.probe.Load() != 0 {
		c.probe.Store(0)
	}
}

// kernelMoved reports whether the kernel moved bytes on either socket since
// the previous call that a recorded chunk does not explain. A direction
// blocked in ReadFrom on a slow reader records nothing until its chunk (up
// to a 1 MiB splice pipe) is drained, which can take longer than
// IdleTimeout, and the probe's past read deadline takes effect only at its
// next read; the kernel's counters keep moving meanwhile.
//
// Counters that moved while a chunk was recorded (last is after the
// previous look) are the tail of that chunk: the peer acknowledges bytes
// after ReadFrom returned. They only set a new baseline, so an idle
// connection is still closed at IdleTimeout after its last chunk, not a
// window later.
func (c *conn) kernelMoved(now time.Duration) bool {
	a, okA := kernelBytes(c.dirs[0].src)
	b, okB := kernelBytes(c.dirs[0].dst)
	if !okA || !okB {
		return false // closed, or no counters on this platform
	}
	c.kmu.Lock()
	defer c.kmu.Unlock()
	if c.kOK && a+b <= c.kBytes {
		return false // nothing new, or read before a concurrent look
	}
	moved := c.kOK && time.Duration(c.last.Load()) <= c.kAt
	c.kBytes, c.kAt, c.kOK = a+b, now, true
	return moved
}

// idleCheck is called by direction i when it moved no byte since its last
// touch. It reports whether the whole connection has been idle for
// IdleTimeout, or else how long to wait before checking again (at most
// window, which bounds how late a byte mid-chunk is noticed).
//
// Bytes of a chunk in progress are recorded only when its ReadFrom returns,
// so a stale timestamp alone does not prove idleness: the other direction
// may be mid-chunk. Direction i then probes it: it sets the probe flag and
// pokes the other's read deadline into the past, so its ReadFrom returns at
// once and either records the bytes it moved (clearing the probe) or finds
// the probe set by i and agrees the connection is idle. A probe that stays
// unanswered for IdleTimeout means the other direction is stuck writing to a
// peer that reads nothing, and the connection is idle too; one that is
// writing to a slow reader is told apart by the kernel's byte counters,
// which idleCheck reads at every call (kernelMoved): bytes moving there
// count as activity, and cancel the probe.
func (c *conn) idleCheck(i int) (wait time.Duration, expired bool) {
	now := time.Since(c.start)
	if c.kernelMoved(now) {
		c.touchAt(now)
	}
	if since := now - time.Duration(c.last.Load()); since < c.idle {
		return min(c.idle-since, c.window), false
	}
	select {
	case <-c.dirs[1-i].finished:
		return 0, true // nothing in flight on the other side
	default:
	}
	mine := int32(1 + i)
	if c.probe.CompareAndSwap(0, mine) {
		c.probeAt.Store(int64(now))
		c.dirs[1-i].src.SetReadDeadline(aLongTimeAgo)
		return c.window, false
	}
	if c.probe.Load() == mine {
		if asked := now - time.Duration(c.probeAt.Load()); asked < c.idle {
			return min(c.idle-asked, c.window), false
		}
	}
	return 0, true // the other direction found it idle too, or is stuck
}
