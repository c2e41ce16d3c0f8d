package proxy

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// connRecorder is a TCPObserver that keeps a copy of every call.
type connRecorder struct {
	mu             sync.Mutex
	opened, closed []ConnRecord
	changed        chan struct{}
}

func newConnRecorder() *connRecorder { return &connRecorder{changed: make(chan struct{}, 100)} }

func (r *connRecorder) ConnOpened(c *ConnRecord) {
	r.mu.Lock()
	r.opened = append(r.opened, *c)
	r.mu.Unlock()
	r.changed <- struct{}{}
}

func (r *connRecorder) ConnClosed(c *ConnRecord) {
	r.mu.Lock()
	r.closed = append(r.closed, *c)
	r.mu.Unlock()
	r.changed <- struct{}{}
}

// waitClosed waits until n connections were reported closed and returns
// the records of both calls.
func (r *connRecorder) waitClosed(t *testing.T, n int) (opened, closed []ConnRecord) {
	t.Helper()
	deadline := time.After(waitLimit)
	for {
		r.mu.Lock()
		if len(r.closed) >= n {
			opened, closed = append([]ConnRecord(nil), r.opened...), append([]ConnRecord(nil), r.closed...)
			r.mu.Unlock()
			return opened, closed
		}
		r.mu.Unlock()
		select {
		case <-r.changed:
		case <-deadline:
			t.Fatalf("%d connections reported closed within %v, want %d", len(r.closed), waitLimit, n)
		}
	}
}

func startObservedProxy(t *testing.T, cfg TCPConfig, up Upstream, obs TCPObserver) (*TCPListener, string) {
	t.Helper()
	cfg.Name, cfg.Listen = "l4", "127.0.0.1:0"
	l := NewTCPListener(cfg, up, Options{TCPObserver: obs})
	srv := NewServer(ServerConfig{}, Options{}, l)
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return l, srv.Addrs()["l4"].String()
}

// The TCPObserver sees each forwarded connection opened and then closed
// once, with its service, endpoint, bytes each way and reason; a
// connection that finds no endpoint is closed with "no_upstream"; an
// Update keeps the observer and reports the new upstream's service.
func TestTCPObserver(t *testing.T) {
	backend := startBackend(t, echo)
	rec := newConnRecorder()
	l, addr := startObservedProxy(t, TCPConfig{ConnectAttempts: 1}, StaticUpstream("echo", backend), rec)

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	msg, buf := []byte("hello, proxy"), make([]byte, 64)
	roundTrip(t, c, msg, buf)
	roundTrip(t, c, msg[:5], buf)
	c.(*net.TCPConn).CloseWrite()
	assertClosed(t, c)
	c.Close()
	opened, closed := rec.waitClosed(t, 1)

	// The next connection goes to a port where nothing listens.
	dead := closedPort(t)
	if err := l.Update(TCPConfig{Name: "l4", Listen: "127.0.0.1:0", ConnectAttempts: 1}, StaticUpstream("dead", dead)); err != nil {
		t.Fatal(err)
	}
	c2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	assertClosed(t, c2)
	c2.Close()
	opened, closed = rec.waitClosed(t, 2)

	ignore := cmpopts.IgnoreFields(ConnRecord{}, "Start", "Duration")
	wantOpened := []ConnRecord{
		{Listener: "l4", Service: "echo"},
		{Listener: "l4", Service: "dead"},
	}
	if d := cmp.Diff(opened, wantOpened, ignore, cmpopts.EquateComparable(netip.AddrPort{})); d != "" {
		t.Errorf("opened (-got +want):\n%s", d)
	}
	wantClosed := []ConnRecord{
		{Listener: "l4", Service: "echo", Endpoint: backend, Received: 17, Sent: 17, Reason: "eof"},
		{Listener: "l4", Service: "dead", Reason: "no_upstream"},
	}
	if d := cmp.Diff(closed, wantClosed, ignore, cmpopts.EquateComparable(netip.AddrPort{})); d != "" {
		t.Errorf("closed (-got +want):\n%s", d)
	}
	for i, r := range closed {
		if r.Start.IsZero() || r.Duration <= 0 {
			t.Errorf("closed[%d]: start %v, duration %v; want both set", i, r.Start, r.Duration)
		}
	}
}
