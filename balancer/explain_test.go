package balancer

import (
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/outrigger-mesh/outrigger/discovery"
	"github.com/outrigger-mesh/outrigger/resilience"
)

// reasons returns each endpoint's exclusion reasons (nil when eligible),
// by ID.
func reasons(x Explanation) map[string][]string {
	m := map[string][]string{}
	for _, e := range x.Endpoints {
		var rs []string
		for _, ex := range e.Excluded {
			rs = append(rs, ex.Reason)
		}
		m[e.ID] = rs
	}
	return m
}

func TestExplainDiscoveryAndLocality(t *testing.T) {
	b := newTestBalancer(t, Config{Locality: discovery.Locality{Cluster: "east", Zone: "east-a"}})
	b.apply(snapshot(3,
		ep("local", locality("east", "east-a")),
		ep("down", locality("east", "east-a"), state(discovery.StateNotReady)),
		ep("leaving", locality("east", "east-a"), state(discovery.StateDraining)),
		ep("zone-b", locality("east", "east-b")),
		ep("west", locality("west", "west-a")),
		ep("backup", locality("east", "east-a"), priority(1)),
	))
	x := b.Explain()
	want := map[string][]string{
		"local":   nil,
		"down":    {ReasonNotReady},
		"leaving": {ReasonDraining},
		"zone-b":  {ReasonOtherZone},
		"west":    {ReasonOtherCluster},
		"backup":  {ReasonLowerPriority},
	}
	if diff := cmp.Diff(reasons(x), want); diff != "" {
		t.Errorf("reasons (-got +want):\n%s", diff)
	}
	if x.PickerSize != 1 || x.Version != 3 || x.Tier == nil || *x.Tier != (TierView{}) {
		t.Errorf("picker size %d, version %d, tier %+v; want 1, 3, {0 0}", x.PickerSize, x.Version, x.Tier)
	}
	if diff := cmp.Diff(x.WouldPick, []string{"local"}); diff != "" {
		t.Errorf("would pick (-got +want):\n%s", diff)
	}

	// The local endpoint goes not ready: the zone-b endpoint takes over,
	// and the one in the west is now out for being in another cluster
	// (rank 2 against the tier's rank 1).
	b.apply(snapshot(4,
		ep("local", locality("east", "east-a"), state(discovery.StateNotReady)),
		ep("zone-b", locality("east", "east-b")),
		ep("west", locality("west", "west-a")),
	))
	x = b.Explain()
	want = map[string][]string{"local": {ReasonNotReady}, "zone-b": nil, "west": {ReasonOtherCluster}}
	if diff := cmp.Diff(reasons(x), want); diff != "" {
		t.Errorf("after failover, reasons (-got +want):\n%s", diff)
	}
	if x.Tier == nil || x.Tier.LocalityRank != 1 {
		t.Errorf("tier after failover %+v, want locality rank 1", x.Tier)
	}
}

func TestExplainNoEndpoints(t *testing.T) {
	b := newTestBalancer(t, Config{})
	if x := b.Explain(); len(x.Endpoints) != 0 || len(x.WouldPick) != 0 || x.PickRule != "no snapshot applied yet" {
		t.Errorf("before a snapshot: %+v", x)
	}
	b.apply(snapshot(1, ep("a", state(discovery.StateNotReady))))
	x := b.Explain()
	if x.PickerSize != 0 || len(x.WouldPick) != 0 || x.Tier != nil {
		t.Errorf("no eligible endpoint: size %d, would pick %v, tier %+v", x.PickerSize, x.WouldPick, x.Tier)
	}
}

