package resilience

import (
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
)

var (
	fail = Response(503)
	succ = Response(200)
)

func TestBreakerConfigValidate(t *testing.T) {
	if err := (BreakerConfig{ConsecutiveFailures: 5}).Validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}
	err := BreakerConfig{FailureRatio: 2, Window: time.Millisecond, OpenTime: 10 * time.Second, MaxOpenTime: time.Second, HalfOpenProbes: 9}.Validate()
	want := []string{
		"circuit_breaker: failure_ratio: 2 is outside (0, 1]",
		"circuit_breaker: window: 1ms is shorter than 10ms",
		"circuit_breaker: max_open: 1s is less than open 10s",
		"circuit_breaker: half_open_probes: 9 is more than 8",
	}
	if err == nil {
		t.Fatal("Validate accepted a bad config")
	}
	if diff := cmp.Diff(strings.Split(err.Error(), "\n"), want); diff != "" {
		t.Errorf("Validate (-got +want):\n%s", diff)
	}
	if (BreakerConfig{}).Enabled() || !(BreakerConfig{FailureRatio: 0.5}).Enabled() {
		t.Error("Enabled: want off for the zero config, on with a ratio")
	}
}

// recorder collects a breaker's state changes. It calls State from inside
// the callback, which would deadlock were State to take gobreaker's lock.
type recorder struct {
	mu     sync.Mutex
	b      *Breaker
	states []BreakerState
}

func (r *recorder) change(s BreakerState) {
	r.mu.Lock()
	defer r.mu.Unlock()
	_ = r.b.State()
	r.states = append(r.states, s)
}

func (r *recorder) got() []BreakerState {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]BreakerState(nil), r.states...)
}

// run admits and completes one request with outcome o; it reports whether
// the breaker admitted it.
func run(b *Breaker, o Outcome) bool {
	t, ok := b.Admit()
	if ok {
		b.Done(t, o)
	}
	return ok
}

func TestBreakerConsecutive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		b := NewBreaker("e1", BreakerConfig{ConsecutiveFailures: 3, OpenTime: 10 * time.Second, MaxOpenTime: 25 * time.Second, HalfOpenProbes: 2}, rec.change)
		rec.b = b
		// Two failures, a success, two failures: never three in a row.
		for _, o := range []Outcome{fail, fail, succ, fail, fail} {
			if !run(b, o) {
				t.Fatal("closed breaker refused a request")
			}
		}
		if b.State() != BreakerClosed {
			t.Fatalf("state %v after no three failures in a row, want closed", b.State())
		}
		// Canceled requests are neither: the run of failures goes on.
		run(b, Outcome{Kind: KindCanceled})
		run(b, fail)
		if b.State() != BreakerOpen || b.Trips() != 1 {
			t.Fatalf("after the third failure in a row: state %v, trips %d; want open, 1", b.State(), b.Trips())
		}
		opened := time.Now()
		if got := b.OpenUntil(); !got.Equal(opened.Add(10 * time.Second)) {
			t.Errorf("OpenUntil = %v, want now+10s", got.Sub(opened))
		}
		if run(b, succ) {
			t.Error("open breaker admitted a request")
		}
		time.Sleep(10 * time.Second) // exactly the open time: still open
		if _, admitted := b.Admit(); admitted {
			t.Error("admitted at exactly the open time")
		}
		time.Sleep(time.Nanosecond)
		if b.State() != BreakerHalfOpen {
			t.Errorf("state after the open time: %v, want half-open", b.State())
		}
		// Half-open admits two probes, and no third while they run.
		t1, ok1 := b.Admit()
		t2, ok2 := b.Admit()
		_, ok3 := b.Admit()
		if !ok1 || !ok2 || ok3 {
			t.Fatalf("half-open admissions: %v %v %v, want true true false", ok1, ok2, ok3)
		}
		b.Done(t1, succ)
		b.Done(t2, fail) // one failed probe opens it again, for twice as long
		if b.State() != BreakerOpen || b.Trips() != 2 {
			t.Fatalf("after a failed probe: state %v, trips %d; want open, 2", b.State(), b.Trips())
		}
		if got := b.OpenUntil().Sub(time.Now()); got != 20*time.Second {
			t.Errorf("second open time %v, want 20s", got)
		}
		// Before our grown open time passes gobreaker (base 10s) would
		// be half-open; Admit must still refuse.
		time.Sleep(15 * time.Second)
		if run(b, succ) {
			t.Error("admitted 15s into a 20s open time")
		}
		time.Sleep(5*time.Second + 1)
		t1, _ = b.Admit()
		b.Done(t1, fail)
		if got := b.OpenUntil().Sub(time.Now()); got != 25*time.Second {
			t.Errorf("third open time %v, want 25s (30s capped by max_open)", got)
		}
		time.Sleep(25*time.Second + 1)
		// Both probes must succeed to close it.
		t1, ok1 = b.Admit()
		t2, ok2 = b.Admit()
		if !ok1 || !ok2 {
			t.Fatal("half-open did not admit two probes")
		}
		b.Done(t2, succ)
		if b.State() != BreakerHalfOpen {
			t.Errorf("after one of two probes succeeded: %v, want half-open", b.State())
		}
		b.Done(t1, succ)
		if b.State() != BreakerClosed || b.Trips() != 0 || !b.OpenUntil().IsZero() {
			t.Errorf("after both probes succeeded: state %v, trips %d, open until %v; want closed, 0, zero",
				b.State(), b.Trips(), b.OpenUntil())
		}
		want := []BreakerState{BreakerOpen, BreakerHalfOpen, BreakerOpen, BreakerHalfOpen, BreakerOpen, BreakerHalfOpen, BreakerClosed}
		if diff := cmp.Diff(rec.got(), want); diff != "" {
			t.Errorf("state changes (-got +want):\n%s", diff)
		}
	})
}

