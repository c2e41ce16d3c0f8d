package proxy

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// The fast path's upstream pool: per endpoint address, a LIFO stack of idle
// HTTP/1.1 connections.
//
// Why a mutex-guarded stack: the critical section is a slice push or pop
// (tens of nanoseconds), uncontended on a 2-core sidecar except under
// bursts. LIFO keeps the fewest connections warm, so the ones a burst left
// behind reach the idle timeout and close. A buffered channel would be
// FIFO (it cycles through every idle connection, so none ever idles out)
// and takes a lock inside anyway; a lock-free Treiber stack with intrusive
// nodes suffers ABA when a connection is popped, used and pushed back
// between another goroutine's load and CAS. The map from address to stack
// is copy-on-write behind an atomic.Pointer: reads take no lock and
// allocate nothing; a new endpoint copies it once. An endpoint's entry is
// removed by sweep once it has had no idle connection and no use for
// upstreamIdleTimeout, so endpoints that left discovery do not accumulate.
// When the service has a connection limit (ServiceLimits.MaxConnections),
// an endpoint's pool is tagged with the service's limits as it is picked
// (poolPick), and its connections are counted from dial to close.

// upConn is one HTTP/1.1 connection to an endpoint, with its read buffer.
// It belongs to one request at a time, or to its pool while idle.
type upConn struct {
	nc     net.Conn
	tcp    *net.TCPConn // nc when it is one (splice for big bodies)
	probe  *idleProbe   // checks tcp while idle (idle.Alive); nil if not TCP
	buf    []byte       // read buffer; buf[r:w] is unread
	r, w   int
	pool   *epPool
	idleAt time.Duration  // monotime when last put back
	reused bool           // it carried a request before this one
	svc    *ServiceLimits // counts this connection; nil: not counted
}

// epPool is one endpoint's idle connections.
type epPool struct {
	mu     sync.Mutex
	idle   []*upConn     // LIFO: the top (end) is the most recently used
	closed bool          // the listener finished or sweep removed it: put closes
	usedAt time.Duration // monotime of the last get or put
	// svc is the limits of the service the endpoint was last picked for
	// with a connection limit (see poolPick); nil: connections here are
	// not counted.
	svc atomic.Pointer[ServiceLimits]
}

// upstreamPools are a listener's pools by endpoint address.
type upstreamPools struct {
	m      atomic.Pointer[map[netip.AddrPort]*epPool]
	mu     sync.Mutex // serializes writers of m and closed
	closed bool
}

// monoStart anchors monotime.
var monoStart = time.Now()

// monotime is a monotonic clock reading.
func monotime() time.Duration { return time.Since(monoStart) }

// upBufSize is the read buffer of one upstream connection: big enough for
// a usual response head and a small body in one read.
const upBufSize = 16 << 10

// upBufs are the read buffers of client and upstream connections on the
// fast path.
var upBufs = sync.Pool{New: func() any { return new([upBufSize]byte) }}

