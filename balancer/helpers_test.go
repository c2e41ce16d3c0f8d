package balancer

import (
	"context"
	"fmt"
	"hash/fnv"
	"net/netip"
	"sort"
	"sync"
	"testing"

	"github.com/outrigger-mesh/outrigger/discovery"
)

const testService = "orders.shop"

// fakeWatcher is a Watcher the test drives with push. It keeps the
// catalog's contract: capacity 1, current snapshot at once, latest wins,
// closed when ctx ends.
type fakeWatcher struct {
	mu     sync.Mutex
	latest *discovery.Snapshot
	ch     chan *discovery.Snapshot
	// closeNow makes Watch return an already closed channel.
	closeNow bool
}

func (w *fakeWatcher) Watch(ctx context.Context, service string) <-chan *discovery.Snapshot {
	w.mu.Lock()
	defer w.mu.Unlock()
	ch := make(chan *discovery.Snapshot, 1)
	if w.closeNow {
		close(ch)
		return ch
	}
	if w.latest != nil {
		ch <- w.latest
	}
	w.ch = ch
	go func() {
		<-ctx.Done()
		w.mu.Lock()
		defer w.mu.Unlock()
		close(ch)
		if w.ch == ch {
			w.ch = nil
		}
	}()
	return ch
}

func (w *fakeWatcher) push(s *discovery.Snapshot) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.latest = s
	if w.ch != nil {
		select {
		case <-w.ch: // replaced by the newer one, as the catalog does
		default:
		}
		w.ch <- s
	}
}

// ep builds a ready endpoint of weight 1 with an address derived from id.
func ep(id string, opts ...func(*discovery.Endpoint)) discovery.Endpoint {
	h := fnv.New32a()
	h.Write([]byte(id))
	v := h.Sum32()
	e := discovery.Endpoint{
		ID:     id,
		Addr:   netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(v >> 16), byte(v >> 8), byte(v)}), 8080),
		Weight: 1,
		Source: "file",
	}
	for _, o := range opts {
		o(&e)
	}
	return e
}

func weight(w uint32) func(*discovery.Endpoint) {
	return func(e *discovery.Endpoint) { e.Weight = w }
}

func state(s discovery.State) func(*discovery.Endpoint) {
	return func(e *discovery.Endpoint) { e.State = s }
}

func priority(p int) func(*discovery.Endpoint) {
	return func(e *discovery.Endpoint) { e.Priority = p }
}

func locality(cluster, zone string) func(*discovery.Endpoint) {
	return func(e *discovery.Endpoint) { e.Locality = discovery.Locality{Cluster: cluster, Zone: zone} }
}

// manyEndpoints returns n ready endpoints "e00", "e01", ... of weight 1.
func manyEndpoints(n int) []discovery.Endpoint {
	eps := make([]discovery.Endpoint, n)
	for i := range eps {
		eps[i] = ep(fmt.Sprintf("e%02d", i))
	}
	return eps
}

func snapshot(version uint64, eps ...discovery.Endpoint) *discovery.Snapshot {
	return &discovery.Snapshot{Service: testService, Version: version, Endpoints: eps, Known: true, Answered: true}
}

// newTestBalancer returns a Balancer whose snapshots the test applies
// directly, standing in for Run.
func newTestBalancer(t testing.TB, cfg Config) *Balancer {
	t.Helper()
	if cfg.Service == "" {
		cfg.Service = testService
	}
	b, err := New(cfg, Options{Watcher: &fakeWatcher{}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pickCounts makes n picks, calling Done at once, and counts them by ID.
func pickCounts(t testing.TB, b *Balancer, n int, info *PickInfo) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		res, err := b.Pick(info)
		if err != nil {
			t.Fatalf("Pick: %v", err)
		}
		got[res.Endpoint.ID]++
		res.Done(DoneInfo{})
	}
	return got
}

// pickIDs returns the sorted distinct IDs of n picks (Done called at once).
func pickIDs(t testing.TB, b *Balancer, n int) []string {
	t.Helper()
	var ids []string
	for id := range pickCounts(t, b, n, nil) {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// inFlight returns every endpoint's in-flight count from Status, by ID.
func inFlight(b *Balancer) map[string]int64 {
	m := map[string]int64{}
	for _, e := range b.Status().Endpoints {
		m[e.ID] = e.InFlight
	}
	return m
}

var policies = []string{PolicyRoundRobin, PolicyLeastConn}
