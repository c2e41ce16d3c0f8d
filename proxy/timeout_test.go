package proxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/outrigger-mesh/outrigger/proxy/route"
	"github.com/outrigger-mesh/outrigger/resilience"
)

// timeoutProxy runs one HTTP listener "test" with routes and ups and
// records every request; it returns the listener's address.
func timeoutProxy(t *testing.T, cfg HTTPConfig, routes *route.Table, ups Upstreams) (string, *recorder) {
	t.Helper()
	cfg.Name, cfg.Listen = "test", "127.0.0.1:0"
	if cfg.ResponseTimeout == 0 {
		// Longer than the tests wait: a 504 comes from the timeout
		// under test.
		cfg.ResponseTimeout = 2 * waitLimit
	}
	rec := &recorder{}
	return startHTTPProxyListener(t, NewHTTPListener(cfg, routes, ups, Options{Observer: rec})), rec
}

// timeoutRoute is a table with one route to "web.shop" with timeout d.
func timeoutRoute(t *testing.T, d time.Duration) *route.Table {
	return mustTable(t, route.RouteConfig{Backends: []route.Backend{{Service: "web.shop"}}, Timeout: d})
}

// waitRecords polls until rec has n records and returns them.
func waitRecords(t *testing.T, rec *recorder, n int) []RequestRecord {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		if r := rec.all(); len(r) >= n {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d request records after %v, want %d", len(rec.all()), waitLimit, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stallUntilCanceled is a backend handler that never answers: it waits
// for its request's context to end (the proxy gave up) and counts it.
func stallUntilCanceled(canceled *atomic.Int64) func(int64, http.ResponseWriter, *http.Request) {
	return func(_ int64, _ http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
		canceled.Add(1)
	}
}

// A route timeout shorter than the listener's response timeout: the
// client gets 504 upstream_timeout, the record says so, the endpoint's
// request is abandoned, and its Done reports the timeout.
func TestRouteTimeout(t *testing.T) {
	for _, e := range retryEngines {
		t.Run(e.name, func(t *testing.T) {
			var canceled atomic.Int64
			slow := startCounted(t, "slow", stallUntilCanceled(&canceled))
			up := newFakeUpstream(t, slow.addr)
			addr, rec := timeoutProxy(t, e.cfg, timeoutRoute(t, 150*time.Millisecond), Upstreams{"web.shop": up})
			status, _, cause, _ := sendRetry(t, newClient(t, e.h2c), "GET", "http://"+addr+"/x", nil)
			if status != http.StatusGatewayTimeout || cause != causeUpstreamTimeout {
				t.Errorf("got %d (cause %q), want 504 %s", status, cause, causeUpstreamTimeout)
			}
			recs := waitRecords(t, rec, 1)
			if recs[0].Status != 504 || recs[0].Cause != causeUpstreamTimeout {
				t.Errorf("record: status %d cause %q, want 504 %s", recs[0].Status, recs[0].Cause, causeUpstreamTimeout)
			}
			dones := assertDonesMatchPicks(t, up)
			if len(dones) != 1 || resilience.KindOf(dones[0].info.Err) != resilience.KindTimeout {
				t.Errorf("Done calls %+v, want one timeout", dones)
			}
			waitCount(t, &canceled, 1)
		})
	}
}

// The route timeout bounds all attempts together: with a per-try timeout
// of 150ms and three attempts allowed, a 250ms route timeout leaves room
// for two attempts at most (the second gets what is left), and the client
// gets one 504. Without the route timeout all three would be made.
func TestRouteTimeoutAcrossRetries(t *testing.T) {
	for _, e := range retryEngines {
		t.Run(e.name, func(t *testing.T) {
			var canceled atomic.Int64
			var bes []*countedBackend
			var addrs []netip.AddrPort
			for _, name := range []string{"a", "b", "c"} {
				b := startCounted(t, name, stallUntilCanceled(&canceled))
				bes = append(bes, b)
				addrs = append(addrs, b.addr)
			}
			up := newFakeUpstream(t, addrs...)
			r := newRetry(t, resilience.RetryConfig{Attempts: 3, PerTryTimeout: 150 * time.Millisecond,
				On: []string{resilience.RetryReset}}, resilience.BudgetConfig{Ratio: 1})
			addr, rec := timeoutProxy(t, e.cfg, timeoutRoute(t, 250*time.Millisecond),
				Upstreams{"web.shop": WithRetry(up, r, nil)})
			status, _, cause, _ := sendRetry(t, newClient(t, e.h2c), "GET", "http://"+addr+"/x", nil)
			if status != http.StatusGatewayTimeout || cause != causeUpstreamTimeout {
				t.Errorf("got %d (cause %q), want 504 %s", status, cause, causeUpstreamTimeout)
			}
			recs := waitRecords(t, rec, 1)
			if len(recs) != 1 || recs[0].Status != 504 {
				t.Errorf("records %+v, want one 504", recs)
			}
			dones := assertDonesMatchPicks(t, up)
			var seen int64
			for _, b := range bes {
				seen += b.n.Load()
			}
			// An attempt can be picked and cut by the deadline before
			// its backend's handler counted it: attempts may exceed
			// what the backends saw by one.
			if seen < 1 || seen > 2 || len(dones) < int(seen) || len(dones) > 2 {
				t.Errorf("backends saw %d requests and %d attempts were made; want 1 or 2 (the attempts that fit in 250ms)", seen, len(dones))
			}
			if recs[0].Attempts != len(dones) {
				t.Errorf("record counts %d attempts, Done was called %d times", recs[0].Attempts, len(dones))
			}
		})
	}
}

// The retry policy's own timeout and the route's are one deadline, the
// earlier winning, and each attempt gets at most what is left of it.
func TestRetryStateDeadline(t *testing.T) {
	pol := func(timeout time.Duration) *resilience.RetryPolicy {
		p, err := resilience.NewRetryPolicy(resilience.RetryConfig{Attempts: 3, Timeout: timeout})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	b, err := resilience.NewBudget(resilience.BudgetConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name          string
		policy, route time.Duration
		want          time.Duration // the deadline after the start; 0 none
	}{
		{"neither", 0, 0, 0},
		{"policy only", time.Hour, 0, time.Hour},
		{"route only", 0, time.Hour, time.Hour},
		{"route smaller", 2 * time.Hour, time.Hour, time.Hour},
		{"policy smaller", time.Hour, 2 * time.Hour, time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rs retryState
			rs.begin(pol(tc.policy), b, "GET", false, false)
			defer rs.end()
			var route time.Time
			if tc.route > 0 {
				route = rs.start.Add(tc.route)
			}
			rs.bound(route)
			var got time.Duration
			if !rs.deadline.IsZero() {
				got = rs.deadline.Sub(rs.start)
			}
			if got != tc.want {
				t.Errorf("deadline %v after the start, want %v", got, tc.want)
			}
			// An attempt gets the response timeout or what is left,
			// whichever is less.
			if at := rs.attemptTimeout(3 * time.Hour); tc.want > 0 && (at > tc.want || at < tc.want-time.Minute) {
				t.Errorf("attempt timeout %v, want about %v", at, tc.want)
			} else if tc.want == 0 && at != 3*time.Hour {
				t.Errorf("attempt timeout %v, want the response timeout", at)
			}
		})
	}
}

func TestParseGRPCTimeout(t *testing.T) {
	type result struct {
		D  time.Duration
		OK bool
	}
	for in, want := range map[string]result{
		"1H":         {time.Hour, true},
		"2M":         {2 * time.Minute, true},
		"3S":         {3 * time.Second, true},
		"250m":       {250 * time.Millisecond, true},
		"99999999u":  {99999999 * time.Microsecond, true},
		"7n":         {7, true},
		"0n":         {1, true}, // already passed
		"00000100m":  {100 * time.Millisecond, true},
		"99999999H":  {0, true}, // longer than a Duration: none
		"":           {},
		"S":          {},
		"5":          {},
		"5s":         {},
		"5ms":        {},
		"123456789S": {},
		"-5S":        {},
		"+5S":        {},
		" 5S":        {},
		"5 S":        {},
		"1.5S":       {},
		"0x10S":      {},
	} {
		d, ok := parseGRPCTimeout(in)
		if diff := cmp.Diff(result{d, ok}, want); diff != "" {
			t.Errorf("parseGRPCTimeout(%q) (-got +want):\n%s", in, diff)
		}
	}
}

func TestAppendGRPCTimeout(t *testing.T) {
	for d, want := range map[time.Duration]string{
		1:                                  "1n",
		99999999:                           "99999999n",
		100000000:                          "100000u",
		1500 * time.Millisecond:            "1500000u",
		250*time.Second + 1:                "250000m",
		100000000 * time.Second:            "1666666M",
		time.Duration(1<<63 - 1):           "2562047H",
		2*time.Hour + 999*time.Microsecond: "7200000m",
	} {
		got := string(appendGRPCTimeout(nil, d))
		if got != want {
			t.Errorf("appendGRPCTimeout(%v) = %q, want %q", d, got, want)
		}
		if back, ok := parseGRPCTimeout(got); !ok || back > d {
			t.Errorf("%q parses to %v, %v: want a valid value no longer than %v", got, back, ok, d)
		}
	}
}

// A client that leaves while the endpoint has not answered yet: the
// proxy gives the request up (the endpoint's request is canceled: its
// connection closed on HTTP/1, its stream reset on HTTP/2), Done reports
// a neutral outcome (the endpoint is not at fault), and the record has
// status 0. On the fast path the client is looked at once a request has
// waited clientCheckAfter; net/http's server sees it at once.
func TestClientGoneWhileWaiting(t *testing.T) {
	for _, e := range retryEngines {
		for _, how := range []string{"close", "reset"} {
			if e.h2c && how == "reset" {
				continue // an HTTP/2 client cancels its stream
			}
			name := e.name + "/" + how
			if e.h2c {
				name = e.name + "/stream reset"
			}
			t.Run(name, func(t *testing.T) {
				var canceled atomic.Int64
				slow := startCounted(t, "slow", stallUntilCanceled(&canceled))
				up := newFakeUpstream(t, slow.addr)
				addr, rec := timeoutProxy(t, e.cfg, routeAll(t, "web.shop"), Upstreams{"web.shop": up})
				if e.h2c {
					ctx, cancel := context.WithCancel(context.Background())
					req, err := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/x", nil)
					if err != nil {
						t.Fatal(err)
					}
					errc := make(chan error, 1)
					go func() {
						resp, err := newClient(t, true).Do(req)
						if err == nil {
							resp.Body.Close()
						}
						errc <- err
					}()
					waitCount(t, &slow.n, 1)
					cancel()
					if err := <-errc; err == nil {
						t.Error("the canceled request got a response")
					}
				} else {
					c, err := net.Dial("tcp", addr)
					if err != nil {
						t.Fatal(err)
					}
					if _, err := io.WriteString(c, rawRequest("GET /x HTTP/1.1", "Host: shop")); err != nil {
						t.Fatal(err)
					}
					waitCount(t, &slow.n, 1)
					if how == "reset" {
						c.(*net.TCPConn).SetLinger(0)
					}
					c.Close()
				}
				waitCount(t, &canceled, 1)
				dones := up.waitDones(t, 1)
				if len(dones) != 1 || !resilience.OutcomeOf(resilience.Outcome{}, dones[0].info.Err).Neutral() {
					t.Errorf("Done calls %+v, want one with a neutral outcome", dones)
				}
				recs := waitRecords(t, rec, 1)
				if recs[0].Status != 0 || recs[0].Cause != "" {
					t.Errorf("record: status %d cause %q, want 0 and no cause", recs[0].Status, recs[0].Cause)
				}
			})
		}
	}
}

// The same on the fast path for a request whose body streamed (the body
// pump sent it after the head): once the body is all sent, the client is
// looked at like one whose body came with its head.
func TestClientGoneAfterStreamedBody(t *testing.T) {
	var canceled atomic.Int64
	slow := startCounted(t, "slow", stallUntilCanceled(&canceled))
	up := newFakeUpstream(t, slow.addr)
	addr, rec := timeoutProxy(t, HTTPConfig{}, routeAll(t, "web.shop"), Upstreams{"web.shop": up})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, rawRequest("POST /x HTTP/1.1", "Host: shop", "Content-Length: 5")); err != nil {
		t.Fatal(err)
	}
	// The proxy dials once it has the head: the body is not in hand, so
	// a body pump carries it.
	waitCount(t, &slow.conns, 1)
	if _, err := io.WriteString(c, "hello"); err != nil {
		t.Fatal(err)
	}
	waitCount(t, &slow.n, 1) // the endpoint read the whole body
	c.Close()
	waitCount(t, &canceled, 1)
	dones := up.waitDones(t, 1)
	if len(dones) != 1 || !resilience.OutcomeOf(resilience.Outcome{}, dones[0].info.Err).Neutral() {
		t.Errorf("Done calls %+v, want one with a neutral outcome", dones)
	}
	if recs := waitRecords(t, rec, 1); recs[0].Status != 0 {
		t.Errorf("record: status %d, want 0", recs[0].Status)
	}
}

// slowServiceDesc is a gRPC service whose one method, Wait, reports the
// deadline the server derived from the call's grpc-timeout (what is left
// of it; -1 for none), waits for the call to end and then for release:
// it never answers a call itself, not even with its own
// DEADLINE_EXCEEDED when its deadline passes (which, for the grpc-timeout
// the proxy forwarded, is within microseconds of the proxy's own and
// would race its answer).
func slowServiceDesc(left chan<- time.Duration, release <-chan struct{}) grpc.ServiceDesc {
	return grpc.ServiceDesc{
		ServiceName: "outrigger.test.Slow",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{unaryHandler("Wait", func(ctx context.Context, _ []byte) (any, error) {
			d := time.Duration(-1)
			if dl, ok := ctx.Deadline(); ok {
				d = time.Until(dl)
			}
			left <- d
			<-ctx.Done()
			<-release
			return nil, ctx.Err()
		})},
	}
}

// A real grpc-go client with a deadline calls a grpc-go server that does
// not answer in time: the client gets DEADLINE_EXCEEDED, and the server's
// deadline (from the grpc-timeout the proxy forwarded) is no later than
// the client's, or than the route's timeout when that is shorter, in
// which case the proxy itself answers DEADLINE_EXCEEDED.
func TestGRPCTimeoutDeadlineExceeded(t *testing.T) {
	left := make(chan time.Duration, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.ForceServerCodec(rawCodec{}))
	release := make(chan struct{})
	desc := slowServiceDesc(left, release)
	srv.RegisterService(&desc, struct{}{})
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	t.Cleanup(func() { close(release) }) // before Stop: cleanups run last first
	be := netip.MustParseAddrPort(ln.Addr().String())

	for _, tc := range []struct {
		name          string
		client, route time.Duration
		proxyAnswers  bool
	}{
		{"client deadline", 300 * time.Millisecond, 0, false},
		{"route timeout shorter", waitLimit, 200 * time.Millisecond, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := newFakeUpstream(t, be)
			p := startGRPCProxy(t, HTTPConfig{ResponseTimeout: 2 * waitLimit}, mustTable(t, route.RouteConfig{
				Backends: []route.Backend{{Service: "grpc.shop"}}, Timeout: tc.route}), Upstreams{"grpc.shop": up})
			cc := dialGRPC(t, p.addr, nil)
			ctx, cancel := context.WithTimeout(context.Background(), tc.client)
			defer cancel()
			var trailer metadata.MD
			var out []byte
			err := cc.Invoke(ctx, "/outrigger.test.Slow/Wait", []byte("x"), &out, grpc.Trailer(&trailer))
			if status.Code(err) != codes.DeadlineExceeded {
				t.Fatalf("call ended with %v, want DEADLINE_EXCEEDED", err)
			}
			if tc.proxyAnswers {
				if got := trailer.Get("x-outrigger-error"); len(got) != 1 || got[0] != causeUpstreamTimeout {
					t.Errorf("x-outrigger-error %q, want the proxy's %s", got, causeUpstreamTimeout)
				}
			}
			var got time.Duration
			select {
			case got = <-left:
			case <-time.After(waitLimit):
				t.Fatal("the server never got the call")
			}
			bound := tc.client
			if tc.route > 0 && tc.route < bound {
				bound = tc.route
			}
			if got <= 0 || got > bound {
				t.Errorf("the server's deadline was %v away, want within (0, %v]", got, bound)
			}
		})
	}
}

