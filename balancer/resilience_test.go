package balancer

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/outrigger-mesh/outrigger/discovery"
	"github.com/outrigger-mesh/outrigger/resilience"
	"go.uber.org/goleak"
)

func TestConfigValidateResilience(t *testing.T) {
	cfg := Config{Service: testService,
		Breaker: &resilience.BreakerConfig{FailureRatio: 2, HalfOpenProbes: 9},
		Outlier: &resilience.OutlierConfig{MaxEjectionShare: -1},
		Health:  &resilience.HealthConfig{Protocol: "icmp"},
	}
	want := []string{
		"balancer: circuit_breaker: failure_ratio: 2 is outside (0, 1]",
		"balancer: circuit_breaker: half_open_probes: 9 is more than 8",
		"balancer: outlier_detection: max_ejection_share: -1 is outside [0, 1]",
		`balancer: health_check: protocol: unknown "icmp" (want tcp, http or grpc)`,
	}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("Validate accepted bad resilience settings")
	}
	if diff := cmp.Diff(strings.Split(err.Error(), "\n"), want); diff != "" {
		t.Errorf("Validate (-got +want):\n%s", diff)
	}
	// Empty settings are valid and off.
	b := newTestBalancer(t, Config{Breaker: &resilience.BreakerConfig{}, Outlier: &resilience.OutlierConfig{}, Health: &resilience.HealthConfig{}})
	b.apply(snapshot(1, ep("a")))
	if st := b.Status().Endpoints[0]; st.Breaker != nil || st.Outlier != nil || st.Health != nil {
		t.Errorf("empty settings turned something on: %+v", st)
	}
}

// running starts Run in a synctest bubble and returns the watcher and a
// function that waits until Run is idle.
func running(t *testing.T, cfg Config, snap *discovery.Snapshot) (*Balancer, func()) {
	t.Helper()
	w := &fakeWatcher{}
	w.push(snap)
	cfg.Service = testService
	b, err := New(cfg, Options{Watcher: w})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	synctest.Wait()
	return b, synctest.Wait
}

// pickAll makes n picks, finishing each at once with outcome(id), and
// counts them by endpoint ID.
func pickAll(t *testing.T, b *Balancer, n int, outcome func(id string) DoneInfo) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		res, err := b.Pick(nil)
		if err != nil {
			t.Fatalf("Pick: %v", err)
		}
		got[res.Endpoint.ID]++
		res.Done(outcome(res.Endpoint.ID))
	}
	return got
}

func succeed(string) DoneInfo { return DoneInfo{} }

func breakerOf(b *Balancer, id string) BreakerStatus {
	for _, e := range b.Status().Endpoints {
		if e.ID == id && e.Breaker != nil {
			return *e.Breaker
		}
	}
	return BreakerStatus{}
}

