package balancer

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/outrigger-mesh/outrigger/discovery"
	"go.uber.org/goleak"
)

func TestRunAppliesSnapshots(t *testing.T) {
	unanswered := &discovery.Snapshot{Service: testService, Version: 1}
	tests := []struct {
		name string
		push []*discovery.Snapshot // pushed back to back; the catalog coalesces, so only the last may be seen
		// want after the pushes settle
		version uint64
		ready   bool
		picked  []string // nil: ErrNoEndpoints
	}{
		{"not answered yet", []*discovery.Snapshot{unanswered}, 1, false, nil},
		{"answered, no endpoints", []*discovery.Snapshot{snapshot(2)}, 2, true, nil},
		{"endpoints arrive", []*discovery.Snapshot{snapshot(3, ep("a"))}, 3, true, []string{"a"}},
		{"burst: latest wins", []*discovery.Snapshot{snapshot(4, ep("b")), snapshot(5, ep("c")), snapshot(6, ep("c"), ep("d"))},
			6, true, []string{"c", "d"}},
		{"nil snapshot ignored", []*discovery.Snapshot{nil}, 6, true, []string{"c", "d"}},
	}
	synctest.Test(t, func(t *testing.T) {
		w := &fakeWatcher{}
		b, err := New(Config{Service: testService}, Options{Watcher: w})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		ran := make(chan error, 1)
		go func() { ran <- b.Run(ctx) }()
		synctest.Wait()
		if b.Ready() || b.Status().Version != 0 {
			t.Errorf("with no snapshot yet: ready %v, version %d; want false, 0", b.Ready(), b.Status().Version)
		}

		for _, tt := range tests {
			for _, s := range tt.push {
				w.push(s)
			}
			synctest.Wait() // Run has applied everything and waits again
			var picked []string
			if res, err := b.Pick(nil); err == nil {
				res.Done(DoneInfo{})
				picked = pickIDs(t, b, 30)
			} else if !errors.Is(err, ErrNoEndpoints) {
				t.Errorf("%s: Pick: %v", tt.name, err)
			}
			got := struct {
				Version uint64
				Ready   bool
				Picked  []string
			}{b.Status().Version, b.Ready(), picked}
			want := struct {
				Version uint64
				Ready   bool
				Picked  []string
			}{tt.version, tt.ready, tt.picked}
			if diff := cmp.Diff(got, want); diff != "" {
				t.Errorf("%s (-got +want):\n%s", tt.name, diff)
			}
		}

		if err := b.Run(ctx); err == nil || !strings.Contains(err.Error(), "already running") {
			t.Errorf("second concurrent Run: err = %v, want already running", err)
		}
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("Run after cancel = %v, want nil", err)
		}
		// The last picker stays published while the data plane drains.
		if _, err := b.Pick(nil); err != nil {
			t.Errorf("Pick after Run returned: %v", err)
		}
	})
}

func TestRunExitsOnCancel(t *testing.T) {
	defer goleak.VerifyNone(t)
	w := &fakeWatcher{}
	w.push(snapshot(1, ep("a")))
	b, err := New(Config{Service: testService}, Options{Watcher: w})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- b.Run(ctx) }()
	w.push(snapshot(2, ep("a"), ep("b")))
	cancel()
	select {
	case err := <-ran:
		if err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	case <-time.After(10 * time.Second): // a safety net, not a timing assertion
		t.Fatal("Run did not return after cancel")
	}
}

func TestRunWatchClosedEarly(t *testing.T) {
	b, err := New(Config{Service: testService}, Options{Watcher: &fakeWatcher{closeNow: true}})
	if err != nil {
		t.Fatal(err)
	}
	err = b.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), `service "orders.shop": watch channel closed`) {
		t.Errorf("Run with a closed watch = %v, want an error naming the service", err)
	}
}

// TestConcurrentPickDone swaps snapshots while 8 goroutines pick and finish
// connections, some held across swaps; run it with -race. Every counter of
// every state ever created must end at 0, and the pick counters must add up
// to the picks made.
func TestConcurrentPickDone(t *testing.T) {
	sets := [][]discovery.Endpoint{
		{ep("a"), ep("b"), ep("c")},
		{ep("b", weight(3)), ep("c"), ep("d")},
		{ep("a", state(discovery.StateNotReady)), ep("b", state(discovery.StateDraining)), ep("e", priority(1))},
		{},
		manyEndpoints(20), // least_conn takes the power-of-two path
		{ep("a"), ep("e00", weight(5)), ep("e01")},
	}
	for _, policy := range policies {
		t.Run(policy, func(t *testing.T) {
			b := newTestBalancer(t, Config{Policy: policy})
			b.apply(snapshot(1, sets[0]...))
			seen := map[*EndpointState]bool{}
			record := func() {
				for _, s := range b.states {
					seen[s] = true
				}
			}
			record()

			const workers = 8
			var wg sync.WaitGroup
			stop := make(chan struct{})
			var made atomic.Uint64 // successful picks, all workers
			for range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var held [3]PickResult
					n := 0
					for i := 0; ; i++ {
						select {
						case <-stop:
							for _, r := range held[:n] {
								r.Done(DoneInfo{})
							}
							return
						default:
						}
						var info PickInfo
						if i%5 == 0 {
							info.AddTried(ep("b").Addr)
						}
						res, err := b.Pick(&info)
						if err != nil {
							continue
						}
						made.Add(1)
						if n == len(held) { // finish the oldest, keep the newest open
							held[0].Done(DoneInfo{})
							copy(held[:], held[1:])
							n--
						}
						held[n] = res
						n++
					}
				}()
			}
			// Keep swapping until the workers have picked a good deal, so
			// that picks and swaps overlap however the goroutines are
			// scheduled.
			for v := 0; v < 300 || made.Load() < 20_000; v++ {
				b.apply(snapshot(uint64(v+2), sets[v%len(sets)]...))
				record()
			}
			close(stop)
			wg.Wait()

			var total uint64
			for s := range seen {
				if n := s.InFlight(); n != 0 {
					t.Errorf("a state has %d in flight after every Done, want 0", n)
				}
				total += s.Picks()
			}
			if want := made.Load(); total != want {
				t.Errorf("pick counters add up to %d, want %d", total, want)
			}
		})
	}
}
