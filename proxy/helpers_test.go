package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/outrigger-mesh/outrigger/balancer"
	"github.com/outrigger-mesh/outrigger/discovery"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitLimit only fails tests that hang; no test measures against it.
const waitLimit = 20 * time.Second

// fakeUpstream is an Upstream over a settable address list. It picks round
// robin, skipping tried addresses while an untried one remains (the
// balancer contract), and records every pick and Done.
type fakeUpstream struct {
	t *testing.T

	mu    sync.Mutex
	addrs []netip.AddrPort
	next  int
	calls int // Pick calls, including failed ones
	picks int // successful picks
	dones []doneRecord
}

type doneRecord struct {
	addr netip.AddrPort
	info balancer.DoneInfo
}

func newFakeUpstream(t *testing.T, addrs ...netip.AddrPort) *fakeUpstream {
	return &fakeUpstream{t: t, addrs: addrs}
}

func (f *fakeUpstream) set(addrs ...netip.AddrPort) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.addrs = addrs
}

func (f *fakeUpstream) Pick(info *balancer.PickInfo) (balancer.PickResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if len(f.addrs) == 0 {
		return balancer.PickResult{}, balancer.ErrNoEndpoints
	}
	i := f.next % len(f.addrs)
	for k := range f.addrs {
		if j := (f.next + k) % len(f.addrs); !info.WasTried(f.addrs[j]) {
			i = j
			break
		}
	}
	f.next = i + 1
	f.picks++
	addr := f.addrs[i]
	var called atomic.Bool
	return balancer.PickResult{
		Endpoint: &discovery.Endpoint{ID: addr.String(), Addr: addr, Weight: 1},
		Done: func(d balancer.DoneInfo) {
			if called.Swap(true) {
				f.t.Errorf("Done called twice for a pick of %v", addr)
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			f.dones = append(f.dones, doneRecord{addr, d})
		},
	}, nil
}

// stats returns Pick calls, successful picks and Done records.
func (f *fakeUpstream) stats() (calls, picks int, dones []doneRecord) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls, f.picks, append([]doneRecord(nil), f.dones...)
}

// waitDones waits until n Done calls were recorded and returns them.
func (f *fakeUpstream) waitDones(t *testing.T, n int) []doneRecord {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		_, _, d := f.stats()
		if len(d) >= n {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d Done calls after %v, want %d", len(d), waitLimit, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// backend is a real TCP server on loopback running handle for every
// connection; Cleanup closes the listener and every connection and waits for
// the handlers.
type backend struct {
	ln    *net.TCPListener
	mu    sync.Mutex
	conns map[*net.TCPConn]bool
	wg    sync.WaitGroup
}

func startBackend(t testing.TB, handle func(c *net.TCPConn)) netip.AddrPort {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{ln: ln, conns: map[*net.TCPConn]bool{}}
	b.wg.Go(func() {
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.conns[c] = true
			b.mu.Unlock()
			b.wg.Go(func() {
				defer c.Close()
				handle(c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		b.mu.Lock()
		for c := range b.conns {
			c.Close()
		}
		b.mu.Unlock()
		b.wg.Wait()
	})
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// echo copies everything back, then half-closes.
func echo(c *net.TCPConn) {
	io.Copy(c, c)
	c.CloseWrite()
}

// freePort returns a loopback address that was free a moment ago, for a
// listener the test opens itself.
func freePort(t testing.TB) netip.AddrPort {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr).AddrPort()
	ln.Close()
	return addr
}

// closedPort returns a loopback address where nothing listens: a connect
// is refused. The port stays bound (by a socket that does not listen,
// without SO_REUSEADDR) until the test ends, so the kernel cannot give it
// to a listener the test opens next: a port closed right away once went
// to the proxy's own listener, and the "dead" endpoint was the proxy.
func closedPort(t testing.TB) netip.AddrPort {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(sa.(*syscall.SockaddrInet4).Port))
}

// testProxy is a Server with one listener "test" on 127.0.0.1:0.
type testProxy struct {
	srv    *Server
	addr   string
	cancel context.CancelFunc
	served chan error
}

func startProxy(t testing.TB, cfg TCPConfig, up Upstream, scfg ServerConfig) *testProxy {
	t.Helper()
	cfg.Name, cfg.Listen = "test", "127.0.0.1:0"
	srv := NewServer(scfg, Options{}, NewTCPListener(cfg, up, Options{}))
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &testProxy{srv: srv, addr: srv.Addrs()["test"].String(), cancel: cancel, served: make(chan error, 1)}
	go func() { p.served <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := p.wait(t); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return p
}

// wait waits for Serve to return (once; later calls return nil).
func (p *testProxy) wait(t testing.TB) error {
	t.Helper()
	select {
	case err, ok := <-p.served:
		if ok {
			close(p.served)
		}
		return err
	case <-time.After(waitLimit):
		t.Fatalf("Serve did not return within %v", waitLimit)
		return nil
	}
}

func (p *testProxy) dial(t testing.TB) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.addr, waitLimit)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(waitLimit))
	return c.(*net.TCPConn)
}

// roundTrip writes msg and reads it back from an echo backend.
func roundTrip(t testing.TB, c net.Conn, msg []byte, buf []byte) {
	t.Helper()
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, buf[:len(msg)]); err != nil {
		t.Fatal(err)
	}
}

// assertClosed reads from c and requires EOF or a connection error, not a
// timeout: the proxy closed c rather than letting it hang.
func assertClosed(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(waitLimit))
	_, err := io.Copy(io.Discard, c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection still open after %v", waitLimit)
	}
}