func TestBreakerTakesEndpointOut(t *testing.T) {
	for _, policy := range policies {
		t.Run(policy, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b, settle := running(t, Config{Policy: policy,
					Breaker: &resilience.BreakerConfig{ConsecutiveFailures: 3, OpenTime: 10 * time.Second}},
					snapshot(1, ep("a"), ep("b"), ep("c")))
				// "a" fails the way proxy/ reports it today: only Err set.
				failA := func(id string) DoneInfo {
					if id == "a" {
						return DoneInfo{Err: errors.New("upstream status 503")}
					}
					return DoneInfo{}
				}
				for n := 0; n < 3; {
					n += pickAll(t, b, 1, failA)["a"]
					settle()
					if s := breakerOf(b, "a"); n < 3 && s.State != resilience.BreakerClosed {
						t.Fatalf("a's breaker after %d failures: %+v, want closed", n, s)
					}
				}
				if s := breakerOf(b, "a"); s.State != resilience.BreakerOpen || s.Trips != 1 {
					t.Fatalf("a's breaker after 3 failures: %+v, want open, 1 trip", s)
				}
				// While open: a is out of the picker, and no pick reaches it.
				if st := b.Status().Endpoints[0]; st.Eligible {
					t.Errorf("a is eligible while its breaker is open")
				}
				got := pickAll(t, b, 60, succeed)
				if got["a"] != 0 || got["b"]+got["c"] != 60 {
					t.Errorf("picks while a is open: %v, want none to a", got)
				}
				time.Sleep(9 * time.Second)
				settle()
				if got := pickAll(t, b, 30, succeed); got["a"] != 0 {
					t.Errorf("picks 9s into the 10s open time: %v, want none to a", got)
				}
				// After the open time a enters the picker half-open, and
				// its breaker admits one probe. (Open means until and
				// including the 10s mark.)
				time.Sleep(time.Second + time.Nanosecond)
				settle()
				var probe PickResult
				others := 0
				for range 30 {
					res, err := b.Pick(nil)
					if err != nil {
						t.Fatal(err)
					}
					if res.Endpoint.ID == "a" {
						if probe.Done != nil {
							t.Fatal("a second probe was admitted while the first runs")
						}
						probe = res
						continue
					}
					others++
					res.Done(DoneInfo{})
				}
				if probe.Done == nil || others != 29 {
					t.Fatalf("after the open time: probe picked %v, others %d; want a probe and 29 others", probe.Done != nil, others)
				}
				if s := breakerOf(b, "a"); s.State != resilience.BreakerHalfOpen {
					t.Errorf("a during its probe: %+v, want half-open", s)
				}
				probe.Done(DoneInfo{Outcome: resilience.Response(200)})
				settle()
				if s := breakerOf(b, "a"); s.State != resilience.BreakerClosed || s.Trips != 0 {
					t.Errorf("a after its probe succeeded: %+v, want closed", s)
				}
				if got := pickAll(t, b, 30, succeed); got["a"] < 5 {
					t.Errorf("picks after a closed: %v, want a back in rotation", got)
				}
			})
		})
	}
}

func TestBreakerReopensLonger(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, settle := running(t, Config{
			Breaker: &resilience.BreakerConfig{ConsecutiveFailures: 1, OpenTime: 10 * time.Second}},
			snapshot(1, ep("a"), ep("b")))
		fail := func(id string) DoneInfo {
			if id == "a" {
				return DoneInfo{Outcome: resilience.Outcome{Kind: resilience.KindReset}}
			}
			return DoneInfo{}
		}
		pickAll(t, b, 2, fail)
		settle()
		time.Sleep(10*time.Second + 1)
		settle()
		pickAll(t, b, 4, fail) // the probe to a fails
		settle()
		s := breakerOf(b, "a")
		if s.State != resilience.BreakerOpen || s.Trips != 2 || s.OpenUntil == nil || s.OpenUntil.Sub(time.Now()) != 20*time.Second {
			t.Fatalf("after a failed probe: %+v, want open for 20s, 2 trips", s)
		}
		time.Sleep(15 * time.Second)
		settle()
		if got := pickAll(t, b, 10, fail); got["a"] != 0 {
			t.Errorf("15s into a 20s open time: %v, want none to a", got)
		}
	})
}

// TestAllBreakersOpen: with every endpoint's breaker open Pick fails fast.
func TestAllBreakersOpen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, settle := running(t, Config{Breaker: &resilience.BreakerConfig{ConsecutiveFailures: 1}},
			snapshot(1, ep("a"), ep("b")))
		pickAll(t, b, 2, func(string) DoneInfo { return DoneInfo{Err: errors.New("boom")} })
		settle()
		if _, err := b.Pick(nil); !errors.Is(err, ErrNoEndpoints) {
			t.Errorf("Pick with every breaker open: err = %v, want ErrNoEndpoints", err)
		}
		// A canceled request is not the endpoint's failure.
		b2, settle2 := running(t, Config{Breaker: &resilience.BreakerConfig{ConsecutiveFailures: 1}}, snapshot(1, ep("a")))
		pickAll(t, b2, 5, func(string) DoneInfo { return DoneInfo{Err: context.Canceled} })
		settle2()
		if s := breakerOf(b2, "a"); s.State != resilience.BreakerClosed {
			t.Errorf("after canceled requests: %+v, want closed", s)
		}
	})
}

