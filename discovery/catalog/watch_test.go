package catalog

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/google/go-cmp/cmp"

	"github.com/outrigger-mesh/outrigger/discovery"
)

// pending reports the snapshot waiting in ch, if any, without blocking.
func pending(ch <-chan *discovery.Snapshot) (*discovery.Snapshot, bool) {
	select {
	case s, ok := <-ch:
		return s, ok
	default:
		return nil, false
	}
}

// A write wakes only the watchers of the service whose merged view it
// changed, and an unchanged update wakes nobody.
func TestWatchWakesOnlyOnChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCatalog(t, reg{"a", 0}, reg{"b", 1})
		c.Synced("a")
		c.Synced("b")
		const svc, other = "orders.shop", "users.shop"
		ch := c.Watch(t.Context(), svc)
		if first := <-ch; first.Known || first.Service != svc {
			t.Fatalf("first snapshot %+v, want unknown %s", first, svc)
		}
		otherCh := c.Watch(t.Context(), other)
		<-otherCh

		e1, e2 := ep("1", "10.0.0.1:80"), ep("2", "10.0.0.2:80")
		mustApply(t, c, discovery.Update{Source: "a", Service: svc, Endpoints: eps(e1, e2)})
		got := <-ch
		if want := c.Snapshot(svc); got != want {
			t.Fatalf("watcher got version %d, want the current %d", got.Version, want.Version)
		}

		steps := []struct {
			name        string
			update      discovery.Update
			wantStored  bool   // the source's view row was written
			wantWakeups uint64 // of all watch goroutines
			wantChange  bool   // a new snapshot of svc
		}{{
			name:        "same update again",
			update:      discovery.Update{Source: "a", Service: svc, Endpoints: eps(e1, e2)},
			wantWakeups: 0,
		}, {
			name:        "same endpoints in another order",
			update:      discovery.Update{Source: "a", Service: svc, Endpoints: eps(e2, e1)},
			wantWakeups: 0,
		}, {
			name:        "b reports an address a already wins",
			update:      discovery.Update{Source: "b", Service: svc, Endpoints: eps(ep("x", "10.0.0.1:80"))},
			wantStored:  true,
			wantWakeups: 0,
		}, {
			name:        "a change to another service",
			update:      discovery.Update{Source: "a", Service: other, Endpoints: eps(e1)},
			wantStored:  true,
			wantWakeups: 1,
		}, {
			name:        "a write to a service nobody watches",
			update:      discovery.Update{Source: "a", Service: "quiet.shop", Endpoints: eps(e1)},
			wantStored:  true,
			wantWakeups: 0,
		}, {
			name:        "a real change",
			update:      discovery.Update{Source: "a", Service: svc, Endpoints: eps(e1)},
			wantStored:  true,
			wantWakeups: 1,
			wantChange:  true,
		}}
		for _, st := range steps {
			before, last := c.wakeups.Load(), c.Snapshot(svc)
			viewWatch, _, err := c.db.Txn(false).FirstWatch(tableView, indexID, st.update.Service, st.update.Source)
			if err != nil {
				t.Fatal(err)
			}
			mustApply(t, c, st.update)
			synctest.Wait()
			select {
			case <-viewWatch:
				if !st.wantStored {
					t.Errorf("%s: the view row was written, want no commit", st.name)
				}
			default:
				if st.wantStored {
					t.Errorf("%s: the view row was not written", st.name)
				}
			}
			if n := c.wakeups.Load() - before; n != st.wantWakeups {
				t.Errorf("%s: %d watcher wake-ups, want %d", st.name, n, st.wantWakeups)
			}
			now := c.Snapshot(svc)
			got, ok := pending(ch)
			switch {
			case !st.wantChange && (ok || now != last):
				t.Errorf("%s: watcher got %+v, version %d -> %d; want nothing", st.name, got, last.Version, now.Version)
			case st.wantChange && (!ok || got != now || got.Version <= last.Version):
				t.Errorf("%s: watcher got %+v, want version %d > %d", st.name, got, now.Version, last.Version)
			}
			pending(otherCh)
		}
	})
}

