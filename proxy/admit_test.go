package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/outrigger-mesh/outrigger/resilience"
)

// startAdmitProxy runs one HTTP listener with adm as its admission
// control; the table has one route sending everything to "web.shop".
func startAdmitProxy(t testing.TB, cfg HTTPConfig, ups Upstreams, adm *Admission) *testProxy {
	t.Helper()
	cfg.Name, cfg.Listen = "test", "127.0.0.1:0"
	l := NewHTTPListener(cfg, nil, nil, Options{})
	l.SetRouting(routeAll(t, "web.shop"), ups, adm)
	srv := NewServer(ServerConfig{}, Options{}, l)
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

// engines are the two HTTP engines: the fast path (HTTP/1.1 client) and
// net/http's (NetHTTPOnly with an HTTP/1.1 client, and h2c).
var engines = []struct {
	name string
	cfg  HTTPConfig
	h2c  bool
}{
	{"fast", HTTPConfig{}, false},
	{"nethttp", HTTPConfig{NetHTTPOnly: true}, false},
	{"h2c", HTTPConfig{}, true},
}

type answer struct {
	Status     int
	Cause      string
	RetryAfter string
}

func answerOf(resp *http.Response) answer {
	return answer{resp.StatusCode, resp.Header.Get(ErrorHeader), resp.Header.Get("Retry-After")}
}

// fromAddr is a client whose connections come from the local address ip.
func fromAddr(t testing.TB, ip string, h2c bool) *http.Client {
	tr := &http.Transport{
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}).DialContext,
		Protocols:   new(http.Protocols),
	}
	if h2c {
		tr.Protocols.SetUnencryptedHTTP2(true)
	} else {
		tr.Protocols.SetHTTP1(true)
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: waitLimit}
}

func send(t testing.TB, c *http.Client, url string) answer {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return answerOf(resp)
}

// TestAdmitRateLimit: with burst B and a refill too slow to matter,
// exactly B of N requests pass and the rest get 429 with Retry-After; the
// per-client limit keeps one bucket per source IP.
func TestAdmitRateLimit(t *testing.T) {
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			var hits atomic.Int64
			be := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
			ups := Upstreams{"web.shop": StaticUpstream("web", be.addr)}

			// Route limit: 3 of 10 pass; a token is 1000s away.
			rl := NewRouteLimits("all", RouteLimitsConfig{RateLimit: resilience.RateLimitConfig{Rate: 0.001, Burst: 3}}, nil)
			p := startAdmitProxy(t, e.cfg, ups, &Admission{Routes: []*RouteLimits{rl}})
			c := fromAddr(t, "127.0.0.1", e.h2c)
			var got []answer
			for range 10 {
				got = append(got, send(t, c, "http://"+p.addr+"/"))
			}
			want := []answer{{200, "", ""}, {200, "", ""}, {200, "", ""}}
			for range 7 {
				want = append(want, answer{429, causeRateLimited, "1000"})
			}
			if diff := cmp.Diff(got, want); diff != "" {
				t.Errorf("route rate limit (-got +want):\n%s", diff)
			}
			if n := hits.Load(); n != 3 {
				t.Errorf("backend saw %d requests, want 3", n)
			}

			// Per-client limit: 2 each for 127.0.0.1 and 127.0.0.2.
			pc := NewRouteLimits("all", RouteLimitsConfig{PerClient: resilience.RateLimitConfig{Rate: 0.001, Burst: 2}}, nil)
			p2 := startAdmitProxy(t, e.cfg, ups, &Admission{Routes: []*RouteLimits{pc}})
			counts := map[string]int{}
			for _, ip := range []string{"127.0.0.1", "127.0.0.2"} {
				c := fromAddr(t, ip, e.h2c)
				for range 5 {
					a := send(t, c, "http://"+p2.addr+"/")
					counts[fmt.Sprintf("%s %d", ip, a.Status)]++
				}
			}
			wantCounts := map[string]int{"127.0.0.1 200": 2, "127.0.0.1 429": 3, "127.0.0.2 200": 2, "127.0.0.2 429": 3}
			if diff := cmp.Diff(counts, wantCounts); diff != "" {
				t.Errorf("per-client limit (-got +want):\n%s", diff)
			}
		})
	}
}