func ejectedIDs(b *Balancer) []string {
	var ids []string
	for _, e := range b.Status().Endpoints {
		if e.Outlier != nil && e.Outlier.Ejected {
			ids = append(ids, e.ID)
		}
	}
	return ids
}

func TestOutlierEjectionShare(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, settle := running(t, Config{Policy: PolicyRoundRobin,
			Outlier: &resilience.OutlierConfig{Consecutive5xx: 2, BaseEjectionTime: 30 * time.Second}},
			snapshot(1, ep("a"), ep("b"), ep("c"), ep("d")))
		// a, b and c answer 503; d is fine. Ejections happen one by one
		// as Run handles them; the share (50% of 4) stops at two.
		bad := func(id string) DoneInfo {
			if id == "d" {
				return DoneInfo{Outcome: resilience.Response(200)}
			}
			return DoneInfo{Outcome: resilience.Response(503)}
		}
		for range 10 {
			pickAll(t, b, 8, bad)
			settle()
		}
		ej := ejectedIDs(b)
		if len(ej) != 2 {
			t.Fatalf("ejected %v, want two of a, b, c (50%% of 4)", ej)
		}
		got := pickAll(t, b, 40, succeed)
		for _, id := range ej {
			if got[id] != 0 {
				t.Errorf("ejected %s got %d picks", id, got[id])
			}
		}
		if len(got) != 2 || got["d"] == 0 {
			t.Errorf("picks with %v ejected: %v, want the other two only", ej, got)
		}
		// The ejections end after the base time.
		time.Sleep(30 * time.Second)
		settle()
		if len(ejectedIDs(b)) != 2 {
			t.Errorf("at exactly 30s: ejected %v, want still two", ejectedIDs(b))
		}
		time.Sleep(time.Nanosecond)
		settle()
		if ej := ejectedIDs(b); len(ej) != 0 {
			t.Errorf("after 30s: ejected %v, want none", ej)
		}
		if got := pickAll(t, b, 40, succeed); len(got) != 4 {
			t.Errorf("after the ejections ended: picks %v, want all four", got)
		}
	})
}

func TestOutlierShareWhenEndpointsLeave(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newTestBalancer(t, Config{Outlier: &resilience.OutlierConfig{ConsecutiveLocalOriginFailures: 1, BaseEjectionTime: time.Minute}})
		b.apply(snapshot(1, ep("a"), ep("b"), ep("c"), ep("d")))
		dial := DoneInfo{Err: &net.OpError{Op: "dial", Err: errors.New("refused")}}
		for _, id := range []string{"b", "a"} { // b first, then a
			for {
				res, _ := b.Pick(nil)
				if res.Endpoint.ID == id {
					res.Done(dial)
					break
				}
				res.Done(DoneInfo{})
			}
			b.refresh() // stands in for Run
			time.Sleep(time.Second)
		}
		if diff := cmp.Diff(ejectedIDs(b), []string{"a", "b"}); diff != "" {
			t.Fatalf("ejected (-got +want):\n%s", diff)
		}
		// d leaves: 50% of 3 is one, so only the earlier ejection (b)
		// keeps its endpoint out; a balances again.
		b.apply(snapshot(2, ep("a"), ep("b"), ep("c")))
		got := pickIDs(t, b, 30)
		if diff := cmp.Diff(got, []string{"a", "c"}); diff != "" {
			t.Errorf("picked (-got +want):\n%s", diff)
		}
		// A single endpoint is never ejected at the default share.
		b.apply(snapshot(3, ep("c")))
		res, _ := b.Pick(nil)
		res.Done(dial)
		b.refresh()
		if _, err := b.Pick(nil); err != nil {
			t.Errorf("single endpoint after a failure: %v", err)
		}
	})
}