func TestBreakerLateOutcomes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := NewBreaker("e1", BreakerConfig{ConsecutiveFailures: 2, OpenTime: time.Second, HalfOpenProbes: 2}, nil)
		slow, _ := b.Admit() // admitted while closed, finishes late
		run(b, fail)
		run(b, fail)
		time.Sleep(time.Second + 1)
		probe, ok := b.Admit()
		if !ok {
			t.Fatal("no probe after the open time")
		}
		// The slow request succeeds while the probe runs: it must not
		// count as a probe's success.
		b.Done(slow, succ)
		b.Done(probe, succ)
		if b.State() != BreakerHalfOpen {
			t.Fatalf("after one of two probes and a late success of the closed period: %v, want half-open", b.State())
		}
		probe, ok = b.Admit()
		if !ok {
			t.Fatal("second probe refused")
		}
		b.Done(probe, succ)
		if b.State() != BreakerClosed {
			t.Errorf("after both probes succeeded: %v, want closed", b.State())
		}
	})
}

func TestBreakerFailureRatio(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := NewBreaker("r", BreakerConfig{FailureRatio: 0.5, MinRequests: 10, Window: 10 * time.Second}, nil)
		// 9 failures alone are below the minimum request count.
		for range 9 {
			run(b, fail)
		}
		if b.State() != BreakerClosed {
			t.Fatalf("tripped below MinRequests: %v", b.State())
		}
		// Let the window roll past them: they no longer count.
		time.Sleep(11 * time.Second)
		for range 6 {
			run(b, succ)
		}
		for range 4 {
			run(b, fail)
		}
		if b.State() != BreakerClosed {
			t.Fatalf("tripped at 4 failures of 10 in the window: %v", b.State())
		}
		run(b, fail) // 5 of 11
		if b.State() != BreakerClosed {
			t.Fatalf("tripped at 5 of 11 (45%%): %v", b.State())
		}
		run(b, fail) // 6 of 12
		if b.State() != BreakerOpen {
			t.Fatalf("at 6 failures of 12: %v, want open", b.State())
		}
	})
}

func TestBreakerAdmitDoesNotAllocate(t *testing.T) {
	b := NewBreaker("a", BreakerConfig{ConsecutiveFailures: 1000}, nil)
	if n := testing.AllocsPerRun(100, func() { b.Admit() }); n != 0 {
		t.Errorf("Admit while closed: %v allocations, want 0", n)
	}
	for range 1000 {
		run(b, fail)
	}
	if n := testing.AllocsPerRun(100, func() { b.Admit() }); n != 0 || b.State() != BreakerOpen {
		t.Errorf("Admit while open: %v allocations (state %v), want 0", n, b.State())
	}
}

