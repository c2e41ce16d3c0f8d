package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/outrigger-mesh/outrigger/balancer"
	"github.com/outrigger-mesh/outrigger/proxy/route"
	"github.com/outrigger-mesh/outrigger/resilience"
)

// retryEngines are the two HTTP engines every retry test runs on; the
// h2c client reaches net/http's path over HTTP/2.
var retryEngines = []struct {
	name string
	cfg  HTTPConfig
	h2c  bool
}{
	{"fast path", HTTPConfig{}, false},
	{"net/http", HTTPConfig{NetHTTPOnly: true}, false},
	{"net/http h2c", HTTPConfig{}, true},
}

// retryProxy runs one HTTP listener routing everything to "web.shop" on
// up with retry setting r, and records every request.
func retryProxy(t *testing.T, cfg HTTPConfig, up Upstream, r *Retry) (string, *recorder) {
	t.Helper()
	cfg.Name, cfg.Listen = "test", "127.0.0.1:0"
	rec := &recorder{}
	ups := Upstreams{"web.shop": WithRetry(up, r, nil)}
	srv := NewServer(ServerConfig{}, Options{}, NewHTTPListener(cfg, routeAll(t, "web.shop"), ups, Options{Observer: rec}))
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
	return "http://" + srv.Addrs()["test"].String(), rec
}

// newRetry builds a Retry for cfg (backoff shortened to a millisecond
// unless set) with budget b.
func newRetry(t testing.TB, cfg resilience.RetryConfig, b resilience.BudgetConfig) *Retry {
	t.Helper()
	if cfg.BackoffBase == 0 {
		cfg.BackoffBase, cfg.BackoffMax = time.Millisecond, time.Millisecond
	}
	p, err := resilience.NewRetryPolicy(cfg)
	if err != nil {
		t.Fatal(err)
	}
	budget, err := resilience.NewBudget(b)
	if err != nil {
		t.Fatal(err)
	}
	return &Retry{Policy: p, Budget: budget}
}

// countedBackend is an HTTP backend that counts its requests, reads each
// body whole, and answers what answer says for the n-th (from 1) request.
type countedBackend struct {
	*httpBackend
	n atomic.Int64
}

func startCounted(t *testing.T, name string, answer func(n int64, w http.ResponseWriter, r *http.Request)) *countedBackend {
	t.Helper()
	b := &countedBackend{}
	b.httpBackend = startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		n := b.n.Add(1)
		w.Header().Set("X-Backend", name)
		if answer != nil {
			answer(n, w, r)
			return
		}
		io.WriteString(w, "ok from "+name)
	}))
	return b
}

func fail503(name string) func(int64, http.ResponseWriter, *http.Request) {
	return func(_ int64, w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "failing: "+name)
	}
}

// rewind makes the next pick start at the first address again, so that a
// request goes to the backends in list order.
func (f *fakeUpstream) rewind() {
	f.mu.Lock()
	f.next = 0
	f.mu.Unlock()
}

// send sends one request and returns status, the X-Backend and
// X-Outrigger-Error headers and the body.
func sendRetry(t *testing.T, c *countingClient, method, url string, body []byte, hdr ...string) (int, string, string, string) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
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
	return resp.StatusCode, resp.Header.Get("X-Backend"), resp.Header.Get(ErrorHeader), string(b)
}

