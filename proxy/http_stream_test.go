package proxy

import (
	"bufio"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/route"
)

// 100 concurrent streams on one h2c client connection are balanced over
// three endpoints: every stream is in flight at once (the endpoints hold
// them until all 100 arrived), and each endpoint gets its round-robin share.
func TestHTTPH2CConcurrentStreamsBalanced(t *testing.T) {
	const streams = 100
	var arrived atomic.Int64
	all := make(chan struct{})
	var protoMu sync.Mutex
	vias := map[string]int{}
	handler := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			protoMu.Lock()
			vias[r.Header.Get("Via")]++
			protoMu.Unlock()
			if arrived.Add(1) == streams {
				close(all)
			}
			select {
			case <-all:
			case <-time.After(waitLimit):
			}
			io.WriteString(w, name)
		})
	}
	var addrs []netip.AddrPort
	for _, name := range []string{"a", "b", "c"} {
		addrs = append(addrs, startHTTPBackend(t, handler(name)).addr)
	}
	up := newFakeUpstream(t, addrs...)
	tab := mustTable(t,
		route.RouteConfig{Match: route.MatchConfig{Path: route.PathMatch{Type: route.PathExact, Value: "/warm"}},
			Fixed: &route.FixedResponse{Status: 204}},
		route.RouteConfig{Backends: []route.Backend{{Service: "web.shop"}}})
	p := startHTTPProxy(t, HTTPConfig{}, tab, Upstreams{"web.shop": up}, ServerConfig{})
	c := newClient(t, true)
	// One request first, so that the 100 streams find the connection
	// established instead of each dialing its own.
	if resp, _ := c.get(t, "http://"+p.addr+"/warm"); resp.StatusCode != 204 {
		t.Fatalf("warm-up: %s", resp.Status)
	}

	var mu sync.Mutex
	got := map[string]int{}
	var wg sync.WaitGroup
	for range streams {
		wg.Go(func() {
			resp, err := c.Get("http://" + p.addr + "/")
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.ProtoMajor != 2 {
				t.Errorf("response protocol %s, want HTTP/2", resp.Proto)
			}
			mu.Lock()
			got[string(b)]++
			mu.Unlock()
		})
	}
	wg.Wait()
	select {
	case <-all:
	default:
		t.Fatalf("only %d of %d streams were in flight at once", arrived.Load(), streams)
	}
	for name, n := range got {
		if n != 33 && n != 34 {
			t.Errorf("endpoint %s got %d of %d streams, want 33 or 34 (all: %v)", name, n, streams, got)
		}
	}
	if len(got) != 3 {
		t.Errorf("endpoints reached: %v", got)
	}
	if n := c.dials.Load(); n != 1 {
		t.Errorf("client dialed %d connections, want 1", n)
	}
	if vias["2 outrigger"] != streams {
		t.Errorf("Via at the endpoints: %v, want %q on all", vias, "2 outrigger")
	}
	assertDonesMatchPicks(t, up)
}

// An Upgrade (WebSocket-style) handshake is tunnelled: after 101 the bytes
// go both ways through the proxy, and Done comes when the tunnel closes.
func TestHTTPUpgradeTunnel(t *testing.T) {
	be := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" || !headerHasToken(r.Header, "Connection", "upgrade") {
			http.Error(w, "upgrade required", http.StatusUpgradeRequired)
			return
		}
		nc, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer nc.Close()
		io.WriteString(brw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		brw.Flush()
		// Echo lines upper-cased until the client closes.
		for {
			line, err := brw.ReadString('\n')
			if err != nil {
				return
			}
			brw.WriteString(strings.ToUpper(line))
			brw.Flush()
		}
	}))
	up := newFakeUpstream(t, be.addr)
	p := startHTTPProxy(t, HTTPConfig{}, routeAll(t, "web.shop"), Upstreams{"web.shop": up}, ServerConfig{})
	c := p.dial(t)
	io.WriteString(c, rawRequest("GET /ws HTTP/1.1", "Host: x", "Connection: Upgrade", "Upgrade: echo"))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || resp.Header.Get("Upgrade") != "echo" {
		t.Fatalf("handshake: %s Upgrade %q", resp.Status, resp.Header.Get("Upgrade"))
	}
	for _, msg := range []string{"hello\n", "Content-Length: 5\r\n", "Transfer-Encoding: chunked\r\n", "\r\n"} {
		io.WriteString(c, msg)
		got, err := br.ReadString('\n')
		if err != nil || got != strings.ToUpper(msg) {
			t.Fatalf("echo of %q: %q, %v", msg, got, err)
		}
	}
	if _, _, d := up.stats(); len(d) != 0 {
		t.Errorf("Done called while the tunnel is open: %v", d)
	}
	c.Close()
	assertDonesMatchPicks(t, up)
}

// A drain lets an in-flight request finish: the listener stops accepting,
// the response arrives whole, and Serve returns after it.
func TestHTTPDrainFinishesInFlightRequest(t *testing.T) {
	started := make(chan struct{})
	release := newGate(t)
	be := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release.ch
		io.WriteString(w, "finished")
	}))
	t.Cleanup(release.open)
	up := newFakeUpstream(t, be.addr)
	p := startHTTPProxy(t, HTTPConfig{}, routeAll(t, "web.shop"), Upstreams{"web.shop": up}, ServerConfig{DrainTimeout: time.Hour})
	c := newClient(t, false)

	type result struct {
		body string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := c.Get("http://" + p.addr + "/slow")
		if err != nil {
			res <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		res <- result{string(b), err}
	}()
	<-started
	p.cancel()
	deadline := time.Now().Add(waitLimit)
	for p.srv.Bound() {
		if time.Now().After(deadline) {
			t.Fatal("still bound after the drain started")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-p.served:
		t.Fatalf("Serve returned %v with a request in flight", err)
	case <-time.After(50 * time.Millisecond): // not an assertion on timing: Serve must not return at all yet
	}
	release.open()
	r := <-res
	if r.err != nil || r.body != "finished" {
		t.Fatalf("in-flight request: %q, %v", r.body, r.err)
	}
	if err := p.wait(t); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get("http://" + p.addr + "/after"); err == nil {
		t.Error("a request after the drain was answered")
	}
	assertDonesMatchPicks(t, up)
}

// When the drain deadline passes, a request still in flight is cut off and
// Serve returns.
func TestHTTPDrainDeadlineClosesInFlight(t *testing.T) {
	started := make(chan struct{})
	release := newGate(t)
	be := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		select {
		case <-release.ch:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(release.open)
	up := newFakeUpstream(t, be.addr)
	p := startHTTPProxy(t, HTTPConfig{}, routeAll(t, "web.shop"), Upstreams{"web.shop": up}, ServerConfig{DrainTimeout: 50 * time.Millisecond})
	c := newClient(t, false)
	errc := make(chan error, 1)
	go func() {
		resp, err := c.Get("http://" + p.addr + "/stuck")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		errc <- err
	}()
	<-started
	p.cancel()
	if err := p.wait(t); err != nil {
		t.Fatal(err)
	}
	<-errc // any outcome but a hang
	assertDonesMatchPicks(t, up)
}