// TestAdmitRouteBreaker: failures open the route's breaker, the next
// request gets 503 circuit_open and the backend sees nothing; after the
// open time a probe to the recovered backend closes it.
func TestAdmitRouteBreaker(t *testing.T) {
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			var hits atomic.Int64
			var failing atomic.Bool
			failing.Store(true)
			be := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				if failing.Load() {
					w.WriteHeader(http.StatusServiceUnavailable)
				}
			}))
			ups := Upstreams{"web.shop": StaticUpstream("web", be.addr)}
			const open = 300 * time.Millisecond
			rl := NewRouteLimits("all", RouteLimitsConfig{Breaker: resilience.BreakerConfig{ConsecutiveFailures: 3, OpenTime: open}}, nil)
			p := startAdmitProxy(t, e.cfg, ups, &Admission{Routes: []*RouteLimits{rl}})
			c := fromAddr(t, "127.0.0.1", e.h2c)
			url := "http://" + p.addr + "/"

			// A request's outcome reaches the breaker after its response
			// reached the client: wait for the third to count (polled).
			waitState := func(want resilience.BreakerState) {
				t.Helper()
				for deadline := time.Now().Add(10 * time.Second); rl.Breaker().State() != want; time.Sleep(time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatalf("breaker %v, want %v", rl.Breaker().State(), want)
					}
				}
			}
			var got []answer
			for range 3 {
				got = append(got, send(t, c, url))
			}
			waitState(resilience.BreakerOpen)
			got = append(got, send(t, c, url))
			want := []answer{{503, "", ""}, {503, "", ""}, {503, "", ""}, {503, causeCircuitOpen, ""}}
			if diff := cmp.Diff(got, want); diff != "" {
				t.Errorf("opening (-got +want):\n%s", diff)
			}
			if n := hits.Load(); n != 3 {
				t.Errorf("backend saw %d requests, want 3 (none while open)", n)
			}

			// Recovered; once the open time passed (polled, not timed) the
			// probe goes through and closes the breaker.
			failing.Store(false)
			for rl.Breaker().State() == resilience.BreakerOpen {
				time.Sleep(open / 5)
			}
			if a := send(t, c, url); a != (answer{200, "", ""}) {
				t.Errorf("probe: %+v, want 200", a)
			}
			waitState(resilience.BreakerClosed) // fails unless the probe closes it
			if a := send(t, c, url); a.Status != 200 {
				t.Errorf("after closing: %+v, want 200", a)
			}
		})
	}
}

// TestAdmitRouteBreakerConnectFailure: connect failures count against
// the route (the 502s are the proxy's own).
func TestAdmitRouteBreakerConnectFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	for _, e := range engines[:2] {
		t.Run(e.name, func(t *testing.T) {
			ups := Upstreams{"web.shop": StaticUpstream("web", netip.MustParseAddrPort(dead))}
			rl := NewRouteLimits("all", RouteLimitsConfig{Breaker: resilience.BreakerConfig{ConsecutiveFailures: 2, OpenTime: time.Hour}}, nil)
			cfg := e.cfg
			cfg.ConnectAttempts = 1
			p := startAdmitProxy(t, cfg, ups, &Admission{Routes: []*RouteLimits{rl}})
			c := fromAddr(t, "127.0.0.1", e.h2c)
			var got []string
			for range 3 {
				got = append(got, send(t, c, "http://"+p.addr+"/").Cause)
			}
			if diff := cmp.Diff(got, []string{causeConnectFailure, causeConnectFailure, causeCircuitOpen}); diff != "" {
				t.Errorf("(-got +want):\n%s", diff)
			}
		})
	}
}

// blockingBackend holds every request until release is closed, and
// reports each arrival on arrived.
func blockingBackend(t *testing.T) (*httpBackend, chan struct{}, chan struct{}) {
	arrived, release := make(chan struct{}, 100), make(chan struct{})
	be := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
	}))
	return be, arrived, release
}

