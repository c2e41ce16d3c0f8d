package proxy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/outrigger-mesh/outrigger/balancer"
)

// stream is size bytes of deterministic pseudo-random data, hashed as read.
func stream(seed byte, size int64, h hash.Hash) io.Reader {
	return io.TeeReader(io.LimitReader(rand.NewChaCha8([32]byte{seed}), size), h)
}

// 100 MB each way at once, byte-identical in both directions; each side
// half-closes after sending and still receives everything.
func TestTransfer100MBBothWays(t *testing.T) {
	const size = 100 << 20
	type result struct {
		recv     []byte
		n        int64
		sent     []byte
		err      error
		finished bool
	}
	got := make(chan result, 1)
	addr := startBackend(t, func(c *net.TCPConn) {
		var r result
		sent, recv := sha256.New(), sha256.New()
		var wg sync.WaitGroup
		var sendErr error
		wg.Go(func() {
			if _, sendErr = io.Copy(c, stream(2, size, sent)); sendErr == nil {
				sendErr = c.CloseWrite()
			}
		})
		r.n, r.err = io.Copy(recv, c)
		wg.Wait()
		r.err = errors.Join(r.err, sendErr)
		r.recv, r.sent = recv.Sum(nil), sent.Sum(nil)
		got <- r
	})
	up := newFakeUpstream(t, addr)
	p := startProxy(t, TCPConfig{}, up, ServerConfig{})
	c := p.dial(t)
	c.SetDeadline(time.Now().Add(5 * time.Minute))

	sent, recv := sha256.New(), sha256.New()
	var sendErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		if _, sendErr = io.Copy(c, stream(1, size, sent)); sendErr == nil {
			sendErr = c.CloseWrite()
		}
	})
	n, err := io.Copy(recv, c)
	wg.Wait()
	if err != nil || sendErr != nil {
		t.Fatalf("client: receive: %v, send: %v", err, sendErr)
	}
	b := <-got
	if b.err != nil {
		t.Fatalf("backend: %v", b.err)
	}
	if n != size || b.n != size {
		t.Fatalf("client received %d bytes, backend received %d; want %d each", n, b.n, size)
	}
	if !bytes.Equal(b.recv, sent.Sum(nil)) {
		t.Error("client→backend: bytes differ")
	}
	if !bytes.Equal(recv.Sum(nil), b.sent) {
		t.Error("backend→client: bytes differ")
	}
	c.Close()
	d := up.waitDones(t, 1)
	if d[0].info.Err != nil {
		t.Errorf("Done(%v) after a clean transfer, want nil", d[0].info.Err)
	}
}

// The client half-closes; the backend answers only after reading EOF, and
// the client still reads the whole answer.
func TestHalfCloseFromClient(t *testing.T) {
	addr := startBackend(t, func(c *net.TCPConn) {
		n, _ := io.Copy(io.Discard, c)
		fmt.Fprintf(c, "got %d bytes\n", n)
		c.Write(bytes.Repeat([]byte("r"), 1<<20))
	})
	p := startProxy(t, TCPConfig{}, newFakeUpstream(t, addr), ServerConfig{})
	c := p.dial(t)
	if _, err := c.Write(make([]byte, 12345)); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	reply, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	want := "got 12345 bytes\n" + strings.Repeat("r", 1<<20)
	if string(reply) != want {
		t.Fatalf("reply: %d bytes starting %.20q, want %d bytes starting %.20q", len(reply), reply, len(want), want)
	}
}

// The backend half-closes first; the client reads EOF and can still send
// everything to the backend.
func TestHalfCloseFromBackend(t *testing.T) {
	received := make(chan int64, 1)
	addr := startBackend(t, func(c *net.TCPConn) {
		io.WriteString(c, "hello")
		c.CloseWrite()
		n, _ := io.Copy(io.Discard, c)
		received <- n
	})
	p := startProxy(t, TCPConfig{}, newFakeUpstream(t, addr), ServerConfig{})
	c := p.dial(t)
	greeting, err := io.ReadAll(c)
	if err != nil || string(greeting) != "hello" {
		t.Fatalf("read %q, %v; want hello and EOF", greeting, err)
	}
	if _, err := c.Write(make([]byte, 3<<20)); err != nil {
		t.Fatalf("write after the backend's half-close: %v", err)
	}
	c.CloseWrite()
	if n := <-received; n != 3<<20 {
		t.Fatalf("backend received %d bytes, want %d", n, 3<<20)
	}
	assertClosed(t, c)
}

