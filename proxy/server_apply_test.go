package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// greet is a backend handler that sends name and a newline, then echoes.
func greet(name string) func(*net.TCPConn) {
	return func(c *net.TCPConn) {
		fmt.Fprintf(c, "%s\n", name)
		io.Copy(c, c)
		c.CloseWrite()
	}
}

// greetedConn is a client connection through the proxy that has read the
// backend's greeting.
type greetedConn struct {
	*net.TCPConn
	r    *bufio.Reader
	name string
}

func dialGreet(t *testing.T, addr string) *greetedConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, waitLimit)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(waitLimit))
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("no greeting through %s: %v", addr, err)
	}
	return &greetedConn{TCPConn: c.(*net.TCPConn), r: r, name: strings.TrimSpace(line)}
}

// echoes sends msg and requires it back: the connection still carries data
// both ways.
func (c *greetedConn) echoes(t *testing.T, msg string) {
	t.Helper()
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		t.Fatalf("write through the connection to %s: %v", c.name, err)
	}
	got, err := c.r.ReadString('\n')
	if err != nil || got != msg+"\n" {
		t.Fatalf("echo from %s = %q, %v; want %q", c.name, got, err, msg)
	}
}

// serving runs srv (already listening) until the test ends.
func serving(t *testing.T, srv *Server) (cancel context.CancelFunc, served chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	served = make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(waitLimit):
			t.Errorf("Serve did not return within %v", waitLimit)
		}
	})
	return cancel, served
}

func refuses(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, waitLimit)
	if err == nil {
		c.Close()
		t.Fatalf("%s still accepts connections", addr)
	}
}

func TestApplyAddsListenerWhileServing(t *testing.T) {
	a := startBackend(t, greet("a"))
	b := startBackend(t, greet("b"))
	srv := NewServer(ServerConfig{}, Options{},
		NewTCPListener(TCPConfig{Name: "a", Listen: "127.0.0.1:0"}, newFakeUpstream(t, a), Options{}))
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	serving(t, srv)
	ca := dialGreet(t, srv.Addrs()["a"].String())

	err := srv.Apply(Change{Add: []Listener{
		NewTCPListener(TCPConfig{Name: "b", Listen: "127.0.0.1:0"}, newFakeUpstream(t, b), Options{})}})
	if err != nil {
		t.Fatal(err)
	}
	addrs := srv.Addrs()
	if len(addrs) != 2 || addrs["b"] == nil {
		t.Fatalf("Addrs after adding b: %v", addrs)
	}
	if c := dialGreet(t, addrs["b"].String()); c.name != "b" {
		t.Errorf("new listener reached %q, want b", c.name)
	}
	ca.echoes(t, "still there")
	if !srv.Bound() {
		t.Error("Bound() = false after Apply")
	}
}