// TestHealthCheckRemovesClosedListener runs real TCP health checks in real
// time against two real listeners and waits, by event, for the closed one
// to leave the picker.
func TestHealthCheckRemovesClosedListener(t *testing.T) {
	defer goleak.VerifyNone(t)
	var lns [2]net.Listener
	eps := make([]discovery.Endpoint, 2)
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		lns[i] = ln
		eps[i] = ep(string(rune('a' + i)))
		eps[i].Addr = ln.Addr().(*net.TCPAddr).AddrPort()
	}
	w := &fakeWatcher{}
	w.push(snapshot(1, eps...))
	b, err := New(Config{Service: testService, Health: &resilience.HealthConfig{Protocol: resilience.HealthTCP,
		Interval: 10 * time.Millisecond, UnhealthyThreshold: 2}}, Options{Watcher: w})
	if err != nil {
		t.Fatal(err)
	}
	published := make(chan struct{}, 100)
	b.published = func() {
		select {
		case published <- struct{}{}:
		default:
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- b.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	<-published // the first snapshot
	if got := pickIDs(t, b, 20); len(got) != 2 {
		t.Fatalf("both listening: picked %v, want a and b", got)
	}
	lns[0].Close()
	safety := time.After(time.Minute) // a safety net, not a timing assertion
	for {                             // each wake-up is a rebuilt picker
		select {
		case <-published:
		case <-safety:
			t.Fatal("a's listener is closed and a is still in the picker")
		}
		st := b.Status().Endpoints[0]
		if !st.Eligible {
			if st.Health == nil || st.Health.Healthy {
				t.Errorf("a left the picker with health %+v, want unhealthy", st.Health)
			}
			break
		}
	}
	if got := pickIDs(t, b, 20); len(got) != 1 || got[0] != "b" {
		t.Errorf("after a's listener closed: picked %v, want b only", got)
	}
}

func TestStatusJSONResilience(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newTestBalancer(t, Config{
			Breaker: &resilience.BreakerConfig{ConsecutiveFailures: 1, OpenTime: time.Minute},
			Outlier: &resilience.OutlierConfig{Consecutive5xx: 1},
			Health:  &resilience.HealthConfig{Protocol: resilience.HealthTCP}})
		b.apply(snapshot(1, ep("a"), ep("b")))
		for {
			res, _ := b.Pick(nil)
			res.Done(DoneInfo{Outcome: resilience.Response(500)})
			if res.Endpoint.ID == "a" {
				break
			}
		}
		b.refresh()
		var got struct {
			Endpoints []map[string]json.RawMessage `json:"endpoints"`
		}
		data, err := json.Marshal(b.Status())
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, &got); err != nil {
			t.Fatal(err)
		}
		a := got.Endpoints[0]
		until := time.Now().Add(time.Minute).UTC().Format(time.RFC3339)
		want := map[string]string{
			"breaker": `{"state":"open","trips":1,"open_until":"` + until + `"}`,
			"health":  `{"healthy":true}`,
		}
		for k, v := range want {
			if string(a[k]) != v {
				t.Errorf("a's %s: %s, want %s", k, a[k], v)
			}
		}
		if !strings.Contains(string(a["outlier"]), `"ejected":true,"ejections":1,"ejected_until":`) ||
			!strings.HasSuffix(string(a["outlier"]), `,"reason":"consecutive-5xx"}`) {
			t.Errorf("a's outlier: %s, want ejected once with an end time and reason consecutive-5xx", a["outlier"])
		}
		if strings.Contains(string(got.Endpoints[1]["outlier"]), "reason") {
			t.Errorf("b's outlier: %s, want no reason (not ejected)", got.Endpoints[1]["outlier"])
		}
	})
}
