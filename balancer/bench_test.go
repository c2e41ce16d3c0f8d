package balancer

import (
	"fmt"
	"testing"

	"github.com/outrigger-mesh/outrigger/discovery"
	"github.com/outrigger-mesh/outrigger/resilience"
)

// TestPickDoesNotAllocate holds Pick and Done to zero allocations, with the
// PickInfo on the caller's stack, for every policy and path (full scan,
// power of two choices, weighted, with Tried).
func TestPickDoesNotAllocate(t *testing.T) {
	for _, policy := range policies {
		for _, n := range []int{3, 9, 100} {
			for _, weighted := range []bool{false, true} {
				for _, tried := range []bool{false, true} {
					name := fmt.Sprintf("%s/%d/weighted=%v/tried=%v", policy, n, weighted, tried)
					t.Run(name, func(t *testing.T) {
						bal := newTestBalancer(t, Config{Policy: policy})
						bal.apply(snapshot(1, benchEndpoints(n, weighted)...))
						addr := bal.Status().Endpoints[1].Addr
						allocs := testing.AllocsPerRun(1000, func() {
							var info PickInfo
							if tried {
								info.AddTried(addr)
							}
							res, err := bal.Pick(&info)
							if err != nil {
								panic(err)
							}
							res.Done(DoneInfo{})
						})
						if allocs != 0 {
							t.Errorf("Pick and Done: %v allocations per run, want 0", allocs)
						}
					})
				}
			}
		}
	}
	t.Run("no endpoints", func(t *testing.T) {
		bal := newTestBalancer(t, Config{})
		allocs := testing.AllocsPerRun(1000, func() {
			var info PickInfo
			if _, err := bal.Pick(&info); err == nil {
				panic("picked with no endpoints")
			}
		})
		if allocs != 0 {
			t.Errorf("Pick without endpoints: %v allocations per run, want 0", allocs)
		}
	})
}

// benchEndpoints returns n endpoints; weighted ones cycle through 1, 2, 5.
func benchEndpoints(n int, weighted bool) []discovery.Endpoint {
	eps := manyEndpoints(n)
	if weighted {
		for i := range eps {
			eps[i].Weight = []uint32{1, 2, 5}[i%3]
		}
	}
	return eps
}

func BenchmarkPickRoundRobin(b *testing.B) { benchmarkPick(b, PolicyRoundRobin) }
func BenchmarkPickLeastConn(b *testing.B)  { benchmarkPick(b, PolicyLeastConn) }

// benchmarkPick measures one Pick plus its Done, serially and from
// GOMAXPROCS goroutines at once.
func benchmarkPick(b *testing.B, policy string) { benchmarkPickWith(b, Config{Policy: policy}) }

func benchmarkPickWith(b *testing.B, cfg Config) {
	for _, c := range []struct {
		n        int
		weighted bool
	}{{3, false}, {100, false}, {100, true}} {
		bal := newTestBalancer(b, cfg)
		bal.apply(snapshot(1, benchEndpoints(c.n, c.weighted)...))
		name := fmt.Sprintf("endpoints=%d", c.n)
		if c.weighted {
			name += "/weighted"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			var info PickInfo
			for b.Loop() {
				res, err := bal.Pick(&info)
				if err != nil {
					b.Fatal(err)
				}
				res.Done(DoneInfo{})
			}
		})
		b.Run(name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				var info PickInfo
				for pb.Next() {
					res, err := bal.Pick(&info)
					if err != nil {
						panic(err)
					}
					res.Done(DoneInfo{})
				}
			})
		})
	}
}

// resilienceOn turns on every per-endpoint feature, with thresholds no
// benchmark or allocation test reaches.
func resilienceOn(policy string) Config {
	return Config{Policy: policy,
		Breaker: &resilience.BreakerConfig{ConsecutiveFailures: 1 << 30},
		Outlier: &resilience.OutlierConfig{Consecutive5xx: 1 << 30, ConsecutiveLocalOriginFailures: 1 << 30},
		Health:  &resilience.HealthConfig{Protocol: resilience.HealthTCP},
	}
}

// TestPickDoesNotAllocateWithResilience holds Pick to zero allocations with
// breakers, outlier detection and health checks on, and Done of a success
// too in consecutive-failures mode. A failure-ratio breaker's Done costs
// gobreaker's one callback allocation (see resilience.Breaker).
func TestPickDoesNotAllocateWithResilience(t *testing.T) {
	for _, policy := range policies {
		for _, n := range []int{3, 100} {
			t.Run(fmt.Sprintf("%s/%d", policy, n), func(t *testing.T) {
				bal := newTestBalancer(t, resilienceOn(policy))
				bal.apply(snapshot(1, benchEndpoints(n, false)...))
				held := make([]PickResult, 0, 2000)
				allocs := testing.AllocsPerRun(1000, func() {
					var info PickInfo
					res, err := bal.Pick(&info)
					if err != nil {
						panic(err)
					}
					held = append(held, res)
				})
				if allocs != 0 {
					t.Errorf("Pick: %v allocations per run, want 0", allocs)
				}
				for _, r := range held {
					r.Done(DoneInfo{})
				}
				withDone := testing.AllocsPerRun(1000, func() {
					res, _ := bal.Pick(nil)
					res.Done(DoneInfo{Outcome: resilience.Response(200)})
				})
				if withDone != 0 {
					t.Errorf("Pick and a successful Done: %v allocations per run, want 0", withDone)
				}
			})
		}
	}
	ratio := resilienceOn(PolicyRoundRobin)
	ratio.Breaker = &resilience.BreakerConfig{FailureRatio: 1, MinRequests: 1 << 30}
	bal := newTestBalancer(t, ratio)
	bal.apply(snapshot(1, benchEndpoints(3, false)...))
	if allocs := testing.AllocsPerRun(1000, func() {
		res, _ := bal.Pick(nil)
		res.Done(DoneInfo{})
	}); allocs > 1 {
		t.Errorf("Pick and Done with a failure-ratio breaker: %v allocations per run, want at most 1", allocs)
	}
	cfg := resilienceOn(PolicyRoundRobin)
	cfg.Breaker = nil
	bal = newTestBalancer(t, cfg)
	bal.apply(snapshot(1, benchEndpoints(3, false)...))
	if allocs := testing.AllocsPerRun(1000, func() {
		res, _ := bal.Pick(nil)
		res.Done(DoneInfo{Outcome: resilience.Response(503)})
	}); allocs != 0 {
		t.Errorf("Pick and Done with outlier detection: %v allocations per run, want 0", allocs)
	}
}

func BenchmarkPickResilienceRoundRobin(b *testing.B) {
	benchmarkPickWith(b, resilienceOn(PolicyRoundRobin))
}
func BenchmarkPickResilienceLeastConn(b *testing.B) {
	benchmarkPickWith(b, resilienceOn(PolicyLeastConn))
}