// A removed listener refuses new connections at once; its open connection
// runs on until its client closes it, and another listener's connection is
// not touched.
func TestApplyRemoveDrainsOnlyThatListener(t *testing.T) {
	a := startBackend(t, greet("a"))
	b := startBackend(t, greet("b"))
	srv := NewServer(ServerConfig{DrainTimeout: time.Hour}, Options{},
		NewTCPListener(TCPConfig{Name: "a", Listen: "127.0.0.1:0"}, newFakeUpstream(t, a), Options{}),
		NewTCPListener(TCPConfig{Name: "b", Listen: "127.0.0.1:0"}, newFakeUpstream(t, b), Options{}))
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	serving(t, srv)
	addrA, addrB := srv.Addrs()["a"].String(), srv.Addrs()["b"].String()
	ca, cb := dialGreet(t, addrA), dialGreet(t, addrB)

	if err := srv.Apply(Change{Remove: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	refuses(t, addrA)
	if _, ok := srv.Addrs()["a"]; ok {
		t.Error("Addrs still lists the removed listener")
	}
	ca.echoes(t, "draining")
	cb.echoes(t, "untouched")
	if n := srv.ActiveConns(); n != 2 {
		t.Errorf("ActiveConns() = %d, want 2 (one draining, one current)", n)
	}
	ca.CloseWrite()
	if _, err := io.Copy(io.Discard, ca.r); err != nil {
		t.Fatalf("draining connection did not end cleanly: %v", err)
	}
	cb.echoes(t, "still untouched")
	if err := srv.Apply(Change{Remove: []string{"a"}}); err == nil || !strings.Contains(err.Error(), `listener "a": cannot remove`) {
		t.Errorf("removing a removed listener: %v", err)
	}
}

// Past the drain timeout a removed listener's connections are closed;
// another listener's connection lives on.
func TestApplyRemoveDrainDeadline(t *testing.T) {
	a := startBackend(t, greet("a"))
	b := startBackend(t, greet("b"))
	srv := NewServer(ServerConfig{DrainTimeout: 50 * time.Millisecond}, Options{},
		NewTCPListener(TCPConfig{Name: "a", Listen: "127.0.0.1:0"}, newFakeUpstream(t, a), Options{}),
		NewTCPListener(TCPConfig{Name: "b", Listen: "127.0.0.1:0"}, newFakeUpstream(t, b), Options{}))
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	serving(t, srv)
	ca, cb := dialGreet(t, srv.Addrs()["a"].String()), dialGreet(t, srv.Addrs()["b"].String())
	if err := srv.Apply(Change{Remove: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	assertClosed(t, ca)
	cb.echoes(t, "survives")
}

// A failed bind fails the whole Apply: the listener bound before it is
// released again, and the listener it was to remove keeps serving.
func TestApplyAllOrNothing(t *testing.T) {
	a := startBackend(t, greet("a"))
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	free := freePort(t).String()

	srv := NewServer(ServerConfig{}, Options{},
		NewTCPListener(TCPConfig{Name: "a", Listen: "127.0.0.1:0"}, newFakeUpstream(t, a), Options{}))
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	serving(t, srv)
	addrA := srv.Addrs()["a"].String()
	ca := dialGreet(t, addrA)

	up := newFakeUpstream(t, a)
	err = srv.Apply(Change{Remove: []string{"a"}, Add: []Listener{
		NewTCPListener(TCPConfig{Name: "first", Listen: free}, up, Options{}),
		NewTCPListener(TCPConfig{Name: "orders", Listen: taken.Addr().String()}, up, Options{}),
	}})
	want := `listener "orders": listen tcp ` + taken.Addr().String() + `: bind: address already in use`
	if err == nil || err.Error() != want {
		t.Fatalf("Apply error:\n got %v\nwant %q", err, want)
	}
	ln, err := net.Listen("tcp", free)
	if err != nil {
		t.Fatalf("first listener's address still bound: %v", err)
	}
	ln.Close()
	if addrs := srv.Addrs(); len(addrs) != 1 || addrs["a"] == nil {
		t.Errorf("Addrs after a failed Apply: %v", addrs)
	}
	ca.echoes(t, "kept")
	if c := dialGreet(t, addrA); c.name != "a" {
		t.Errorf("listener a after a failed Apply reached %q", c.name)
	}

	// Bad configs and duplicate names are refused before anything binds.
	err = srv.Apply(Change{Add: []Listener{
		NewTCPListener(TCPConfig{Name: "a", Listen: "127.0.0.1:0"}, up, Options{}),
		NewTCPListener(TCPConfig{Name: "c", Listen: "nowhere"}, up, Options{})}})
	for _, w := range []string{`listener "a": name used twice`, `listener "c": listen "nowhere"`} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("Apply error %v lacks %q", err, w)
		}
	}
}

// A listener replaced by one of the same name and address takes over its
// socket: the port stays (even one picked with :0), new connections go by
// the new listener's upstream, and the old listener's connection drains.
func TestApplyReplaceKeepsSocket(t *testing.T) {
	a := startBackend(t, greet("a"))
	b := startBackend(t, greet("b"))
	srv := NewServer(ServerConfig{DrainTimeout: time.Hour}, Options{},
		NewTCPListener(TCPConfig{Name: "x", Listen: "127.0.0.1:0"}, newFakeUpstream(t, a), Options{}))
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	serving(t, srv)
	addr := srv.Addrs()["x"].String()
	old := dialGreet(t, addr)

	err := srv.Apply(Change{Remove: []string{"x"}, Add: []Listener{
		NewTCPListener(TCPConfig{Name: "x", Listen: "127.0.0.1:0"}, newFakeUpstream(t, b), Options{})}})
	if err != nil {
		t.Fatal(err)
	}
	if got := srv.Addrs()["x"].String(); got != addr {
		t.Fatalf("replaced listener on %s, want the old socket's %s", got, addr)
	}
	if c := dialGreet(t, addr); c.name != "b" {
		t.Errorf("after the replace a new connection reached %q, want b", c.name)
	}
	old.echoes(t, "old connection")
}

// An HTTP listener replaced on its own socket: new requests get the new
// routes, and requests on a connection of the old listener are still
// answered by the old one until it closes that connection.
func TestApplyReplaceHTTPListener(t *testing.T) {
	be := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "backend") }))
	srv := NewServer(ServerConfig{DrainTimeout: time.Hour}, Options{},
		NewHTTPListener(HTTPConfig{Name: "h", Listen: "127.0.0.1:0"}, routeAll(t, "be.test"),
			Upstreams{"be.test": newFakeUpstream(t, be.addr)}, Options{}))
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	serving(t, srv)
	addr := srv.Addrs()["h"].String()
	get := func(c *http.Client) string {
		t.Helper()
		resp, err := c.Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return fmt.Sprintf("%d %s", resp.StatusCode, body)
	}
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	if got := get(client); got != "200 backend" {
		t.Fatalf("before: %q", got)
	}
	err := srv.Apply(Change{Remove: []string{"h"}, Add: []Listener{
		NewHTTPListener(HTTPConfig{Name: "h", Listen: "127.0.0.1:0"}, nil, nil, Options{})}})
	if err != nil {
		t.Fatal(err)
	}
	if got := srv.Addrs()["h"].String(); got != addr {
		t.Fatalf("replaced listener on %s, want %s", got, addr)
	}
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	if got := get(fresh); !strings.HasPrefix(got, "404 ") {
		t.Errorf("after the replace: %q, want the new listener's 404", got)
	}
}