// One of three backends answers 503 every other time: with retries on
// gateway errors every client request succeeds, no byte of a 503 reaches
// the client, each 503 costs exactly one retry (on another endpoint), and
// every pick gets one Done.
func TestRetryFlakyBackend(t *testing.T) {
	for _, e := range retryEngines {
		t.Run(e.name, func(t *testing.T) {
			flaky := startCounted(t, "flaky", func(n int64, w http.ResponseWriter, _ *http.Request) {
				if n%2 == 1 {
					w.WriteHeader(http.StatusServiceUnavailable)
					io.WriteString(w, "flaky says no")
					return
				}
				io.WriteString(w, "ok from flaky")
			})
			b, c := startCounted(t, "b", nil), startCounted(t, "c", nil)
			up := newFakeUpstream(t, flaky.addr, b.addr, c.addr)
			url, rec := retryProxy(t, e.cfg, up,
				newRetry(t, resilience.RetryConfig{Attempts: 3, On: []string{resilience.RetryGatewayError}}, resilience.BudgetConfig{}))
			client := newClient(t, e.h2c)
			const requests = 30
			for i := range requests {
				status, from, cause, body := sendRetry(t, client, "GET", url+"/x", nil)
				if status != 200 || cause != "" || !strings.HasPrefix(body, "ok from ") {
					t.Fatalf("request %d: %d from %q (cause %q): %q", i, status, from, cause, body)
				}
			}
			failed := (flaky.n.Load() + 1) / 2
			if flaky.n.Load() == 0 || failed == 0 {
				t.Fatalf("the flaky backend got %d requests; the test needs it to fail some", flaky.n.Load())
			}
			if got, want := flaky.n.Load()+b.n.Load()+c.n.Load(), requests+failed; got != want {
				t.Errorf("backends got %d requests (flaky %d, b %d, c %d), want %d: one per client request plus one per 503",
					got, flaky.n.Load(), b.n.Load(), c.n.Load(), want)
			}
			retries := 0
			for _, r := range rec.all() {
				retries += r.Retries
				if r.Status != 200 {
					t.Errorf("record %+v: status %d", r, r.Status)
				}
			}
			if retries != int(failed) {
				t.Errorf("records count %d retries, want %d (one per 503)", retries, failed)
			}
			dones := assertDonesMatchPicks(t, up)
			var statusErrs int
			for _, d := range dones {
				var se *StatusError
				if errors.As(d.info.Err, &se) {
					statusErrs++
					if se.Code != 503 || d.addr != flaky.addr {
						t.Errorf("Done %v: %v", d.addr, d.info.Err)
					}
				}
			}
			if statusErrs != int(failed) {
				t.Errorf("%d Done calls report a 503, want %d", statusErrs, failed)
			}
		})
	}
}

// When every attempt fails, the client gets the last endpoint's own
// response (not an error the proxy made), after Attempts attempts.
func TestRetryExhaustedKeepsLastResponse(t *testing.T) {
	for _, e := range retryEngines {
		t.Run(e.name, func(t *testing.T) {
			a, b := startCounted(t, "a", fail503("a")), startCounted(t, "b", fail503("b"))
			up := newFakeUpstream(t, a.addr, b.addr)
			url, rec := retryProxy(t, e.cfg, up,
				newRetry(t, resilience.RetryConfig{Attempts: 2, On: []string{"503"}}, resilience.BudgetConfig{}))
			status, from, cause, body := sendRetry(t, newClient(t, e.h2c), "GET", url+"/", nil)
			if status != 503 || from != "b" || cause != "" || body != "failing: b" {
				t.Errorf("got %d from %q (cause %q): %q; want b's own 503", status, from, cause, body)
			}
			if a.n.Load() != 1 || b.n.Load() != 1 {
				t.Errorf("a got %d, b %d requests; want 1 each", a.n.Load(), b.n.Load())
			}
			assertDonesMatchPicks(t, up)
			if r := rec.all(); len(r) != 1 || r[0].Attempts != 2 || r[0].Retries != 1 {
				t.Errorf("records %+v, want one with 2 attempts and 1 retry", r)
			}
		})
	}
}

// resetBackend reads a request head and resets the connection.
func resetBackend(t *testing.T, conns *atomic.Int64) netip.AddrPort {
	return startBackend(t, func(c *net.TCPConn) {
		conns.Add(1)
		buf := make([]byte, 4096)
		n := 0
		for !bytes.Contains(buf[:n], []byte("\r\n\r\n")) {
			m, err := c.Read(buf[n:])
			if err != nil {
				return
			}
			n += m
		}
		c.SetLinger(0)
		c.Close()
	})
}