func BenchmarkBreaker(b *testing.B) {
	br := NewBreaker("a", BreakerConfig{ConsecutiveFailures: 5}, nil)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			t, _ := br.Admit()
			br.Done(t, succ)
		}
	})
}

// TestBreakerSkipsIdleSuccesses: in consecutive mode a success with no
// failure pending is not recorded, yet every success still breaks a run.
func TestBreakerSkipsIdleSuccesses(t *testing.T) {
	b := NewBreaker("s", BreakerConfig{ConsecutiveFailures: 3}, nil)
	if n := testing.AllocsPerRun(100, func() { run(b, succ) }); n != 0 {
		t.Errorf("success with no failure pending: %v allocations, want 0", n)
	}
	for range 10 { // F F S, over and over: never three in a row
		run(b, fail)
		run(b, fail)
		run(b, succ)
		run(b, succ)
	}
	if b.State() != BreakerClosed {
		t.Fatalf("tripped without three failures in a row: %v", b.State())
	}
	run(b, fail)
	run(b, fail)
	run(b, fail)
	if b.State() != BreakerOpen {
		t.Errorf("three failures in a row: %v, want open", b.State())
	}
}

// TestBreakerConcurrent hammers one breaker from many goroutines through
// trips and probes (run with -race); afterwards every probe slot is free
// and a run of successes closes it.
func TestBreakerConcurrent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := NewBreaker("c", BreakerConfig{ConsecutiveFailures: 3, OpenTime: time.Millisecond, HalfOpenProbes: 4}, nil)
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := range 2000 {
					if tk, ok := b.Admit(); ok {
						o := succ
						if (i+g)%3 == 0 {
							o = fail
						}
						b.Done(tk, o)
					}
					if i%100 == 0 {
						time.Sleep(time.Millisecond)
					}
				}
			})
		}
		wg.Wait()
		for i := range b.probes {
			if b.probes[i].owner.Load() != 0 {
				t.Errorf("probe slot %d still busy", i)
			}
		}
		time.Sleep(time.Second)
		for range 10 {
			run(b, succ)
		}
		if b.State() != BreakerClosed {
			t.Errorf("after successes: %v, want closed", b.State())
		}
	})
}

func TestRouteBreakers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var changes []string
		rb, err := NewRouteBreakers(map[string]BreakerConfig{
			"orders":  {FailureRatio: 0.5, MinRequests: 4, OpenTime: 30 * time.Second},
			"catalog": {}, // nothing enabled: no breaker
		}, func(route string, s BreakerState) {
			mu.Lock()
			changes = append(changes, route+" "+s.String())
			mu.Unlock()
		})
		if err != nil {
			t.Fatal(err)
		}
		if rb.Get("catalog") != nil || rb.Get("missing") != nil || (*RouteBreakers)(nil).Get("x") != nil {
			t.Error("a breaker for a route without one")
		}
		b := rb.Get("orders")
		for _, o := range []Outcome{succ, fail, succ, fail} { // 2 of 4
			if !run(b, o) {
				t.Fatal("closed route breaker refused")
			}
		}
		// Open: every request fails fast until the open time passes.
		refused := 0
		for range 100 {
			if _, ok := b.Admit(); !ok {
				refused++
			}
		}
		if refused != 100 {
			t.Errorf("open route breaker admitted %d of 100", 100-refused)
		}
		time.Sleep(30*time.Second + 1)
		if !run(b, succ) {
			t.Error("no probe after the open time")
		}
		if diff := cmp.Diff(changes, []string{"orders open", "orders half-open", "orders closed"}); diff != "" {
			t.Errorf("changes (-got +want):\n%s", diff)
		}
		_, err = NewRouteBreakers(map[string]BreakerConfig{"bad": {FailureRatio: 3}}, nil)
		if err == nil || !strings.Contains(err.Error(), `route "bad": circuit_breaker: failure_ratio: 3`) {
			t.Errorf("invalid route config: err = %v", err)
		}
	})
}