func TestTCPUpdateAppliesToNewConnections(t *testing.T) {
	a := startBackend(t, greet("a"))
	b := startBackend(t, greet("b"))
	l := NewTCPListener(TCPConfig{Name: "x", Listen: "127.0.0.1:0"}, newFakeUpstream(t, a), Options{})
	srv := NewServer(ServerConfig{}, Options{}, l)
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	serving(t, srv)
	addr := srv.Addrs()["x"].String()
	old := dialGreet(t, addr)

	if err := l.Update(TCPConfig{Name: "x", Listen: "127.0.0.1:0", IdleTimeout: time.Minute}, newFakeUpstream(t, b)); err != nil {
		t.Fatal(err)
	}
	c := dialGreet(t, addr)
	if c.name != "b" {
		t.Errorf("after Update a new connection reached %q, want b", c.name)
	}
	old.echoes(t, "keeps its endpoint")

	for _, bad := range []TCPConfig{
		{Name: "y", Listen: "127.0.0.1:0"},
		{Name: "x", Listen: "127.0.0.1:1"},
		{Name: "x", Listen: "127.0.0.1:0", ConnectAttempts: -1},
	} {
		if err := l.Update(bad, newFakeUpstream(t, a)); err == nil {
			t.Errorf("Update(%+v) succeeded", bad)
		}
	}
	if c := dialGreet(t, addr); c.name != "b" {
		t.Errorf("a refused Update changed the listener: reached %q", c.name)
	}
}