// A backend that resets connections: with retries on reset, requests are
// retried on the other endpoint and all succeed.
func TestRetryResetElsewhere(t *testing.T) {
	for _, e := range retryEngines {
		t.Run(e.name, func(t *testing.T) {
			var resets atomic.Int64
			bad := resetBackend(t, &resets)
			good := startCounted(t, "good", nil)
			up := newFakeUpstream(t, bad, good.addr)
			url, _ := retryProxy(t, e.cfg, up,
				newRetry(t, resilience.RetryConfig{Attempts: 2, On: []string{resilience.RetryReset}}, resilience.BudgetConfig{}))
			client := newClient(t, e.h2c)
			for i := range 6 {
				up.rewind() // the resetting backend first, every time
				status, from, cause, body := sendRetry(t, client, "GET", url+"/", nil)
				if status != 200 || from != "good" {
					t.Fatalf("request %d: %d from %q (cause %q): %q", i, status, from, cause, body)
				}
			}
			if resets.Load() == 0 || good.n.Load() != 6 {
				t.Errorf("resetting backend saw %d connections, good one %d requests; want some and 6", resets.Load(), good.n.Load())
			}
			assertDonesMatchPicks(t, up)
		})
	}
}

// A POST whose body reached a failing endpoint is not retried (the client
// gets that endpoint's 503); the same POST with an Idempotency-Key is.
func TestRetryPOSTNeedsIdempotencyKey(t *testing.T) {
	for _, e := range retryEngines {
		t.Run(e.name, func(t *testing.T) {
			a, b := startCounted(t, "a", fail503("a")), startCounted(t, "b", nil)
			up := newFakeUpstream(t, a.addr, b.addr)
			url, _ := retryProxy(t, e.cfg, up,
				newRetry(t, resilience.RetryConfig{Attempts: 3, On: []string{resilience.Retry5xx}}, resilience.BudgetConfig{}))
			client := newClient(t, e.h2c)
			status, from, _, body := sendRetry(t, client, "POST", url+"/orders", []byte("one order"))
			if status != 503 || from != "a" || body != "failing: a" {
				t.Errorf("POST: %d from %q: %q; want a's 503, not retried", status, from, body)
			}
			if a.n.Load() != 1 || b.n.Load() != 0 {
				t.Errorf("POST: a got %d, b %d requests; want 1 and 0", a.n.Load(), b.n.Load())
			}
			up.rewind()
			status, from, _, body = sendRetry(t, client, "POST", url+"/orders", []byte("one order"), "Idempotency-Key", "k-1")
			if status != 200 || from != "b" {
				t.Errorf("POST with Idempotency-Key: %d from %q: %q; want b's 200 after a retry", status, from, body)
			}
			if a.n.Load() != 2 || b.n.Load() != 1 {
				t.Errorf("after both POSTs a got %d, b %d requests; want 2 and 1", a.n.Load(), b.n.Load())
			}
			assertDonesMatchPicks(t, up)
		})
	}
}

// A 1 MB body is larger than the replay cap: it streams, and after it was
// sent the request is not retried even though PUT is idempotent.
func TestRetryLargeBodyNotReplayed(t *testing.T) {
	for _, e := range retryEngines {
		t.Run(e.name, func(t *testing.T) {
			a, b := startCounted(t, "a", fail503("a")), startCounted(t, "b", nil)
			up := newFakeUpstream(t, a.addr, b.addr)
			url, _ := retryProxy(t, e.cfg, up,
				newRetry(t, resilience.RetryConfig{Attempts: 3, On: []string{resilience.Retry5xx}}, resilience.BudgetConfig{}))
			status, from, _, _ := sendRetry(t, newClient(t, e.h2c), "PUT", url+"/blob", bytes.Repeat([]byte("x"), 1<<20))
			if status != 503 || from != "a" {
				t.Errorf("PUT of 1 MB: %d from %q; want a's 503", status, from)
			}
			if a.n.Load() != 1 || b.n.Load() != 0 {
				t.Errorf("a got %d, b %d requests; want exactly one attempt", a.n.Load(), b.n.Load())
			}
			assertDonesMatchPicks(t, up)
		})
	}
}