// endpoint returns addr's pool, creating it.
func (p *upstreamPools) endpoint(addr netip.AddrPort) *epPool {
	if m := p.m.Load(); m != nil {
		if ep := (*m)[addr]; ep != nil {
			return ep
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.m.Load()
	if old != nil {
		if ep := (*old)[addr]; ep != nil {
			return ep
		}
	}
	m := make(map[netip.AddrPort]*epPool, 1)
	if old != nil {
		for k, v := range *old {
			m[k] = v
		}
	}
	ep := &epPool{closed: p.closed, usedAt: monotime()}
	m[addr] = ep
	p.m.Store(&m)
	return ep
}

// get pops the most recently used idle connection that has not idled out,
// or returns nil. With check, a connection must also pass its idle probe.
func (ep *epPool) get(now time.Duration, check bool) *upConn {
	for {
		ep.mu.Lock()
		ep.usedAt = now
		n := len(ep.idle)
		if n == 0 {
			ep.mu.Unlock()
			return nil
		}
		uc := ep.idle[n-1]
		ep.idle[n-1] = nil
		ep.idle = ep.idle[:n-1]
		ep.mu.Unlock()
		if now-uc.idleAt < upstreamIdleTimeout && (!check || uc.probe.Alive()) {
			uc.reused = true
			return uc
		}
		uc.close()
	}
}

// put returns uc to its pool, or closes it when the pool is full or
// closed.
func (uc *upConn) put() {
	ep := uc.pool
	uc.idleAt = monotime()
	over := false
	if sl := uc.svc; sl != nil {
		// Over the limit (lowered by a reload, or a dial that found no
		// idle connection to close): shed this one.
		max := sl.maxConns.Load()
		over = max > 0 && sl.conns.Load() > max
	}
	ep.mu.Lock()
	ep.usedAt = uc.idleAt
	if over || ep.closed || len(ep.idle) >= upstreamIdlePerEndpoint {
		ep.mu.Unlock()
		uc.close()
		return
	}
	ep.idle = append(ep.idle, uc)
	ep.mu.Unlock()
}

// close closes the socket and releases the buffer.
func (uc *upConn) close() {
	uc.nc.Close()
	if uc.svc != nil {
		uc.svc.conns.Add(-1)
		uc.svc = nil
	}
	if uc.buf != nil && len(uc.buf) == upBufSize {
		upBufs.Put((*[upBufSize]byte)(uc.buf))
	}
	uc.buf = nil
}

// dial opens a new connection to addr for ep. When ep's service has a
// connection limit and is at it, an idle connection of the service (on
// this listener) is closed first. Admission (admit) keeps the fast path's
// requests in flight within the limit, so at the limit one is idle unless
// another listener holds it or a request took it meanwhile; then the dial
// goes ahead over the limit, and the connection is not pooled afterwards
// (put): the limit is exact for requests, and soft by those for idle
// connections.
func (l *HTTPListener) dialUpstream(ctx context.Context, ep *epPool, addr netip.AddrPort) (*upConn, error) {
	sl := ep.svc.Load()
	if sl != nil && !sl.takeConn() {
		l.pools.closeIdleOf(sl)
		if !sl.takeConn() {
			sl.conns.Add(1)
		}
	}
	nc, err := l.dialer.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		if sl != nil {
			sl.conns.Add(-1)
		}
		return nil, &DialError{Addr: addr.String(), Err: err}
	}
	uc := &upConn{nc: nc, pool: ep, buf: upBufs.Get().(*[upBufSize]byte)[:], svc: sl}
	if uc.tcp, _ = nc.(*net.TCPConn); uc.tcp != nil {
		uc.nc = newSysConn(uc.tcp)
		if rc, err := uc.tcp.SyscallConn(); err == nil {
			uc.probe = newIdleProbe(rc)
		}
	}
	return uc, nil
}

// sweep closes connections idle for upstreamIdleTimeout (the oldest are at
// the bottom of each stack), then removes the entries of endpoints unused
// for as long.
func (p *upstreamPools) sweep(now time.Duration) {
	m := p.m.Load()
	if m == nil {
		return
	}
	unused := 0
	for _, ep := range *m {
		ep.mu.Lock()
		i := 0
		for i < len(ep.idle) && now-ep.idle[i].idleAt >= upstreamIdleTimeout {
			i++
		}
		expired := append([]*upConn(nil), ep.idle[:i]...)
		n := copy(ep.idle, ep.idle[i:])
		clear(ep.idle[n:])
		ep.idle = ep.idle[:n]
		if n == 0 && now-ep.usedAt >= upstreamIdleTimeout {
			unused++
		}
		ep.mu.Unlock()
		for _, uc := range expired {
			uc.close()
		}
	}
	if unused > 0 {
		p.removeUnused(now)
	}
}

// removeUnused removes the entries of endpoints with no idle connection and
// no get or put for upstreamIdleTimeout. A removed entry is closed: a
// request that still holds it (longer than the timeout) closes its
// connection instead of pooling it where no get would find it; the next
// request to that address makes a new entry.
func (p *upstreamPools) removeUnused(now time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.m.Load()
	m := make(map[netip.AddrPort]*epPool, len(*old))
	for addr, ep := range *old {
		ep.mu.Lock()
		if len(ep.idle) == 0 && now-ep.usedAt >= upstreamIdleTimeout {
			ep.closed = true
		} else {
			m[addr] = ep
		}
		ep.mu.Unlock()
	}
	p.m.Store(&m)
}

// closeAll closes every idle connection; connections put back afterwards
// are closed.
func (p *upstreamPools) closeAll() {
	p.mu.Lock()
	p.closed = true
	m := p.m.Load()
	p.mu.Unlock()
	if m == nil {
		return
	}
	for _, ep := range *m {
		ep.mu.Lock()
		ep.closed = true
		idle := ep.idle
		ep.idle = nil
		ep.mu.Unlock()
		for _, uc := range idle {
			uc.close()
		}
	}
}

// closeIdleOf closes the least recently used idle connection of an
// endpoint tagged with sl, if there is one.
func (p *upstreamPools) closeIdleOf(sl *ServiceLimits) {
	m := p.m.Load()
	if m == nil {
		return
	}
	var oldest *epPool
	at := time.Duration(1<<63 - 1)
	for _, ep := range *m {
		if ep.svc.Load() != sl {
			continue
		}
		ep.mu.Lock()
		if len(ep.idle) > 0 && ep.idle[0].idleAt < at {
			oldest, at = ep, ep.idle[0].idleAt
		}
		ep.mu.Unlock()
	}
	if oldest == nil {
		return
	}
	oldest.mu.Lock()
	if len(oldest.idle) == 0 {
		oldest.mu.Unlock()
		return
	}
	uc := oldest.idle[0]
	n := copy(oldest.idle, oldest.idle[1:])
	oldest.idle[n] = nil
	oldest.idle = oldest.idle[:n]
	oldest.mu.Unlock()
	uc.close()
}
