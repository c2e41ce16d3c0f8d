package balancer

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/outrigger-mesh/outrigger/discovery"
)

func TestRoundRobinEqualWeightsRotate(t *testing.T) {
	for _, n := range []int{1, 2, 3, 5} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			b := newTestBalancer(t, Config{Policy: PolicyRoundRobin})
			eps := manyEndpoints(n)
			b.apply(snapshot(1, eps...))
			index := map[string]int{}
			for i, e := range eps {
				index[e.ID] = i
			}
			seq := make([]int, 4*n)
			for i := range seq {
				res, err := b.Pick(nil)
				if err != nil {
					t.Fatal(err)
				}
				seq[i] = index[res.Endpoint.ID]
				res.Done(DoneInfo{})
			}
			// Strict rotation: each pick is the next endpoint in snapshot
			// order after the previous one, so any n consecutive picks visit
			// every endpoint exactly once.
			want := make([]int, len(seq))
			for i := range want {
				want[i] = (seq[0] + i) % n
			}
			if diff := cmp.Diff(seq, want); diff != "" {
				t.Errorf("pick sequence (-got +want):\n%s", diff)
			}
		})
	}
}

func TestRoundRobinRandomStart(t *testing.T) {
	eps := manyEndpoints(3)
	first := map[string]int{}
	for v := range uint64(60) {
		b := newTestBalancer(t, Config{Policy: PolicyRoundRobin})
		b.apply(snapshot(v+1, eps...))
		res, err := b.Pick(nil)
		if err != nil {
			t.Fatal(err)
		}
		first[res.Endpoint.ID]++
		res.Done(DoneInfo{})
	}
	// A fixed start would give one ID 60 times; the chance that a uniform
	// random start misses an endpoint in 60 tries is 3·(2/3)^60 ≈ 1e-10.
	if len(first) != 3 {
		t.Errorf("first picks of 60 fresh pickers = %v, want all 3 endpoints", first)
	}
}

func TestRoundRobinWeights(t *testing.T) {
	// Tolerance: none. Every count is a whole number of schedule cycles
	// (the schedule is as long as the gcd-reduced weight sum), so the
	// proportions are exact wherever the rotation starts.
	tests := []struct {
		name    string
		weights []uint32
		picks   int
		want    map[string]int
	}{
		{"1:2:3", []uint32{1, 2, 3}, 6000, map[string]int{"e00": 1000, "e01": 2000, "e02": 3000}},
		{"equal", []uint32{7, 7, 7}, 6000, map[string]int{"e00": 2000, "e01": 2000, "e02": 2000}},
		{"gcd", []uint32{200, 400, 600}, 6000, map[string]int{"e00": 1000, "e01": 2000, "e02": 3000}},
		{"heavy", []uint32{1000, 1}, 1001 * 3, map[string]int{"e00": 3000, "e01": 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eps := manyEndpoints(len(tt.weights))
			for i, w := range tt.weights {
				eps[i].Weight = w
			}
			b := newTestBalancer(t, Config{Policy: PolicyRoundRobin})
			b.apply(snapshot(1, eps...))
			if diff := cmp.Diff(pickCounts(t, b, tt.picks, nil), tt.want); diff != "" {
				t.Errorf("picks by endpoint (-got +want):\n%s", diff)
			}
		})
	}
}

func TestScheduleSmooth(t *testing.T) {
	// Weights 1:2:3 interleave as C B C A B C, not A B B C C C.
	eps := manyEndpoints(3)
	var cands []Candidate
	for i, w := range []uint32{1, 2, 3} {
		eps[i].Weight = w
		cands = append(cands, Candidate{Endpoint: &eps[i], State: newEndpointState()})
	}
	if diff := cmp.Diff(schedule(cands), []uint32{2, 1, 2, 0, 1, 2}); diff != "" {
		t.Errorf("schedule (-got +want):\n%s", diff)
	}
}

func TestScheduleScaledDown(t *testing.T) {
	// Co-prime large weights whose sum exceeds maxSchedule are scaled down;
	// proportions must stay within 1% of each weight's share.
	weights := []uint32{997, 991, 983, 977, 971, 967, 953, 947, 941, 937,
		929, 919, 911, 907, 887, 883, 881, 877, 863, 859, 2, 1}
	var cands []Candidate
	var total float64
	for i, w := range weights {
		e := ep(fmt.Sprint(i), weight(w))
		cands = append(cands, Candidate{Endpoint: &e, State: newEndpointState()})
		total += float64(w)
	}
	if total <= maxSchedule {
		t.Fatalf("weights sum to %v, want more than maxSchedule %d to test scaling", total, maxSchedule)
	}
	s := schedule(cands)
	if len(s) > maxSchedule+len(weights) {
		t.Errorf("schedule length %d, want at most %d", len(s), maxSchedule+len(weights))
	}
	count := make([]int, len(weights))
	for _, i := range s {
		count[i]++
	}
	for i, w := range weights {
		share, want := float64(count[i])/float64(len(s)), float64(w)/total
		if i < 20 && (share < want*0.99 || share > want*1.01) {
			t.Errorf("endpoint %d (weight %d): share %.5f, want %.5f ±1%%", i, w, share, want)
		}
		if count[i] < 1 {
			t.Errorf("endpoint %d (weight %d) has no slot", i, w)
		}
	}
}

func TestRoundRobinSkipsNotReady(t *testing.T) {
	b := newTestBalancer(t, Config{Policy: PolicyRoundRobin})
	b.apply(snapshot(1, ep("a"), ep("b", state(discovery.StateDraining)), ep("c", state(discovery.StateNotReady)), ep("d")))
	if diff := cmp.Diff(pickIDs(t, b, 100), []string{"a", "d"}); diff != "" {
		t.Errorf("picked endpoints (-got +want):\n%s", diff)
	}
}
