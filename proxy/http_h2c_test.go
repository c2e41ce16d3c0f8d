package proxy

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// startH2CBackend is a real HTTP server on loopback that speaks only HTTP/2
// with prior knowledge, counting the connections it accepted.
// Each opt edits the server before it starts.
func startH2CBackend(t testing.TB, h http.Handler, opts ...func(*http.Server)) *httpBackend {
	t.Helper()
	b := &httpBackend{Server: httptest.NewUnstartedServer(h)}
	for _, o := range opts {
		o(b.Config)
	}
	b.Config.Protocols = new(http.Protocols)
	b.Config.Protocols.SetUnencryptedHTTP2(true)
	b.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			b.conns.Add(1)
		}
	}
	b.Start()
	t.Cleanup(b.Close)
	b.addr = netip.MustParseAddrPort(b.Listener.Addr().String())
	return b
}

// 100 concurrent HTTP/1.1 requests through an h2c-upstream listener reach
// three h2c-only backends as HTTP/2 streams, all in flight at once, over
// one upstream connection per backend, from a cold start.
func TestHTTPH2CUpstreamMultiplexes(t *testing.T) {
	const requests = 100
	var arrived atomic.Int64
	all := make(chan struct{})
	var mu sync.Mutex
	protos := map[string]int{}
	handler := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			protos[r.Proto]++
			mu.Unlock()
			if arrived.Add(1) == requests {
				close(all)
			}
			select {
			case <-all:
			case <-time.After(waitLimit):
			}
			io.WriteString(w, name)
		})
	}
	var backends []*httpBackend
	var addrs []netip.AddrPort
	for _, name := range []string{"a", "b", "c"} {
		b := startH2CBackend(t, handler(name))
		backends = append(backends, b)
		addrs = append(addrs, b.addr)
	}
	up := newFakeUpstream(t, addrs...)
	p := startHTTPProxy(t, HTTPConfig{UpstreamProtocol: UpstreamH2C}, routeAll(t, "web.shop"), Upstreams{"web.shop": up}, ServerConfig{})
	c := newClient(t, false)

	got := map[string]int{}
	var wg sync.WaitGroup
	for range requests {
		wg.Go(func() {
			resp, err := c.Get("http://" + p.addr + "/")
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || resp.Header.Get("Via") != "2 outrigger" {
				t.Errorf("%s Via %q body %q, want 200 via %q", resp.Status, resp.Header.Get("Via"), b, "2 outrigger")
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
		t.Fatalf("only %d of %d requests were in flight at once", arrived.Load(), requests)
	}
	for name, n := range got {
		if n != 33 && n != 34 {
			t.Errorf("backend %s got %d of %d requests, want 33 or 34 (all: %v)", name, n, requests, got)
		}
	}
	if protos["HTTP/2.0"] != requests {
		t.Errorf("protocols at the backends: %v, want HTTP/2.0 only", protos)
	}
	for i, b := range backends {
		if n := b.conns.Load(); n != 1 {
			t.Errorf("backend %d accepted %d connections, want 1 (multiplexed)", i, n)
		}
	}
	assertDonesMatchPicks(t, up)
}

// When an endpoint's stream limit is reached, the proxy opens another
// connection to it instead of queueing: 30 requests to a backend allowing
// 10 streams per connection are all in flight at once over 3 connections.
func TestHTTPH2CUpstreamStreamLimit(t *testing.T) {
	const requests, limit = 30, 10
	var arrived atomic.Int64
	all := make(chan struct{})
	be := startH2CBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if arrived.Add(1) == requests {
			close(all)
		}
		select {
		case <-all:
		case <-time.After(waitLimit):
		}
		io.WriteString(w, "ok")
	}), func(s *http.Server) { s.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: limit} })
	up := newFakeUpstream(t, be.addr)
	p := startHTTPProxy(t, HTTPConfig{UpstreamProtocol: UpstreamH2C}, routeAll(t, "web.shop"), Upstreams{"web.shop": up}, ServerConfig{})
	c := newClient(t, true)
	var wg sync.WaitGroup
	for range requests {
		wg.Go(func() {
			resp, err := c.Get("http://" + p.addr + "/")
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || string(body) != "ok" {
				t.Errorf("%s %q, want 200 ok", resp.Status, body)
			}
		})
	}
	wg.Wait()
	select {
	case <-all:
	default:
		t.Fatalf("only %d of %d requests were in flight at once", arrived.Load(), requests)
	}
	if n := be.conns.Load(); n < requests/limit || n > requests/limit+1 {
		t.Errorf("backend accepted %d connections, want %d (or one more)", n, requests/limit)
	}
	assertDonesMatchPicks(t, up)
}