// An endpoint that does not answer within the per-try timeout: the
// attempt ends as a timeout and the request is retried on another
// endpoint.
func TestRetryPerTryTimeout(t *testing.T) {
	for _, e := range retryEngines {
		t.Run(e.name, func(t *testing.T) {
			g := newGate(t)
			slow := startCounted(t, "slow", func(_ int64, w http.ResponseWriter, r *http.Request) {
				select {
				case <-g.ch:
				case <-r.Context().Done():
				}
			})
			fast := startCounted(t, "fast", nil)
			up := newFakeUpstream(t, slow.addr, fast.addr)
			url, _ := retryProxy(t, e.cfg, up, newRetry(t, resilience.RetryConfig{
				Attempts: 2, PerTryTimeout: 50 * time.Millisecond, On: []string{resilience.RetryReset}}, resilience.BudgetConfig{}))
			status, from, cause, body := sendRetry(t, newClient(t, e.h2c), "GET", url+"/", nil)
			if status != 200 || from != "fast" {
				t.Errorf("got %d from %q (cause %q): %q; want fast's 200", status, from, cause, body)
			}
			dones := assertDonesMatchPicks(t, up)
			if len(dones) != 2 || dones[0].addr != slow.addr || resilience.KindOf(dones[0].info.Err) != resilience.KindTimeout {
				t.Errorf("Done calls %+v; want the slow endpoint's timeout, then fast's", dones)
			}
		})
	}
}

// The retry budget bounds the retries against an endpoint that fails
// every request. Requests go one at a time, so the ratio (20% of one
// request in flight) never allows a retry and only the floor does: a
// bucket of min_per_second tokens, refilled at that rate. So the backend
// sees between requests+floor and requests+floor·(1+elapsed seconds)
// attempts; without a budget it would see requests·attempts.
func TestRetryBudgetBoundsAttempts(t *testing.T) {
	for _, e := range retryEngines {
		t.Run(e.name, func(t *testing.T) {
			a := startCounted(t, "a", fail503("a"))
			up := newFakeUpstream(t, a.addr)
			const perSecond = 3
			r := newRetry(t, resilience.RetryConfig{Attempts: 3, On: []string{"503"}}, resilience.BudgetConfig{MinPerSecond: perSecond})
			url, rec := retryProxy(t, e.cfg, up, r)
			client := newClient(t, e.h2c)
			const requests = 40
			start := time.Now()
			for i := range requests {
				if status, _, _, _ := sendRetry(t, client, "GET", url+"/", nil); status != 503 {
					t.Fatalf("request %d: %d, want the endpoint's 503", i, status)
				}
			}
			elapsed := time.Since(start).Seconds()
			retries := int(a.n.Load()) - requests
			bound := int(perSecond * (1 + elapsed))
			if retries < perSecond || retries > bound {
				t.Errorf("%d retries in %.2fs; want %d..%d (budget floor %d/s)", retries, elapsed, perSecond, bound, perSecond)
			}
			sum := 0
			for _, rr := range rec.all() {
				sum += rr.Retries
			}
			if sum != retries {
				t.Errorf("records count %d retries, the backend %d", sum, retries)
			}
			assertDonesMatchPicks(t, up)
			if got := []int64{r.Budget.Active(), r.Budget.Retrying()}; !cmp.Equal(got, []int64{0, 0}) {
				t.Errorf("budget active, retrying = %v after all requests, want [0 0]", got)
			}
		})
	}
}