// Explain names an open breaker and an ejection, with when each ends, on
// breakers and ejections driven by real Done outcomes.
func TestExplainBreakerOpenAndEjected(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, settle := running(t, Config{Policy: PolicyRoundRobin,
			Breaker: &resilience.BreakerConfig{ConsecutiveFailures: 2, OpenTime: 10 * time.Second},
			Outlier: &resilience.OutlierConfig{ConsecutiveLocalOriginFailures: 100, Consecutive5xx: 2, BaseEjectionTime: 30 * time.Second}},
			snapshot(1, ep("a"), ep("b"), ep("c"), ep("d")))
		// a fails with a connection error: its breaker opens (local
		// origin failures are set too high to eject it).
		outcome := func(id string) DoneInfo {
			switch id {
			case "a":
				return DoneInfo{Err: errors.New("connection reset")}
			}
			return DoneInfo{Outcome: resilience.Response(200)}
		}
		for range 4 {
			pickAll(t, b, 4, outcome)
			settle()
		}
		x := b.Explain()
		var a EndpointExplanation
		for _, e := range x.Endpoints {
			if e.ID == "a" {
				a = e
			}
		}
		if len(a.Excluded) == 0 || a.Excluded[0].Reason != ReasonBreakerOpen {
			t.Fatalf("a after failures: excluded %+v, want breaker_open first", a.Excluded)
		}
		if u := a.Excluded[0].Until; u == nil || !u.After(time.Now()) || u.After(time.Now().Add(10*time.Second)) {
			t.Errorf("breaker_open until %v, want within the 10s open time from now (%v)", u, time.Now())
		}
		for _, id := range x.WouldPick {
			if id == "a" {
				t.Errorf("would pick %v includes a, whose breaker is open", x.WouldPick)
			}
		}

		// b answers 503 twice in a row: ejected by outlier detection
		// (and its breaker opens too: both are named).
		bad := func(id string) DoneInfo {
			if id == "b" {
				return DoneInfo{Outcome: resilience.Response(503)}
			}
			return DoneInfo{Outcome: resilience.Response(200)}
		}
		for range 4 {
			pickAll(t, b, 3, bad)
			settle()
		}
		got := reasons(b.Explain())
		if rs := got["b"]; !contains(rs, ReasonEjected) {
			t.Errorf("b after 503s: reasons %v, want ejected", rs)
		}
		if got["c"] != nil || got["d"] != nil {
			t.Errorf("c and d should be eligible: %v", got)
		}
	})
}

// WouldPick names the endpoint the next real pick takes, and Explain
// itself moves no counter.
func TestExplainWouldPickMatchesPick(t *testing.T) {
	t.Run(PolicyRoundRobin, func(t *testing.T) {
		b := newTestBalancer(t, Config{Policy: PolicyRoundRobin})
		b.apply(snapshot(1, ep("a"), ep("b", weight(3)), ep("c")))
		for range 20 {
			x := b.Explain()
			if len(x.WouldPick) != 1 {
				t.Fatalf("round robin would pick %v, want one", x.WouldPick)
			}
			res, err := b.Pick(nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.Endpoint.ID != x.WouldPick[0] {
				t.Fatalf("would pick %s, Pick took %s", x.WouldPick[0], res.Endpoint.ID)
			}
			res.Done(DoneInfo{})
		}
	})
	t.Run(PolicyLeastConn, func(t *testing.T) {
		b := newTestBalancer(t, Config{Policy: PolicyLeastConn})
		b.apply(snapshot(1, ep("a"), ep("b"), ep("c")))
		// Hold one request on a and one on b: c is least loaded.
		var held []PickResult
		for len(held) < 2 {
			res, err := b.Pick(nil)
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, res)
		}
		before := inFlight(b)
		x := b.Explain()
		var idle []string
		for id, n := range before {
			if n == 0 {
				idle = append(idle, id)
			}
		}
		if diff := cmp.Diff(x.WouldPick, idle); diff != "" {
			t.Errorf("would pick (-got +want):\n%s", diff)
		}
		if diff := cmp.Diff(inFlight(b), before); diff != "" {
			t.Errorf("Explain changed in-flight counts (-got +want):\n%s", diff)
		}
		res, _ := b.Pick(nil)
		if res.Endpoint.ID != idle[0] {
			t.Errorf("Pick took %s, Explain said %v", res.Endpoint.ID, idle)
		}
		res.Done(DoneInfo{})
		for _, h := range held {
			h.Done(DoneInfo{})
		}
	})
}