// TestBreakerAdmittable: Admittable answers as Admit would, without taking
// a probe: yes while closed, no while open, yes once open time has passed
// while a probe slot is free, no while every probe is out.
func TestBreakerAdmittable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := NewBreaker("t", BreakerConfig{ConsecutiveFailures: 1, OpenTime: time.Second, HalfOpenProbes: 2}, nil)
		if !b.Admittable() {
			t.Fatal("closed breaker: Admittable false")
		}
		tk, _ := b.Admit()
		b.Done(tk, fail)
		if b.Admittable() {
			t.Fatal("open breaker: Admittable true")
		}
		time.Sleep(time.Second + time.Nanosecond)
		var tickets []Ticket
		for range 2 {
			if !b.Admittable() {
				t.Fatalf("half-open with %d of 2 probes out: Admittable false", len(tickets))
			}
			tk, ok := b.Admit()
			if !ok {
				t.Fatalf("Admit refused probe %d", len(tickets)+1)
			}
			tickets = append(tickets, tk)
		}
		if b.Admittable() {
			t.Error("half-open with both probes out: Admittable true")
		}
		b.Done(tickets[0], succ)
		if !b.Admittable() {
			t.Error("half-open after a probe finished: Admittable false")
		}
		b.Done(tickets[1], succ)
	})
}

// TestBreakerStaleDoneIsNotAProbe: an outcome admitted while closed, whose
// Done stalls between its closed-state check and recording it, until the
// breaker has opened and its open time passed, must not take the half-open
// probe slot nor count as a probe's success.
func TestBreakerStaleDoneIsNotAProbe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := NewBreaker("stale", BreakerConfig{ConsecutiveFailures: 2, OpenTime: time.Second}, nil)
		run(b, fail) // a failure pending: the next success is recorded, not skipped
		stale := b.closedAdmit(t)
		testHookBeforeRecord = func() {
			testHookBeforeRecord = nil
			run(b, fail) // trips
			time.Sleep(time.Second + 1)
		}
		defer func() { testHookBeforeRecord = nil }()
		b.Done(stale, succ)
		if s := b.State(); s != BreakerHalfOpen {
			t.Fatalf("after a stale success of the closed period: %v, want half-open", s)
		}
		probe, ok := b.Admit()
		if !ok {
			t.Fatal("the probe was refused: the stale outcome took its slot")
		}
		b.Done(probe, succ)
		if s := b.State(); s != BreakerClosed {
			t.Errorf("after the real probe succeeded: %v, want closed", s)
		}
	})
}

// closedAdmit admits a request on a closed breaker.
func (b *Breaker) closedAdmit(t *testing.T) Ticket {
	t.Helper()
	tk, ok := b.Admit()
	if !ok || tk != 0 {
		t.Fatalf("Admit on a closed breaker: %v %v", tk, ok)
	}
	return tk
}

// TestBreakerSuccessDuringFailureCounts: a success reported while a
// failure is being recorded (recorded, not yet marked pending) is not
// skipped as an idle success, so the run of failures is broken.
func TestBreakerSuccessDuringFailureCounts(t *testing.T) {
	b := NewBreaker("race", BreakerConfig{ConsecutiveFailures: 2}, nil)
	testHookAfterFailure = func() {
		testHookAfterFailure = nil
		run(b, succ) // between the failure's record and its mark
	}
	defer func() { testHookAfterFailure = nil }()
	run(b, fail)
	run(b, fail)
	if s := b.State(); s != BreakerClosed {
		t.Errorf("failure, success, failure: %v, want closed (never two failures in a row)", s)
	}
}

// TestBreakerDoubleProbeDoneIsHarmless: a second Done with a probe's
// ticket, after its slot went to a new probe, leaves the new probe alone.
func TestBreakerDoubleProbeDoneIsHarmless(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := NewBreaker("double", BreakerConfig{ConsecutiveFailures: 1, OpenTime: time.Second}, nil)
		run(b, fail)
		time.Sleep(time.Second + 1)
		p1, ok := b.Admit()
		if !ok {
			t.Fatal("first probe refused")
		}
		b.Done(p1, fail) // open again, for 2s
		time.Sleep(2*time.Second + 1)
		p2, ok := b.Admit() // p1's slot, a new half-open period
		if !ok {
			t.Fatal("second probe refused")
		}
		b.Done(p1, succ) // a bug in the caller: p1 again
		if s := b.State(); s != BreakerHalfOpen {
			t.Fatalf("after a second Done of a finished probe: %v, want half-open (p2 still out)", s)
		}
		b.Done(p2, succ)
		if s := b.State(); s != BreakerClosed {
			t.Errorf("after p2 succeeded: %v, want closed", s)
		}
	})
}