// TestAdmitMaxRequests: with N requests held by the backend, request N+1
// gets 503 overflow at once (route and service limits), and once they
// finish requests pass again.
func TestAdmitMaxRequests(t *testing.T) {
	for _, e := range engines {
		scopes := []string{"route", "service"}
		if e.name == "fast" {
			// net/http's path counts connections in its dialer:
			// TestAdmitMaxConnectionsNetHTTP.
			scopes = append(scopes, "connections")
		}
		for _, scope := range scopes {
			t.Run(e.name+"/"+scope, func(t *testing.T) {
				be, arrived, release := blockingBackend(t)
				ups := Upstreams{"web.shop": StaticUpstream("web", be.addr)}
				const n = 3
				adm := &Admission{}
				switch scope {
				case "route":
					adm.Routes = []*RouteLimits{NewRouteLimits("all", RouteLimitsConfig{MaxRequests: n}, nil)}
				case "service":
					adm.Services = map[string]*ServiceLimits{"web.shop": NewServiceLimits(ServiceLimitsConfig{MaxRequests: n})}
				case "connections":
					adm.Services = map[string]*ServiceLimits{"web.shop": NewServiceLimits(ServiceLimitsConfig{MaxConnections: n})}
				}
				p := startAdmitProxy(t, e.cfg, ups, adm)
				url := "http://" + p.addr + "/"
				var wg sync.WaitGroup
				results := make(chan answer, n)
				for range n {
					c := fromAddr(t, "127.0.0.1", e.h2c)
					wg.Go(func() { results <- send(t, c, url) })
				}
				for range n {
					<-arrived
				}
				c := fromAddr(t, "127.0.0.1", e.h2c)
				if a := send(t, c, url); a != (answer{503, causeOverflow, ""}) {
					t.Errorf("request %d: %+v, want 503 overflow", n+1, a)
				}
				close(release)
				wg.Wait()
				close(results)
				for a := range results {
					if a.Status != 200 {
						t.Errorf("held request: %+v, want 200", a)
					}
				}
				if a := send(t, c, url); a.Status != 200 {
					t.Errorf("after the held ones finished: %+v, want 200", a)
				}
			})
		}
	}
}

// TestAdmitMaxConnectionsPool: the fast path's pool keeps at most
// max_connections connections to the service, closing an idle one of
// another endpoint before it dials past the limit.
func TestAdmitMaxConnectionsPool(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	b1, b2 := startHTTPBackend(t, h), startHTTPBackend(t, h)
	up := newFakeUpstream(t, b1.addr, b2.addr)
	sl := NewServiceLimits(ServiceLimitsConfig{MaxConnections: 1})
	p := startAdmitProxy(t, HTTPConfig{}, Upstreams{"web.shop": up}, &Admission{Services: map[string]*ServiceLimits{"web.shop": sl}})
	c := fromAddr(t, "127.0.0.1", false)
	for i := range 6 { // round robin over both endpoints
		if a := send(t, c, "http://"+p.addr+"/"); a.Status != 200 {
			t.Fatalf("request %d: %+v", i, a)
		}
		if n := sl.Conns(); n != 1 {
			t.Errorf("after request %d: %d upstream connections, want 1", i, n)
		}
	}
	if n1, n2 := b1.conns.Load(), b2.conns.Load(); n1+n2 != 6 {
		t.Errorf("backends accepted %d+%d connections, want one per request (each dial closes the other endpoint's idle one)", n1, n2)
	}
}

// TestAdmitMaxConnectionsNetHTTP: on net/http's path a dial past the limit
// fails at once with 503 overflow instead of queueing.
func TestAdmitMaxConnectionsNetHTTP(t *testing.T) {
	be, arrived, release := blockingBackend(t)
	sl := NewServiceLimits(ServiceLimitsConfig{MaxConnections: 1})
	p := startAdmitProxy(t, HTTPConfig{NetHTTPOnly: true}, Upstreams{"web.shop": StaticUpstream("web", be.addr)},
		&Admission{Services: map[string]*ServiceLimits{"web.shop": sl}})
	url := "http://" + p.addr + "/"
	first := make(chan answer, 1)
	c1 := fromAddr(t, "127.0.0.1", false)
	go func() { first <- send(t, c1, url) }()
	<-arrived
	c2 := fromAddr(t, "127.0.0.1", false)
	if a := send(t, c2, url); a != (answer{503, causeOverflow, ""}) {
		t.Errorf("second request: %+v, want 503 overflow", a)
	}
	close(release)
	if a := <-first; a.Status != 200 {
		t.Errorf("first request: %+v", a)
	}
	if a := send(t, c2, url); a.Status != 200 {
		t.Errorf("after: %+v, want 200 over the pooled connection", a)
	}
	if n := sl.Conns(); n != 1 {
		t.Errorf("%d connections counted, want 1", n)
	}
}

