package balancer

import (
	"fmt"
	"math"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLeastConnAvoidsBusyEndpoint(t *testing.T) {
	b := newTestBalancer(t, Config{Policy: PolicyLeastConn})
	b.apply(snapshot(1, ep("a"), ep("b"), ep("c")))

	// Hold 5 connections on a: with b and c marked as tried, a is the only
	// untried endpoint, so the picks land there.
	var held []PickResult
	onlyA := &PickInfo{}
	onlyA.AddTried(ep("b").Addr)
	onlyA.AddTried(ep("c").Addr)
	for range 5 {
		res, err := b.Pick(onlyA)
		if err != nil || res.Endpoint.ID != "a" {
			t.Fatalf("Pick with b and c tried = %v, %v; want a", res.Endpoint, err)
		}
		held = append(held, res)
	}

	// a has 5 open connections, b and c none: the next picks avoid a.
	if got := pickCounts(t, b, 100, nil); got["a"] != 0 {
		t.Errorf("picks while a holds 5 connections = %v, want none on a", got)
	}

	// When a's connections end, it takes its share again.
	for _, r := range held {
		r.Done(DoneInfo{})
	}
	got := pickCounts(t, b, 3000, nil)
	if got["a"] < 700 {
		t.Errorf("picks after a's connections ended = %v, want about 1000 on a (at least 700)", got)
	}
	if diff := cmp.Diff(inFlight(b), map[string]int64{"a": 0, "b": 0, "c": 0}); diff != "" {
		t.Errorf("in flight (-got +want):\n%s", diff)
	}
}

func TestLeastConnHeldConnectionsBalance(t *testing.T) {
	// With every connection held open, weighted least connections is
	// deterministic in totals: after k·Σw picks each endpoint holds k·w.
	tests := []struct {
		name    string
		weights []uint32
		picks   int
		want    map[string]int64
	}{
		{"equal", []uint32{1, 1, 1}, 30, map[string]int64{"e00": 10, "e01": 10, "e02": 10}},
		{"1:2:3", []uint32{1, 2, 3}, 60, map[string]int64{"e00": 10, "e01": 20, "e02": 30}},
		{"8 endpoints", []uint32{1, 1, 1, 1, 2, 2, 2, 2}, 120, map[string]int64{
			"e00": 10, "e01": 10, "e02": 10, "e03": 10, "e04": 20, "e05": 20, "e06": 20, "e07": 20}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eps := manyEndpoints(len(tt.weights))
			for i, w := range tt.weights {
				eps[i].Weight = w
			}
			b := newTestBalancer(t, Config{Policy: PolicyLeastConn})
			b.apply(snapshot(1, eps...))
			var held []PickResult
			for range tt.picks {
				res, err := b.Pick(nil)
				if err != nil {
					t.Fatal(err)
				}
				held = append(held, res)
			}
			if diff := cmp.Diff(inFlight(b), tt.want); diff != "" {
				t.Errorf("in flight (-got +want):\n%s", diff)
			}
			for _, r := range held {
				r.Done(DoneInfo{})
			}
			for id, n := range inFlight(b) {
				if n != 0 {
					t.Errorf("%s: in flight %d after every Done, want 0", id, n)
				}
			}
		})
	}
}