// A refused dial goes on to the next endpoint; the failed pick's Done gets
// the dial error, the used one's gets nil.
func TestDialFailureTriesNextEndpoint(t *testing.T) {
	dead := closedPort(t)
	live := startBackend(t, echo)
	up := newFakeUpstream(t, dead, live)
	p := startProxy(t, TCPConfig{}, up, ServerConfig{})
	c := p.dial(t)
	roundTrip(t, c, []byte("ping"), make([]byte, 4))
	c.Close()

	d := up.waitDones(t, 2)
	if d[0].addr != dead || !errors.Is(d[0].info.Err, syscall.ECONNREFUSED) {
		t.Errorf("first Done: %v %v, want %v with ECONNREFUSED", d[0].addr, d[0].info.Err, dead)
	}
	var opErr *net.OpError
	if !errors.As(d[0].info.Err, &opErr) || opErr.Op != "dial" {
		t.Errorf("first Done error %v is not a dial *net.OpError", d[0].info.Err)
	}
	if d[1].addr != live || d[1].info.Err != nil {
		t.Errorf("second Done: %v %v, want %v nil", d[1].addr, d[1].info.Err, live)
	}
}

// With every endpoint refusing, the client is closed after ConnectAttempts
// picks, each reported to Done with its error.
func TestAllEndpointsDownClosesClient(t *testing.T) {
	a, b := closedPort(t), closedPort(t)
	up := newFakeUpstream(t, a, b)
	p := startProxy(t, TCPConfig{ConnectAttempts: 3}, up, ServerConfig{})
	c := p.dial(t)
	assertClosed(t, c)

	d := up.waitDones(t, 3)
	var got []netip.AddrPort
	for _, r := range d {
		got = append(got, r.addr)
		if !errors.Is(r.info.Err, syscall.ECONNREFUSED) {
			t.Errorf("Done(%v) for %v, want ECONNREFUSED", r.info.Err, r.addr)
		}
	}
	if diff := cmp.Diff(got, []netip.AddrPort{a, b, a}, cmp.Comparer(func(x, y netip.AddrPort) bool { return x == y })); diff != "" {
		t.Errorf("tried endpoints (-got +want):\n%s", diff)
	}
}

// ErrNoEndpoints closes the client at once; there is nothing to call Done on.
func TestNoEndpointsClosesClient(t *testing.T) {
	up := newFakeUpstream(t)
	p := startProxy(t, TCPConfig{}, up, ServerConfig{})
	c := p.dial(t)
	assertClosed(t, c)
	calls, picks, dones := up.stats()
	if calls != 1 || picks != 0 || len(dones) != 0 {
		t.Errorf("Pick calls %d, picks %d, Dones %d; want 1, 0, 0", calls, picks, len(dones))
	}
}

// An open connection keeps its endpoint after the endpoint leaves the
// upstream's set; new connections go to the new set.
func TestOpenConnectionSurvivesEndpointChange(t *testing.T) {
	greeter := func(name string) func(*net.TCPConn) {
		return func(c *net.TCPConn) {
			io.WriteString(c, name+"\n")
			echo(c)
		}
	}
	a, b := startBackend(t, greeter("a")), startBackend(t, greeter("b"))
	up := newFakeUpstream(t, a)
	p := startProxy(t, TCPConfig{}, up, ServerConfig{})
	greeting := func(r *bufio.Reader) string {
		t.Helper()
		s, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(s)
	}

	c1 := p.dial(t)
	r1 := bufio.NewReader(c1)
	if g := greeting(r1); g != "a" {
		t.Fatalf("first connection reached %q, want a", g)
	}
	up.set(b)
	c2 := p.dial(t)
	if g := greeting(bufio.NewReader(c2)); g != "b" {
		t.Fatalf("connection after the change reached %q, want b", g)
	}
	fmt.Fprintf(c1, "still here\n")
	if s := greeting(r1); s != "still here" {
		t.Fatalf("open connection answered %q after the endpoint change", s)
	}
}

