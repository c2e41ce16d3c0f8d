package balancer

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/outrigger-mesh/outrigger/resilience"
)

// healthRun runs b.Run with real health checks until the returned stop is
// called; each picker b publishes is signalled on the returned channel.
func healthRun(t *testing.T, b *Balancer) (published chan struct{}, stop func()) {
	t.Helper()
	published = make(chan struct{}, 100)
	b.published = func() {
		select {
		case published <- struct{}{}:
		default:
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- b.Run(ctx) }()
	var stopped bool
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	t.Cleanup(stop)
	return published, stop
}

// waitEligible waits, by published picker, until endpoint 0 of b's
// snapshot is eligible (or not, as want says).
func waitEligible(t *testing.T, b *Balancer, published chan struct{}, want bool, what string) {
	t.Helper()
	safety := time.After(30 * time.Second) // a safety net, not a timing assertion
	for {
		if st := b.Status().Endpoints; len(st) > 0 && st[0].Eligible == want {
			return
		}
		select {
		case <-published:
		case <-safety:
			st := b.Status().Endpoints[0]
			t.Fatalf("%s: a eligible=%v health %+v, want eligible=%v", what, st.Eligible, st.Health, want)
		}
	}
}

func listenTCP(t *testing.T) (net.Listener, netip.AddrPort) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln, ln.Addr().(*net.TCPAddr).AddrPort()
}

var fastTCPHealth = &resilience.HealthConfig{Protocol: resilience.HealthTCP,
	Interval: 10 * time.Millisecond, UnhealthyThreshold: 1, HealthyThreshold: 1}

// TestHealthVerdictResetsOnAddressChange: an endpoint found unhealthy that
// keeps its ID but moves to a live address (a Consul service registered
// again elsewhere, an edited file entry) comes back once its new address
// is checked, rather than keeping the old address's verdict for good.
func TestHealthVerdictResetsOnAddressChange(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) }) // after Run stops (cleanups run last-in first-out)
	dead, deadAddr := listenTCP(t)
	dead.Close()
	_, liveAddr := listenTCP(t)
	a, other := ep("a"), ep("b")
	a.Addr, other.Addr = deadAddr, liveAddr
	w := &fakeWatcher{}
	w.push(snapshot(1, a, other))
	b, err := New(Config{Service: testService, Health: fastTCPHealth}, Options{Watcher: w})
	if err != nil {
		t.Fatal(err)
	}
	published, _ := healthRun(t, b)
	waitEligible(t, b, published, false, "a at a dead address")
	a.Addr = liveAddr
	w.push(snapshot(2, a, other))
	waitEligible(t, b, published, true, "a moved to a live address")
	if h := b.Status().Endpoints[0].Health; h == nil || !h.Healthy {
		t.Errorf("a back in the picker with health %+v, want healthy", h)
	}
}

// TestHealthVerdictResetsOnRunRestart: verdicts do not outlive the Run
// whose checkers reached them; the next Run's checkers decide afresh.
func TestHealthVerdictResetsOnRunRestart(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) }) // after Run stops (cleanups run last-in first-out)
	ln, addr := listenTCP(t)
	ln.Close()
	a := ep("a")
	a.Addr = addr
	w := &fakeWatcher{}
	w.push(snapshot(1, a, ep("b")))
	b, err := New(Config{Service: testService, Health: fastTCPHealth}, Options{Watcher: w})
	if err != nil {
		t.Fatal(err)
	}
	published, stop := healthRun(t, b)
	waitEligible(t, b, published, false, "a not listening")
	stop()
	ln2, err := net.Listen("tcp", addr.String())
	if err != nil {
		t.Fatalf("cannot listen on %v again (Go sets SO_REUSEADDR, so only another process taking the port can cause this): %v", addr, err)
	}
	defer ln2.Close()
	published, _ = healthRun(t, b)
	waitEligible(t, b, published, true, "a listening again, checked by a new Run")
}