func TestLeastConnDistributionIdle(t *testing.T) {
	// Done is called at once, so every pick is a tie broken at random in
	// proportion to weight. Tolerance: 7 binomial standard deviations around
	// each expected count (a false failure is below 1e-11 per endpoint);
	// that is ±3-6% for 3 endpoints over 10k picks and ±10-16% for 50
	// endpoints over 200k.
	tests := []struct {
		name    string
		weights []uint32
	}{
		{"3 equal", []uint32{1, 1, 1}},
		{"1:2:3", []uint32{1, 2, 3}},
		{"50 equal (p2c)", make50(func(int) uint32 { return 1 })},
		{"50 weighted 1 and 3 (p2c)", make50(func(i int) uint32 { return uint32(1 + 2*(i%2)) })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			picks := 10_000
			if len(tt.weights) > fullScanMax {
				picks = 200_000
			}
			eps := manyEndpoints(len(tt.weights))
			var total float64
			for i, w := range tt.weights {
				eps[i].Weight = w
				total += float64(w)
			}
			b := newTestBalancer(t, Config{Policy: PolicyLeastConn})
			b.apply(snapshot(1, eps...))
			got := pickCounts(t, b, picks, nil)
			for i, e := range eps {
				p := float64(tt.weights[i]) / total
				want, tol := float64(picks)*p, 7*math.Sqrt(float64(picks)*p*(1-p))
				if n := float64(got[e.ID]); math.Abs(n-want) > tol {
					t.Errorf("%s (weight %d): %v picks, want %.0f ±%.0f", e.ID, tt.weights[i], n, want, tol)
				}
			}
		})
	}
}

func make50(w func(int) uint32) []uint32 {
	ws := make([]uint32, 50)
	for i := range ws {
		ws[i] = w(i)
	}
	return ws
}

func TestLeastConnPowerOfTwoBalancesHeldLoad(t *testing.T) {
	// 50 endpoints take the power-of-two-choices path. Holding every
	// connection open, in_flight/weight must stay close across endpoints:
	// two choices keep the gap to O(log log n), a random pick would spread
	// it to about ±3·sqrt(mean). Tolerance: max - min of in_flight/weight
	// at most 16. Observed over 3000 runs: median 3-4, worst 10, each step
	// up 3-5 times rarer; random picks would give about 50.
	tests := []struct {
		name    string
		weights []uint32
		picks   int
	}{
		{"equal", make50(func(int) uint32 { return 1 }), 5000},
		{"weighted 1 and 3", make50(func(i int) uint32 { return uint32(1 + 2*(i%2)) }), 10000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eps := manyEndpoints(len(tt.weights))
			for i, w := range tt.weights {
				eps[i].Weight = w
			}
			b := newTestBalancer(t, Config{Policy: PolicyLeastConn})
			b.apply(snapshot(1, eps...))
			var held []PickResult
			for range tt.picks {
				res, err := b.Pick(nil)
				if err != nil {
					t.Fatal(err)
				}
				held = append(held, res)
			}
			lo, hi := 1e18, -1e18
			for i, e := range b.Status().Endpoints {
				r := float64(e.InFlight) / float64(tt.weights[i])
				lo, hi = min(lo, r), max(hi, r)
			}
			if hi-lo > 16 {
				t.Errorf("in_flight/weight spread %v..%v (%v), want at most 16", lo, hi, hi-lo)
			}
			for _, r := range held {
				r.Done(DoneInfo{})
			}
			for id, n := range inFlight(b) {
				if n != 0 {
					t.Errorf("%s: in flight %d after every Done, want 0", id, n)
				}
			}
		})
	}
}

func TestAliasTableExact(t *testing.T) {
	// Each column's keep and alias mass must add up to exactly w_i·n/W of
	// the draws, so the table is unbiased.
	weights := []uint32{1, 3, 1, 3, 7, 1000, 2, 2, 5, 1}
	var cands []Candidate
	for i, w := range weights {
		e := ep(fmt.Sprint(i), weight(w))
		cands = append(cands, Candidate{Endpoint: &e, State: newEndpointState()})
	}
	a := newAliasTable(cands)
	n := int64(len(weights))
	mass := make([]int64, n) // in units of 1/(n·W)
	for k := range a.keep {
		mass[k] += a.keep[k]
		mass[a.alias[k]] += a.total - a.keep[k]
	}
	want := make([]int64, n)
	for i, w := range weights {
		want[i] = int64(w) * n
	}
	if diff := cmp.Diff(mass, want); diff != "" {
		t.Errorf("probability mass (-got +want):\n%s", diff)
	}
}
