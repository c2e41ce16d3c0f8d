package proxy

import (
	"context"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/outrigger-mesh/outrigger/proxy/route"
	"github.com/outrigger-mesh/outrigger/resilience"
)

// Only a client on the proxy's host may ask for the trail: all of
// 127.0.0.0/8 and ::1, also as IPv4-mapped IPv6.
func TestWhyPeerAllowed(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want bool
	}{
		{"127.0.0.1", true},
		{"127.0.0.2", true},
		{"127.255.255.254", true},
		{"::1", true},
		{"::ffff:127.0.0.1", true},
		{"10.0.0.1", false},
		{"192.168.1.20", false},
		{"0.0.0.0", false},
		{"::", false},
		{"fe80::1", false},
		{"2001:db8::1", false},
		{"::ffff:10.0.0.1", false},
	} {
		if got := whyPeerAllowed(netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("whyPeerAllowed(%s) = %v, want %v", tc.addr, got, tc.want)
		}
	}
}

// whyProxy runs one HTTP listener "test" whose route "api" sends
// everything to "web.shop" on up, with retry setting r (nil: none).
func whyProxy(t *testing.T, cfg HTTPConfig, up Upstream, r *Retry, obs Observer) string {
	t.Helper()
	cfg.Name, cfg.Listen = "test", "127.0.0.1:0"
	tab := mustTable(t,
		route.RouteConfig{Name: "api", Match: route.MatchConfig{Path: route.PathMatch{Type: route.PathPrefix, Value: "/api"}},
			Backends: []route.Backend{{Service: "web.shop"}}},
		route.RouteConfig{Name: "moved", Match: route.MatchConfig{Path: route.PathMatch{Type: route.PathExact, Value: "/old"}},
			Redirect: &route.Redirect{Path: "/api/new"}},
	)
	if r != nil {
		up = WithRetry(up, r, nil)
	}
	srv := NewServer(ServerConfig{}, Options{}, NewHTTPListener(cfg, tab, Upstreams{"web.shop": up}, Options{Observer: obs}))
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
	return "http://" + srv.Addrs()["test"].String()
}

// debugSeen is a backend handler's record of the X-Outrigger-Debug fields
// that reached it.
type debugSeen struct {
	mu   sync.Mutex
	seen []string
}

func (d *debugSeen) note(r *http.Request) {
	if v, ok := r.Header[DebugHeader]; ok {
		d.mu.Lock()
		d.seen = append(d.seen, strings.Join(v, ","))
		d.mu.Unlock()
	}
}

func (d *debugSeen) check(t *testing.T) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.seen) > 0 {
		t.Errorf("the backend got %s fields: %q", DebugHeader, d.seen)
	}
}

// whyItems splits a trail into its items, with each backoff's duration
// (random: jittered) checked and replaced by "D".
func whyItems(t *testing.T, v string) []string {
	t.Helper()
	if v == "" {
		return nil
	}
	items := strings.Split(v, "; ")
	for i, it := range items {
		if j := strings.Index(it, " backoff="); j >= 0 {
			if _, err := time.ParseDuration(it[j+len(" backoff="):]); err != nil {
				t.Errorf("item %q: backoff: %v", it, err)
			}
			items[i] = it[:j] + " backoff=D"
		}
	}
	return items
}

// A 503 then a retry on another endpoint: the trail shows both attempts,
// the backoff and retries=1; the request field reaches neither backend.
func TestWhyRetryTrail(t *testing.T) {
	for _, e := range retryEngines {
		t.Run(e.name, func(t *testing.T) {
			var seen debugSeen
			failing := startCounted(t, "failing", func(_ int64, w http.ResponseWriter, r *http.Request) {
				seen.note(r)
				w.WriteHeader(http.StatusServiceUnavailable)
				io.WriteString(w, "no")
			})
			ok := startCounted(t, "ok", func(_ int64, w http.ResponseWriter, r *http.Request) {
				seen.note(r)
				io.WriteString(w, "ok")
			})
			up := newFakeUpstream(t, failing.addr, ok.addr)
			base := whyProxy(t, e.cfg, up,
				newRetry(t, resilience.RetryConfig{Attempts: 3, On: []string{resilience.RetryGatewayError}}, resilience.BudgetConfig{}), nil)
			c := newClient(t, e.h2c)

			resp, body := doWhy(t, c, base+"/api/x", "why")
			if resp.StatusCode != 200 || body != "ok" {
				t.Fatalf("got %d %q, want 200 ok", resp.StatusCode, body)
			}
			want := []string{
				"listener=test", "route=api", "service=web.shop",
				"attempt=1 " + failing.addr.String() + " 503",
				"attempt=2 " + ok.addr.String() + " 200 backoff=D",
				"retries=1", "response_timeout=15s",
			}
			if diff := cmp.Diff(whyItems(t, resp.Header.Get(WhyHeader)), want); diff != "" {
				t.Errorf("%s (-got +want):\n%s", WhyHeader, diff)
			}

			// The same without asking: no trail.
			up.rewind()
			resp, _ = doWhy(t, c, base+"/api/x", "")
			if v, ok := resp.Header[WhyHeader]; ok {
				t.Errorf("a request without %s got %s %q", DebugHeader, WhyHeader, v)
			}
			// Asking for something else: no trail, and not forwarded.
			up.rewind()
			resp, _ = doWhy(t, c, base+"/api/x", "other")
			if v, ok := resp.Header[WhyHeader]; ok {
				t.Errorf("%s: other got %s %q", DebugHeader, WhyHeader, v)
			}
			seen.check(t)
		})
	}
}