// A route's policy overrides the service's: the service does not retry,
// the route does.
func TestRetryRouteOverride(t *testing.T) {
	for _, e := range retryEngines[:2] {
		t.Run(e.name, func(t *testing.T) {
			a, b := startCounted(t, "a", fail503("a")), startCounted(t, "b", nil)
			up := newFakeUpstream(t, a.addr, b.addr)
			off := newRetry(t, resilience.RetryConfig{}, resilience.BudgetConfig{})
			on := newRetry(t, resilience.RetryConfig{Attempts: 2, On: []string{"503"}}, resilience.BudgetConfig{})
			tab := mustTable(t,
				route.RouteConfig{Name: "retried", Match: route.MatchConfig{Path: route.PathMatch{Value: "/r"}}, Backends: []route.Backend{{Service: "web.shop"}}},
				route.RouteConfig{Name: "plain", Backends: []route.Backend{{Service: "web.shop"}}})
			cfg := e.cfg
			cfg.Name, cfg.Listen = "test", "127.0.0.1:0"
			ups := Upstreams{"web.shop": WithRetry(up, off, []*resilience.RetryPolicy{on.Policy, nil})}
			p := startHTTPProxyListener(t, NewHTTPListener(cfg, tab, ups, Options{}))
			client := newClient(t, e.h2c)
			var got []string
			for _, path := range []string{"/plain", "/r"} {
				up.rewind()
				status, from, _, _ := sendRetry(t, client, "GET", "http://"+p+path, nil)
				got = append(got, fmt.Sprintf("%s %d %s", path, status, from))
			}
			if diff := cmp.Diff(got, []string{"/plain 503 a", "/r 200 b"}); diff != "" {
				t.Errorf("(-got +want):\n%s", diff)
			}
		})
	}
}

// startHTTPProxyListener serves l until the test ends and returns its
// address.
func startHTTPProxyListener(t *testing.T, l *HTTPListener) string {
	t.Helper()
	srv := NewServer(ServerConfig{}, Options{}, l)
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { srv.Serve(ctx) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	return srv.Addrs()[l.Name()].String()
}

// ejectOnFailure wraps up so that a pick's Done with an error removes
// every endpoint, as outlier detection ejecting the last endpoint does.
type ejectOnFailure struct{ *fakeUpstream }

func (e ejectOnFailure) Pick(info *balancer.PickInfo) (balancer.PickResult, error) {
	res, err := e.fakeUpstream.Pick(info)
	if err != nil {
		return res, err
	}
	done := res.Done
	res.Done = func(d balancer.DoneInfo) {
		done(d)
		if d.Err != nil {
			e.set()
		}
	}
	return res, nil
}

// waitBudgetIdle waits until b counts no request and no retry in flight.
func waitBudgetIdle(t *testing.T, b *resilience.Budget) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for b.Active() != 0 || b.Retrying() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("budget: %d requests and %d retries still in flight", b.Active(), b.Retrying())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A response the policy would retry, when no endpoint is left to retry
// on (its own Done ejected the last one, or the picker emptied while it
// was awaited), is the client's answer: the endpoint's own 503, never the
// proxy's no_endpoints. Its pick gets one Done, reported before the next
// Pick (else the ejection could not be seen), and the retry the budget
// lent is given back.
func TestRetryThenPickFailsKeepsResponse(t *testing.T) {
	for _, e := range retryEngines {
		for _, how := range []string{"ejected by its Done", "picker emptied"} {
			t.Run(e.name+"/"+how, func(t *testing.T) {
				var fake *fakeUpstream
				a := startCounted(t, "a", func(_ int64, w http.ResponseWriter, _ *http.Request) {
					if how == "picker emptied" {
						fake.set()
					}
					w.WriteHeader(http.StatusServiceUnavailable)
					io.WriteString(w, "failing: a")
				})
				fake = newFakeUpstream(t, a.addr)
				var up Upstream = fake
				if how == "ejected by its Done" {
					up = ejectOnFailure{fake}
				}
				r := newRetry(t, resilience.RetryConfig{Attempts: 2, On: []string{"503"}}, resilience.BudgetConfig{})
				url, rec := retryProxy(t, e.cfg, up, r)
				status, from, cause, body := sendRetry(t, newClient(t, e.h2c), "GET", url+"/", nil)
				if status != 503 || from != "a" || cause != "" || body != "failing: a" {
					t.Errorf("got %d from %q (cause %q): %q; want a's own 503", status, from, cause, body)
				}
				dones := assertDonesMatchPicks(t, fake)
				var se *StatusError
				if len(dones) != 1 || !errors.As(dones[0].info.Err, &se) || se.Code != 503 {
					t.Errorf("Done calls %+v; want one, a's 503", dones)
				}
				if calls, _, _ := fake.stats(); calls != 2 {
					t.Errorf("%d Pick calls, want 2 (the retry's failed)", calls)
				}
				waitBudgetIdle(t, r.Budget)
				if got := rec.all(); len(got) != 1 || got[0].Attempts != 1 || got[0].Retries != 0 || got[0].Status != 503 {
					t.Errorf("records %+v, want one with status 503, 1 attempt and no retry", got)
				}
			})
		}
	}
}

// A request whose body streams (1 MiB, past the fast path's read buffer)
// to an endpoint that reads it whole and then does not answer ends by
// the per-try timeout, not the listener's much longer response_timeout:
// 504, the attempt a timeout (a streamed body is not kept, so there is no
// retry).
func TestRetryPerTryTimeoutStreamedBody(t *testing.T) {
	for _, e := range retryEngines {
		t.Run(e.name, func(t *testing.T) {
			g := newGate(t)
			slow := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				select {
				case <-g.ch:
				case <-r.Context().Done():
				}
			}))
			up := newFakeUpstream(t, slow.addr)
			cfg := e.cfg
			cfg.ResponseTimeout = time.Hour // the client gives up after waitLimit
			url, _ := retryProxy(t, cfg, up, newRetry(t, resilience.RetryConfig{
				Attempts: 2, PerTryTimeout: 100 * time.Millisecond, On: []string{resilience.RetryReset}}, resilience.BudgetConfig{}))
			body := bytes.Repeat([]byte("x"), 1<<20)
			status, _, cause, got := sendRetry(t, newClient(t, e.h2c), "PUT", url+"/", body)
			if status != http.StatusGatewayTimeout || cause != causeUpstreamTimeout {
				t.Errorf("got %d (cause %q): %q; want 504 upstream_timeout", status, cause, got)
			}
			dones := assertDonesMatchPicks(t, up)
			if len(dones) != 1 || resilience.KindOf(dones[0].info.Err) != resilience.KindTimeout {
				t.Errorf("Done calls %+v; want one timeout", dones)
			}
		})
	}
}