// TestAdmitRefusalKeepsConnection: a refused request with a body in hand
// leaves the fast-path connection usable for the next one.
func TestAdmitRefusalKeepsConnection(t *testing.T) {
	be := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	rl := NewRouteLimits("all", RouteLimitsConfig{RateLimit: resilience.RateLimitConfig{Rate: 0.001, Burst: 1}}, nil)
	p := startAdmitProxy(t, HTTPConfig{}, Upstreams{"web.shop": StaticUpstream("web", be.addr)}, &Admission{Routes: []*RouteLimits{rl}})
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	var got []int
	for range 3 {
		fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		got = append(got, resp.StatusCode)
	}
	if diff := cmp.Diff(got, []int{200, 429, 429}); diff != "" {
		t.Errorf("(-got +want):\n%s", diff)
	}
}

// TestAdmitGRPCRefusal: a refused gRPC call is a trailers-only gRPC
// status: UNAVAILABLE for an open breaker.
func TestAdmitGRPCRefusal(t *testing.T) {
	be := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	rl := NewRouteLimits("all", RouteLimitsConfig{RateLimit: resilience.RateLimitConfig{Rate: 0.001, Burst: 1},
		Breaker: resilience.BreakerConfig{ConsecutiveFailures: 1, OpenTime: time.Hour}}, nil)
	// Open the breaker by hand: one failure.
	tk, _ := rl.Breaker().Admit()
	rl.Breaker().Done(tk, resilience.Response(503))
	p := startAdmitProxy(t, HTTPConfig{GRPC: true}, Upstreams{"web.shop": StaticUpstream("web", be.addr)}, &Admission{Routes: []*RouteLimits{rl}})
	c := fromAddr(t, "127.0.0.1", true)
	var got []string
	for range 2 {
		req, _ := http.NewRequest("POST", "http://"+p.addr+"/pkg.Svc/Call", strings.NewReader(""))
		req.Header.Set("Content-Type", "application/grpc")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		got = append(got, fmt.Sprintf("%d %s %s", resp.StatusCode, resp.Header.Get("Grpc-Status"), resp.Header.Get(ErrorHeader)))
	}
	want := []string{"200 14 circuit_open", "200 8 rate_limited"}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("(-got +want):\n%s", diff)
	}
}

// An endpoint that sends a 200 head and then breaks its body (closes the
// connection before Content-Length's end) fails the request for the
// route's breaker on both engines, as a reset: the client got the 200,
// cut short. The record keeps status 200 and says upstream_reset.
func TestAdmitRouteBreakerBodyBroken(t *testing.T) {
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			addr := startBackend(t, func(c *net.TCPConn) {
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				// Enough body that net/http's path flushes the head too.
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"+strings.Repeat("x", 32<<10))
			})
			rl := NewRouteLimits("all", RouteLimitsConfig{Breaker: resilience.BreakerConfig{ConsecutiveFailures: 3, OpenTime: time.Hour}}, nil)
			cfg := e.cfg
			cfg.Name, cfg.Listen = "test", "127.0.0.1:0"
			rec := &recorder{}
			l := NewHTTPListener(cfg, nil, nil, Options{Observer: rec})
			l.SetRouting(routeAll(t, "web.shop"), Upstreams{"web.shop": StaticUpstream("web", addr)},
				&Admission{Routes: []*RouteLimits{rl}})
			url := "http://" + startHTTPProxyListener(t, l) + "/"
			c := fromAddr(t, "127.0.0.1", e.h2c)
			for i := range 3 {
				resp, err := c.Get(url)
				if err != nil {
					t.Fatal(err)
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || err == nil {
					t.Errorf("request %d: status %d, body error %v; want 200 and a broken body", i, resp.StatusCode, err)
				}
			}
			for deadline := time.Now().Add(waitLimit); rl.Breaker().State() != resilience.BreakerOpen || len(rec.all()) < 3; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("after %v: breaker %v (want open), %d records", waitLimit, rl.Breaker().State(), len(rec.all()))
				}
			}
			for _, r := range rec.all() {
				if r.Status != 200 || r.Cause != causeUpstreamReset {
					t.Errorf("record: status %d cause %q; want 200 upstream_reset", r.Status, r.Cause)
				}
			}
		})
	}
}