// doWhy sends a GET with X-Outrigger-Debug: debug (none when empty) and
// returns the response with its body read.
func doWhy(t *testing.T, c *countingClient, url, debug string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if debug != "" {
		req.Header.Set(DebugHeader, debug)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// Answers the proxy makes itself carry the trail with their cause: a
// connect failure on both endpoints (502), no route (404), a redirect.
func TestWhyProxyMadeAnswers(t *testing.T) {
	for _, e := range retryEngines {
		t.Run(e.name, func(t *testing.T) {
			dead1, dead2 := closedPort(t), closedPort(t)
			cfg := e.cfg
			cfg.ConnectAttempts = 2
			base := whyProxy(t, cfg, newFakeUpstream(t, dead1, dead2), nil, nil)
			c := newClient(t, e.h2c)
			for _, tc := range []struct {
				path   string
				status int
				want   []string
			}{
				{"/api/x", 502, []string{
					"listener=test", "route=api", "service=web.shop",
					"attempt=1 " + dead1.String() + " connect_failure",
					"attempt=2 " + dead2.String() + " connect_failure",
					"response_timeout=15s", "cause=connect_failure",
				}},
				{"/nowhere", 404, []string{"listener=test", "response_timeout=15s", "cause=no_route"}},
				{"/old", 302, []string{"listener=test", "route=moved", "response_timeout=15s"}},
			} {
				resp, _ := doWhy(t, c, base+tc.path, "why")
				if resp.StatusCode != tc.status {
					t.Errorf("%s: status %d, want %d", tc.path, resp.StatusCode, tc.status)
				}
				if diff := cmp.Diff(whyItems(t, resp.Header.Get(WhyHeader)), tc.want); diff != "" {
					t.Errorf("%s: %s (-got +want):\n%s", tc.path, WhyHeader, diff)
				}
			}
		})
	}
}

// An attempt cut by the per-try timeout is named so, and the policy's
// timeouts are in the trail.
func TestWhyPerTryTimeout(t *testing.T) {
	for _, e := range retryEngines {
		t.Run(e.name, func(t *testing.T) {
			release := make(chan struct{})
			slow := startCounted(t, "slow", func(_ int64, w http.ResponseWriter, r *http.Request) {
				select {
				case <-release:
				case <-r.Context().Done():
				}
			})
			t.Cleanup(func() { close(release) }) // before the backend closes (cleanups run last first)
			ok := startCounted(t, "ok", nil)
			up := newFakeUpstream(t, slow.addr, ok.addr)
			base := whyProxy(t, e.cfg, up, newRetry(t, resilience.RetryConfig{
				Attempts: 2, PerTryTimeout: 50 * time.Millisecond, Timeout: 10 * time.Second, On: []string{resilience.RetryReset},
			}, resilience.BudgetConfig{}), nil)
			resp, _ := doWhy(t, newClient(t, e.h2c), base+"/api/x", "why")
			want := []string{
				"listener=test", "route=api", "service=web.shop",
				"attempt=1 " + slow.addr.String() + " per_try_timeout",
				"attempt=2 " + ok.addr.String() + " 200 backoff=D",
				"retries=1", "response_timeout=15s", "per_try_timeout=50ms", "overall_timeout=10s",
			}
			if diff := cmp.Diff(whyItems(t, resp.Header.Get(WhyHeader)), want); diff != "" {
				t.Errorf("%s (-got +want):\n%s", WhyHeader, diff)
			}
		})
	}
}

// The trail keeps the last whyAttempts attempts, counts all of them, and
// a trail too long for maxWhyLen is cut at an item boundary.
func TestWhyTrailFormat(t *testing.T) {
	var w whyTrail
	w.reset(15 * time.Second)
	ep := netip.MustParseAddrPort("127.0.0.1:9101")
	for range 10 {
		w.attempt(ep, 0, &DialError{Addr: ep.String(), Err: io.EOF}, 0, nil)
	}
	got := string(w.appendValue(nil, "web", "api", "web.shop", causeConnectFailure))
	want := "listener=web; route=api; service=web.shop"
	for i := 3; i <= 10; i++ {
		want += "; attempt=" + strconv.Itoa(i) + " 127.0.0.1:9101 connect_failure"
	}
	want += "; attempts=10; response_timeout=15s; cause=connect_failure"
	if got != want {
		t.Errorf("trail\n got %s\nwant %s", got, want)
	}

	long := strings.Repeat("r", 2000)
	got = string(w.appendValue([]byte("prefix"), "web\r\nX: y", long, "web.shop", ""))
	v, ok := strings.CutPrefix(got, "prefix")
	if !ok || len(v) > maxWhyLen || !strings.HasSuffix(v, "; truncated") || !strings.HasPrefix(v, "listener=web__X:_y; truncated") {
		t.Errorf("long trail (%d bytes): %.80q...%q", len(v), v, v[max(0, len(v)-20):])
	}
}

func TestAppendWhyDuration(t *testing.T) {
	for _, d := range []time.Duration{0, 15 * time.Second, 90 * time.Second, 1500 * time.Millisecond,
		12*time.Millisecond + 345678*time.Nanosecond, time.Millisecond, 250 * time.Microsecond, 999 * time.Nanosecond} {
		s := string(appendWhyDuration(nil, d))
		p, err := time.ParseDuration(s)
		if err != nil || (p-d).Abs() > time.Microsecond {
			t.Errorf("appendWhyDuration(%v) = %q, which parses as %v, %v", d, s, p, err)
		}
	}
}

// An endpoint's own X-Outrigger-Why never reaches the client: without the
// debug field there is none, with it there is exactly one, the proxy's.
func TestWhyEndpointFieldDropped(t *testing.T) {
	for _, e := range retryEngines {
		t.Run(e.name, func(t *testing.T) {
			be := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set(WhyHeader, "listener=spoofed")
				io.WriteString(w, "ok")
			}))
			base := whyProxy(t, e.cfg, newFakeUpstream(t, be.addr), nil, nil)
			c := newClient(t, e.h2c)
			if resp, _ := doWhy(t, c, base+"/api/x", ""); len(resp.Header.Values(WhyHeader)) != 0 {
				t.Errorf("not asked: %s %q reached the client", WhyHeader, resp.Header.Values(WhyHeader))
			}
			resp, _ := doWhy(t, c, base+"/api/x", "why")
			if v := resp.Header.Values(WhyHeader); len(v) != 1 || strings.Contains(v[0], "spoofed") {
				t.Errorf("asked: %s %q, want the proxy's one", WhyHeader, v)
			}
		})
	}
}

// A route timeout that ends the request is named the same on both
// engines, and the trail shows the request's deadline.
func TestWhyRouteTimeout(t *testing.T) {
	for _, e := range retryEngines {
		t.Run(e.name, func(t *testing.T) {
			var canceled atomic.Int64
			slow := startCounted(t, "slow", stallUntilCanceled(&canceled))
			addr, _ := timeoutProxy(t, e.cfg, timeoutRoute(t, 150*time.Millisecond), Upstreams{"web.shop": newFakeUpstream(t, slow.addr)})
			resp, _ := doWhy(t, newClient(t, e.h2c), "http://"+addr+"/x", "why")
			if resp.StatusCode != http.StatusGatewayTimeout {
				t.Fatalf("status %d, want 504", resp.StatusCode)
			}
			items := whyItems(t, resp.Header.Get(WhyHeader))
			want := []string{"attempt=1 " + slow.addr.String() + " request_timeout", "request_timeout=150ms"}
			for _, w := range want {
				if !slices.Contains(items, w) {
					t.Errorf("%s %q lacks %q", WhyHeader, items, w)
				}
			}
			waitCount(t, &canceled, 1)
		})
	}
}
