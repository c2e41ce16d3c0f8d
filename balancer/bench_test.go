package balancer

import (
	"fmt"
	"testing"

	"github.com/outrigger-mesh/outrigger/discovery"
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
func benchmarkPick(b *testing.B, policy string) {
	for _, c := range []struct {
		n        int
		weighted bool
	}{{3, false}, {100, false}, {100, true}} {
		bal := newTestBalancer(b, Config{Policy: policy})
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