// Interim responses reach the client as they come, also from an attempt
// whose final response is then retried (doc.go): HTTP allows several
// before the final one (RFC 9110 §15.2), and holding them would defeat
// 103 Early Hints. The retried 503 itself never reaches the client.
func TestRetryInterimRelayedFromRetriedAttempt(t *testing.T) {
	for _, e := range retryEngines {
		t.Run(e.name, func(t *testing.T) {
			a := startCounted(t, "a", func(_ int64, w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Link", "</a.css>; rel=preload")
				w.WriteHeader(http.StatusEarlyHints)
				w.Header().Del("Link")
				w.WriteHeader(http.StatusServiceUnavailable)
				io.WriteString(w, "failing: a")
			})
			b := startCounted(t, "b", nil)
			up := newFakeUpstream(t, a.addr, b.addr)
			url, _ := retryProxy(t, e.cfg, up,
				newRetry(t, resilience.RetryConfig{Attempts: 2, On: []string{"503"}}, resilience.BudgetConfig{}))
			var mu sync.Mutex
			var interim []string
			ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
				Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
					mu.Lock()
					interim = append(interim, fmt.Sprintf("%d %s", code, h.Get("Link")))
					mu.Unlock()
					return nil
				},
			})
			req, err := http.NewRequestWithContext(ctx, "GET", url+"/", nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := newClient(t, e.h2c).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "ok from b" {
				t.Errorf("got %d: %q; want b's 200", resp.StatusCode, body)
			}
			mu.Lock()
			defer mu.Unlock()
			if diff := cmp.Diff(interim, []string{"103 </a.css>; rel=preload"}); diff != "" {
				t.Errorf("interim responses (-got +want):\n%s", diff)
			}
		})
	}
}