// A slow reader gets only the newest snapshot of a burst.
func TestWatchCoalesces(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCatalog(t, reg{"a", 0})
		ch := c.Watch(t.Context(), "orders.shop")
		for i := range 5 {
			e := ep("1", "10.0.0.1:80")
			e.Weight = uint32(i + 1)
			mustApply(t, c, discovery.Update{Source: "a", Service: "orders.shop", Endpoints: eps(e)})
			synctest.Wait() // let the watcher deliver into the full channel
		}
		got := <-ch
		if want := c.Snapshot("orders.shop"); got != want {
			t.Errorf("got version %d, want the newest %d", got.Version, want.Version)
		}
		if s, ok := pending(ch); ok {
			t.Errorf("a second snapshot was waiting: version %d", s.Version)
		}
	})
}

func TestWatchCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCatalog(t, reg{"a", 0})
		ctx, cancel := context.WithCancel(t.Context())
		ch := c.Watch(ctx, "orders.shop")
		<-ch
		cancel()
		synctest.Wait()
		if s, ok := pending(ch); ok {
			t.Fatalf("channel open after cancel, holding %+v", s)
		}

		// An ended ctx still gets the current snapshot, then the close.
		ch = c.Watch(ctx, "orders.shop")
		if s := <-ch; s == nil || s.Service != "orders.shop" {
			t.Fatalf("first value %+v, want the current snapshot", s)
		}
		if _, ok := <-ch; ok {
			t.Fatal("channel not closed after the first value")
		}
	})
}

// Four sources apply concurrently while eight watchers read; every watcher
// sees strictly increasing versions and ends on the final snapshot.
func TestConcurrentApplyAndWatch(t *testing.T) {
	const (
		sources  = 4
		watchers = 8
		rounds   = 300
	)
	services := []string{"orders.shop", "users.shop"}
	c := New(Options{})
	for i := range sources {
		if err := c.RegisterSource(fmt.Sprintf("s%d", i), i); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	type watcher struct {
		service string
		ch      <-chan *discovery.Snapshot
		last    *discovery.Snapshot
	}
	ws := make([]*watcher, watchers)
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for i := range ws {
		w := &watcher{service: services[i%len(services)]}
		w.ch = c.Watch(ctx, w.service)
		w.last = <-w.ch
		ws[i] = w
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				case s := <-w.ch:
					if s.Version <= w.last.Version {
						t.Errorf("%s: version %d after %d", w.service, s.Version, w.last.Version)
					}
					w.last = s
				}
			}
		})
	}

	// Source i's final view of each service: one endpoint of its own and
	// one address shared by all sources, which s0 (priority 0) wins.
	final := func(i int) []discovery.Endpoint {
		own := ep("own", fmt.Sprintf("10.0.%d.1:80", i))
		own.Weight = 5
		return eps(own, ep("shared", "10.9.9.9:80"))
	}
	var writers sync.WaitGroup
	for i := range sources {
		writers.Go(func() {
			src := fmt.Sprintf("s%d", i)
			for r := range rounds {
				u := discovery.Update{Source: src, Service: services[r%len(services)]}
				switch r % 5 {
				case 0:
					u.Deleted = true
				default:
					e := ep(fmt.Sprint(r%7), netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i), 0, byte(r % 7)}), 80).String())
					e.Weight = uint32(r%3 + 1)
					u.Endpoints = eps(e)
				}
				if err := c.Apply(u); err != nil {
					t.Error(err)
				}
			}
			for _, s := range services {
				if err := c.Apply(discovery.Update{Source: src, Service: s, Endpoints: final(i)}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	writers.Wait()
	close(stop)
	readers.Wait()

	for _, svc := range services {
		want := &discovery.Snapshot{Service: svc, Known: true, Answered: true,
			Endpoints: eps(pub("s0", 0, final(0)[0]), pub("s0", 0, final(0)[1]))}
		for i := 1; i < sources; i++ {
			want.Endpoints = append(want.Endpoints, pub(fmt.Sprintf("s%d", i), i, final(i)[0]))
		}
		if diff := cmp.Diff(c.Snapshot(svc), want, cmpSnap); diff != "" {
			t.Errorf("%s: final snapshot (-got +want):\n%s", svc, diff)
		}
	}
	for _, w := range ws {
		want := c.Snapshot(w.service)
		for w.last.Version < want.Version { // the final snapshot must arrive
			s := <-w.ch
			if s.Version <= w.last.Version {
				t.Errorf("%s: version %d after %d", w.service, s.Version, w.last.Version)
			}
			w.last = s
		}
		if w.last != want {
			t.Errorf("%s: watcher ended on version %d, want %d", w.service, w.last.Version, want.Version)
		}
	}
	cancel()
	for _, w := range ws {
		for range w.ch { // closed once the watch goroutine is gone
		}
	}
}
