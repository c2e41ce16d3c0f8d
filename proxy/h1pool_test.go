package proxy

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"
)

// sweep removes the pool entries of endpoints unused for the idle timeout
// (endpoints that left discovery would otherwise stay in the map for the
// listener's life), keeps used ones, and a connection put back into a
// removed entry is closed, not stranded.
func TestH1PoolSweepRemovesUnusedEndpoints(t *testing.T) {
	var p upstreamPools
	gone := netip.MustParseAddrPort("10.0.0.1:80")
	kept := netip.MustParseAddrPort("10.0.0.2:80")
	epGone := p.endpoint(gone)
	epKept := p.endpoint(kept)
	now := monotime() + upstreamIdleTimeout
	epKept.get(now, false) // used just now
	p.sweep(now)
	m := *p.m.Load()
	if _, ok := m[gone]; ok {
		t.Errorf("entry of an endpoint unused for %v still in the pool map", upstreamIdleTimeout)
	}
	if m[kept] != epKept {
		t.Errorf("entry of a used endpoint removed")
	}
	if p.endpoint(gone) == epGone {
		t.Errorf("a removed entry came back")
	}

	// A request that held the removed entry puts its connection back.
	a, b := net.Pipe()
	defer b.Close()
	uc := &upConn{nc: a, pool: epGone, buf: make([]byte, 1)}
	uc.put()
	if len(epGone.idle) != 0 {
		t.Errorf("connection pooled in a removed entry")
	}
	a.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := a.Write([]byte{0}); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("connection put into a removed entry is still open (write: %v)", err)
	}
}
