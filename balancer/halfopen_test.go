package balancer

import (
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/outrigger-mesh/outrigger/discovery"
	"github.com/outrigger-mesh/outrigger/resilience"
)

// TestHalfOpenAloneInTierFailsOver: the only endpoint of the local zone
// trips its breaker; once it is half-open with its probe out, picks must
// still fail over to the healthy endpoints of the next zone, and they
// return to the local zone only when the probe closes the breaker.
func TestHalfOpenAloneInTierFailsOver(t *testing.T) {
	for _, policy := range policies {
		t.Run(policy, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b, settle := running(t, Config{Policy: policy,
					Locality: discovery.Locality{Cluster: "east", Zone: "z1"},
					Breaker:  &resilience.BreakerConfig{ConsecutiveFailures: 1, OpenTime: 10 * time.Second}},
					snapshot(1, ep("local", locality("east", "z1")),
						ep("remote1", locality("east", "z2")), ep("remote2", locality("east", "z2"))))
				if got := pickAll(t, b, 1, func(string) DoneInfo { return DoneInfo{Err: errors.New("boom")} }); got["local"] != 1 {
					t.Fatalf("first pick: %v, want local", got)
				}
				settle()
				if got := pickAll(t, b, 10, succeed); got["local"] != 0 {
					t.Fatalf("picks while local is open: %v, want none to local", got)
				}
				time.Sleep(10*time.Second + time.Nanosecond)
				settle()
				// Half-open: local takes its one probe, the rest fail over.
				var probe PickResult
				got := map[string]int{}
				for range 20 {
					res, err := b.Pick(nil)
					if err != nil {
						t.Fatalf("Pick while local is half-open: %v (remote endpoints are healthy)", err)
					}
					got[res.Endpoint.ID]++
					if res.Endpoint.ID == "local" {
						probe = res
						continue
					}
					res.Done(DoneInfo{})
				}
				if got["local"] != 1 || got["remote1"]+got["remote2"] != 19 {
					t.Fatalf("picks while local is half-open: %v, want 1 probe to local and 19 to the remotes", got)
				}
				probe.Done(DoneInfo{})
				settle()
				if s := breakerOf(b, "local"); s.State != resilience.BreakerClosed {
					t.Fatalf("local after its probe succeeded: %+v, want closed", s)
				}
				if got := pickAll(t, b, 10, succeed); got["local"] != 10 {
					t.Errorf("picks after local closed: %v, want all to local", got)
				}
			})
		})
	}
}

// TestHalfOpenProbeOutKeepsBalance: while one endpoint's breaker is
// half-open with its probe out, the picks it would have had spread over
// the others by the policy's own rule, not onto its neighbour.
func TestHalfOpenProbeOutKeepsBalance(t *testing.T) {
	const picks = 300
	for _, tc := range []struct {
		policy string
		n      int // endpoints besides "a"; above fullScanMax least_conn uses two random choices
		hold   bool
		slack  int // allowed distance from an even share
	}{
		// Held picks: least_conn's in-flight counts keep the others even.
		{PolicyLeastConn, 3, true, 1},
		{PolicyLeastConn, 9, true, picks / 9 / 2},
		// Round robin: a's quarter is redrawn at random; the neighbour
		// would get 150 of 300 without the redraw, the others 75 each.
		{PolicyRoundRobin, 3, false, 25},
	} {
		t.Run(fmt.Sprintf("%s/%d", tc.policy, tc.n), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				eps := []discovery.Endpoint{ep("a")}
				for i := range tc.n {
					eps = append(eps, ep(fmt.Sprintf("o%d", i)))
				}
				b, settle := running(t, Config{Policy: tc.policy,
					Breaker: &resilience.BreakerConfig{ConsecutiveFailures: 1, OpenTime: 10 * time.Second}},
					snapshot(1, eps...))
				for tripped := false; !tripped; {
					tripped = pickAll(t, b, 1, func(id string) DoneInfo {
						if id == "a" {
							return DoneInfo{Err: errors.New("boom")}
						}
						return DoneInfo{}
					})["a"] == 1
				}
				settle()
				time.Sleep(10*time.Second + time.Nanosecond)
				settle()
				var probe PickResult
				for probe.Done == nil {
					res, err := b.Pick(nil)
					if err != nil {
						t.Fatal(err)
					}
					if res.Endpoint.ID == "a" {
						probe = res
					} else {
						res.Done(DoneInfo{})
					}
				}
				got := map[string]int{}
				var held []PickResult
				for range picks {
					res, err := b.Pick(nil)
					if err != nil {
						t.Fatal(err)
					}
					got[res.Endpoint.ID]++
					if tc.hold {
						held = append(held, res)
					} else {
						res.Done(DoneInfo{})
					}
				}
				want := picks / tc.n
				for _, e := range eps[1:] {
					if d := got[e.ID] - want; d < -tc.slack || d > tc.slack {
						t.Errorf("%d picks while a's probe is out: %v; want %d±%d each for the others", picks, got, want, tc.slack)
						break
					}
				}
				if got["a"] != 0 {
					t.Errorf("a got %d picks beside its probe", got["a"])
				}
				for _, r := range held {
					r.Done(DoneInfo{})
				}
				probe.Done(DoneInfo{})
			})
		})
	}
}