// Every successful Pick gets exactly one Done, under concurrency, with dial
// failures mixed in; Dones with an error are exactly the dead endpoints'.
func TestDoneBalanced(t *testing.T) {
	live1, live2 := startBackend(t, echo), startBackend(t, echo)
	dead1, dead2 := closedPort(t), closedPort(t)
	up := newFakeUpstream(t, dead1, live1, dead2, live2)
	p := startProxy(t, TCPConfig{}, up, ServerConfig{})
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			c, err := net.Dial("tcp", p.addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(waitLimit))
			msg := []byte(strconv.Itoa(i))
			if _, err := c.Write(msg); err != nil {
				t.Error(err)
				return
			}
			buf := make([]byte, len(msg))
			if _, err := io.ReadFull(c, buf); err != nil || !bytes.Equal(buf, msg) {
				t.Errorf("echo %q, %v; want %q", buf, err, msg)
			}
		})
	}
	wg.Wait()
	p.cancel()
	if err := p.wait(t); err != nil {
		t.Fatal(err)
	}
	_, picks, dones := up.stats()
	if len(dones) != picks {
		t.Fatalf("%d picks, %d Dones", picks, len(dones))
	}
	for _, d := range dones {
		dead := d.addr == dead1 || d.addr == dead2
		if dead != (d.info.Err != nil) {
			t.Errorf("Done(%v) for %v", d.info.Err, d.addr)
		}
	}
	if picks < 40 {
		t.Errorf("%d picks for 40 connections", picks)
	}
}

// StaticUpstream always forwards to its one address.
func TestStaticUpstream(t *testing.T) {
	addr := startBackend(t, echo)
	up := StaticUpstream("app", addr)
	res, err := up.Pick(&balancer.PickInfo{})
	if err != nil || res.Endpoint.Addr != addr || res.Endpoint.ID != "app" {
		t.Fatalf("Pick = %+v, %v", res.Endpoint, err)
	}
	res.Done(balancer.DoneInfo{})
	p := startProxy(t, TCPConfig{ConnectAttempts: 1}, up, ServerConfig{})
	c := p.dial(t)
	buf := make([]byte, 5)
	roundTrip(t, c, []byte("hello"), buf)
	if string(buf) != "hello" {
		t.Fatalf("echo %q", buf)
	}
}

// Both sockets of a proxied connection have TCP keep-alive on.
func TestKeepAliveOnBothSides(t *testing.T) {
	p := startProxy(t, TCPConfig{}, newFakeUpstream(t, startBackend(t, echo)), ServerConfig{})
	c := p.dial(t)
	roundTrip(t, c, []byte("k"), make([]byte, 1))

	p.srv.mu.Lock()
	var sockets []*net.TCPConn
	for pc := range p.srv.conns {
		pc.mu.Lock()
		sockets = append(sockets, pc.client, pc.upstream)
		pc.mu.Unlock()
	}
	p.srv.mu.Unlock()
	if len(sockets) != 2 {
		t.Fatalf("%d sockets tracked, want 2", len(sockets))
	}
	for i, s := range sockets {
		raw, err := s.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var on, idle int
		var optErr error
		raw.Control(func(fd uintptr) {
			on, optErr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE)
			if optErr == nil {
				idle, optErr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE)
			}
		})
		if optErr != nil || on != 1 || idle != int(keepAlive.Idle/time.Second) {
			t.Errorf("socket %d: SO_KEEPALIVE %d, TCP_KEEPIDLE %d, %v; want 1, %d", i, on, idle, optErr, keepAlive.Idle/time.Second)
		}
	}
}