// grpc-timeout on raw HTTP/2 requests, which no client enforces: a valid
// one is the proxy's deadline (DEADLINE_EXCEEDED as a trailers-only
// answer) and reaches the endpoint reduced; a malformed one gives no
// deadline and reaches the endpoint as it came.
func TestGRPCTimeoutHeader(t *testing.T) {
	seen := make(chan []string, 1)
	be := startH2CBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		seen <- r.Header.Values("Grpc-Timeout")
		if r.URL.Query().Has("slow") {
			<-r.Context().Done()
			return
		}
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Grpc-Status", "0")
		w.WriteHeader(http.StatusOK)
	}))
	up := newFakeUpstream(t, be.addr)
	p := startGRPCProxy(t, HTTPConfig{ResponseTimeout: 2 * waitLimit}, routeAll(t, "grpc.shop"), Upstreams{"grpc.shop": up})
	client := newClient(t, true)
	call := func(query, timeout string) (*http.Response, []string) {
		t.Helper()
		req, err := http.NewRequest("POST", "http://"+p.addr+"/outrigger.test.Slow/Wait"+query, strings.NewReader("\x00\x00\x00\x00\x00"))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("Te", "trailers")
		if timeout != "" {
			req.Header.Set("Grpc-Timeout", timeout)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		select {
		case v := <-seen:
			return resp, v
		case <-time.After(waitLimit):
			t.Fatal("the endpoint never got the call")
		}
		return nil, nil
	}

	resp, got := call("?slow", "200m")
	if s, c := resp.Header.Get("Grpc-Status"), resp.Header.Get(ErrorHeader); s != "4" || c != causeUpstreamTimeout {
		t.Errorf("grpc-status %q (cause %q), want 4 (DEADLINE_EXCEEDED) from the proxy", s, c)
	}
	if len(got) != 1 {
		t.Fatalf("the endpoint got grpc-timeout %q, want one", got)
	}
	if d, ok := parseGRPCTimeout(got[0]); !ok || d <= 0 || d > 200*time.Millisecond {
		t.Errorf("the endpoint got grpc-timeout %q, want at most 200m", got[0])
	}

	for _, bad := range []string{"1x", "123456789S", "5s", "-1S", "1.5S"} {
		resp, got := call("", bad)
		if s := resp.Header.Get("Grpc-Status"); s != "0" || resp.Header.Get(ErrorHeader) != "" {
			t.Errorf("grpc-timeout %q: grpc-status %q (cause %q), want the endpoint's 0", bad, s, resp.Header.Get(ErrorHeader))
		}
		if diff := cmp.Diff(got, []string{bad}); diff != "" {
			t.Errorf("grpc-timeout %q reached the endpoint as (-got +want):\n%s", bad, diff)
		}
	}
	if _, got := call("", ""); len(got) != 0 {
		t.Errorf("a call without a deadline reached the endpoint with grpc-timeout %q", got)
	}
}