// Serve's drain waits for a removed listener's connections too.
func TestServeWaitsForRemovedListeners(t *testing.T) {
	a := startBackend(t, greet("a"))
	srv := NewServer(ServerConfig{DrainTimeout: time.Hour}, Options{},
		NewTCPListener(TCPConfig{Name: "a", Listen: "127.0.0.1:0"}, newFakeUpstream(t, a), Options{}))
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	cancel, served := serving(t, srv)
	ca := dialGreet(t, srv.Addrs()["a"].String())
	if err := srv.Apply(Change{Remove: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-served:
		t.Fatalf("Serve returned %v while a removed listener's connection was open", err)
	case <-time.After(50 * time.Millisecond):
	}
	ca.echoes(t, "draining")
	ca.Close()
	select {
	case err := <-served:
		served <- err // for the cleanup
	case <-time.After(waitLimit):
		t.Fatal("Serve did not return after the last connection closed")
	}
}

// A front listener (protocol auto) is removed and replaced like any other:
// its connection forwarded as TCP drains, and a replacement on the same
// address takes over its socket.
func TestApplyFrontListener(t *testing.T) {
	a := startBackend(t, greet("a"))
	b := startBackend(t, greet("b"))
	front := func(up Upstream) *FrontListener {
		return NewFrontListener(FrontConfig{
			HTTP:  HTTPConfig{Name: "f", Listen: "127.0.0.1:0"},
			Sniff: &SniffConfig{Timeout: 10 * time.Millisecond},
		}, nil, nil, up, Options{})
	}
	srv := NewServer(ServerConfig{DrainTimeout: time.Hour}, Options{}, front(newFakeUpstream(t, a)))
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	serving(t, srv)
	addr := srv.Addrs()["f"].String()
	// The client says nothing first: after the sniff timeout the
	// connection is forwarded as TCP and the backend greets.
	old := dialGreet(t, addr)
	if old.name != "a" {
		t.Fatalf("greeting %q", old.name)
	}

	if err := srv.Apply(Change{Remove: []string{"f"}, Add: []Listener{front(newFakeUpstream(t, b))}}); err != nil {
		t.Fatal(err)
	}
	if got := srv.Addrs()["f"].String(); got != addr {
		t.Fatalf("replaced front listener on %s, want %s", got, addr)
	}
	if c := dialGreet(t, addr); c.name != "b" {
		t.Errorf("after the replace a new connection reached %q, want b", c.name)
	}
	old.echoes(t, "drains on the old listener")
	if n := srv.ActiveConns(); n != 2 {
		t.Errorf("ActiveConns() = %d, want 2", n)
	}

	if err := srv.Apply(Change{Remove: []string{"f"}}); err != nil {
		t.Fatal(err)
	}
	refuses(t, addr)
	old.echoes(t, "still draining")
}

// A server started with no listener is not Bound until Apply adds one, and
// serves what Apply added before Serve.
func TestApplyBeforeServeOnEmptyServer(t *testing.T) {
	a := startBackend(t, greet("a"))
	srv := NewServer[Listener](ServerConfig{}, Options{})
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	if srv.Bound() {
		t.Error("Bound() with no listener")
	}
	if err := srv.Apply(Change{Add: []Listener{NewTCPListener(TCPConfig{Name: "a", Listen: "127.0.0.1:0"}, newFakeUpstream(t, a), Options{})}}); err != nil {
		t.Fatal(err)
	}
	if !srv.Bound() {
		t.Error("Bound() = false after Apply added a listener")
	}
	serving(t, srv)
	if c := dialGreet(t, srv.Addrs()["a"].String()); c.name != "a" {
		t.Errorf("greeting %q", c.name)
	}
}
