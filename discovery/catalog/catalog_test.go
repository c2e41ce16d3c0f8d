package catalog

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.uber.org/goleak"

	"github.com/outrigger-mesh/outrigger/discovery"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// cmpSnap compares snapshots by content; tests check Version separately.
var cmpSnap = cmp.Options{
	cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b }),
	cmpopts.IgnoreFields(discovery.Snapshot{}, "Version"),
	cmpopts.EquateEmpty(),
}

type reg struct {
	name string
	prio int
}

func newCatalog(t testing.TB, sources ...reg) *Catalog {
	t.Helper()
	c := New(Options{})
	for _, s := range sources {
		if err := c.RegisterSource(s.name, s.prio); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// ep is an endpoint as a source reports it.
func ep(id, addr string) discovery.Endpoint {
	return discovery.Endpoint{ID: id, Addr: netip.MustParseAddrPort(addr), Weight: 1}
}

// pub is e as the catalog publishes it for source src of priority prio.
func pub(src string, prio int, e discovery.Endpoint) discovery.Endpoint {
	e.ID, e.Source, e.Priority = src+"/"+e.ID, src, prio
	return e
}

func eps(e ...discovery.Endpoint) []discovery.Endpoint { return e }

func mustApply(t testing.TB, c *Catalog, u discovery.Update) {
	t.Helper()
	if err := c.Apply(u); err != nil {
		t.Fatal(err)
	}
}

func TestMerge(t *testing.T) {
	rich := ep("svc-1", "10.0.0.7:8080")
	rich.Weight = 7
	rich.Locality = discovery.Locality{Cluster: "dc1", Zone: "z1"}
	rich.State = discovery.StateDraining
	rich.SPIFFEID = "spiffe://example.org/ns/shop/sa/orders"
	rich.Metadata = map[string]string{"version": "v2"}
	claimed := rich
	claimed.Source, claimed.Priority = "k8s", -5 // the catalog sets these, not the source

	weighted := ep("pod", "10.0.0.1:80")
	weighted.Weight = 2

	tests := []struct {
		name    string
		updates []discovery.Update
		want    discovery.Snapshot
	}{{
		name: "one source, sorted by id",
		updates: []discovery.Update{
			{Source: "k8s", Endpoints: eps(ep("b", "10.0.0.2:80"), ep("a", "10.0.0.1:80"))},
		},
		want: discovery.Snapshot{Known: true, Endpoints: eps(
			pub("k8s", 0, ep("a", "10.0.0.1:80")),
			pub("k8s", 0, ep("b", "10.0.0.2:80")),
		)},
	}, {
		name: "sorted by priority, then source, then id",
		updates: []discovery.Update{
			{Source: "consul", Endpoints: eps(ep("a", "10.0.0.1:80"))},
			{Source: "k8s", Endpoints: eps(ep("z", "10.0.0.9:80"), ep("y", "10.0.0.8:80"))},
			{Source: "file", Endpoints: eps(ep("m", "10.0.0.5:80"))},
		},
		want: discovery.Snapshot{Known: true, Answered: true, Endpoints: eps(
			pub("file", 0, ep("m", "10.0.0.5:80")),
			pub("k8s", 0, ep("y", "10.0.0.8:80")),
			pub("k8s", 0, ep("z", "10.0.0.9:80")),
			pub("consul", 1, ep("a", "10.0.0.1:80")),
		)},
	}, {
		name: "same address: lower priority wins",
		updates: []discovery.Update{
			{Source: "consul", Endpoints: eps(ep("svc", "10.0.0.1:80"), ep("other", "10.0.0.2:80"))},
			{Source: "k8s", Endpoints: eps(ep("pod", "10.0.0.1:80"))},
		},
		want: discovery.Snapshot{Known: true, Endpoints: eps(
			pub("k8s", 0, ep("pod", "10.0.0.1:80")),
			pub("consul", 1, ep("other", "10.0.0.2:80")),
		)},
	}, {
		name: "same address, same priority: source name order wins",
		updates: []discovery.Update{
			{Source: "k8s", Endpoints: eps(weighted)},
			{Source: "file", Endpoints: eps(ep("host", "10.0.0.1:80"))},
		},
		want: discovery.Snapshot{Known: true, Endpoints: eps(
			pub("file", 0, ep("host", "10.0.0.1:80")),
		)},
	}, {
		name: "same address within one source: both stay",
		updates: []discovery.Update{
			{Source: "k8s", Endpoints: eps(ep("a", "10.0.0.1:80"), ep("b", "10.0.0.1:80"))},
		},
		want: discovery.Snapshot{Known: true, Endpoints: eps(
			pub("k8s", 0, ep("a", "10.0.0.1:80")),
			pub("k8s", 0, ep("b", "10.0.0.1:80")),
		)},
	}, {
		name: "fields kept, source and priority from the registration",
		updates: []discovery.Update{
			{Source: "consul", Endpoints: eps(claimed)},
		},
		want: discovery.Snapshot{Known: true, Endpoints: eps(pub("consul", 1, rich))},
	}, {
		name: "a source with zero endpoints makes the service known",
		updates: []discovery.Update{
			{Source: "consul", Endpoints: nil},
		},
		want: discovery.Snapshot{Known: true},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCatalog(t, reg{"k8s", 0}, reg{"consul", 1}, reg{"file", 0})
			for _, u := range tt.updates {
				u.Service = "orders.shop"
				mustApply(t, c, u)
			}
			want := tt.want
			want.Service = "orders.shop"
			if diff := cmp.Diff(c.Snapshot("orders.shop"), &want, cmpSnap); diff != "" {
				t.Errorf("snapshot (-got +want):\n%s", diff)
			}
		})
	}
}

func TestDeletedVersusEmpty(t *testing.T) {
	c := newCatalog(t, reg{"a", 0}, reg{"b", 1})
	c.Synced("a")
	c.Synced("b")
	const svc = "orders.shop"
	e1, e2 := ep("1", "10.0.0.1:80"), ep("2", "10.0.0.2:80")

	steps := []struct {
		name        string
		update      discovery.Update
		want        discovery.Snapshot
		wantNewVer  bool
		wantService []string
	}{{
		name:        "a reports one endpoint",
		update:      discovery.Update{Source: "a", Endpoints: eps(e1)},
		want:        discovery.Snapshot{Known: true, Answered: true, Endpoints: eps(pub("a", 0, e1))},
		wantNewVer:  true,
		wantService: []string{svc},
	}, {
		name:        "a reports zero endpoints: still known",
		update:      discovery.Update{Source: "a", Endpoints: []discovery.Endpoint{}},
		want:        discovery.Snapshot{Known: true, Answered: true},
		wantNewVer:  true,
		wantService: []string{svc},
	}, {
		name:        "b reports one endpoint",
		update:      discovery.Update{Source: "b", Endpoints: eps(e2)},
		want:        discovery.Snapshot{Known: true, Answered: true, Endpoints: eps(pub("b", 1, e2))},
		wantNewVer:  true,
		wantService: []string{svc},
	}, {
		name:        "a deletes: b still has it",
		update:      discovery.Update{Source: "a", Deleted: true},
		want:        discovery.Snapshot{Known: true, Answered: true, Endpoints: eps(pub("b", 1, e2))},
		wantNewVer:  false, // a's view had no endpoints: the merged view is the same
		wantService: []string{svc},
	}, {
		name:        "b deletes: unknown",
		update:      discovery.Update{Source: "b", Deleted: true, Endpoints: eps(e2)}, // endpoints ignored
		want:        discovery.Snapshot{Known: false, Answered: true},
		wantNewVer:  true,
		wantService: nil,
	}, {
		name:        "b deletes again: nothing changes",
		update:      discovery.Update{Source: "b", Deleted: true},
		want:        discovery.Snapshot{Known: false, Answered: true},
		wantNewVer:  false,
		wantService: nil,
	}, {
		name:        "a reports it again",
		update:      discovery.Update{Source: "a", Endpoints: eps(e1)},
		want:        discovery.Snapshot{Known: true, Answered: true, Endpoints: eps(pub("a", 0, e1))},
		wantNewVer:  true,
		wantService: []string{svc},
	}}
	for _, st := range steps {
		before := c.Snapshot(svc).Version
		st.update.Service = svc
		mustApply(t, c, st.update)
		got := c.Snapshot(svc)
		want := st.want
		want.Service = svc
		if diff := cmp.Diff(got, &want, cmpSnap); diff != "" {
			t.Errorf("%s: snapshot (-got +want):\n%s", st.name, diff)
		}
		if newVer := got.Version > before; newVer != st.wantNewVer {
			t.Errorf("%s: version %d -> %d, want new version %v", st.name, before, got.Version, st.wantNewVer)
		}
		if diff := cmp.Diff(c.Services(), st.wantService, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s: Services (-got +want):\n%s", st.name, diff)
		}
	}
}

func TestAnswered(t *testing.T) {
	c := newCatalog(t, reg{"a", 0}, reg{"b", 0})
	e := ep("1", "10.0.0.1:80")
	type check struct {
		service       string
		known, answer bool
	}
	steps := []struct {
		name   string
		do     func()
		checks []check
	}{{
		name:   "nothing reported",
		do:     func() {},
		checks: []check{{"x.ns", false, false}, {"y.ns", false, false}},
	}, {
		name:   "a reports x: b has not answered",
		do:     func() { mustApply(t, c, discovery.Update{Source: "a", Service: "x.ns", Endpoints: eps(e)}) },
		checks: []check{{"x.ns", true, false}, {"y.ns", false, false}},
	}, {
		name:   "b syncs: x answered, y still waits for a",
		do:     func() { c.Synced("b") },
		checks: []check{{"x.ns", true, true}, {"y.ns", false, false}},
	}, {
		name:   "a deletes z before its sync: answered, unknown",
		do:     func() { mustApply(t, c, discovery.Update{Source: "a", Service: "z.ns", Deleted: true}) },
		checks: []check{{"z.ns", false, true}, {"y.ns", false, false}},
	}, {
		name:   "a syncs: everything answered",
		do:     func() { c.Synced("a") },
		checks: []check{{"x.ns", true, true}, {"y.ns", false, true}, {"z.ns", false, true}},
	}, {
		name:   "a late source makes x unanswered again",
		do:     func() { _ = c.RegisterSource("c", 2) },
		checks: []check{{"x.ns", true, false}, {"y.ns", false, false}},
	}, {
		name:   "the late source reports x",
		do:     func() { mustApply(t, c, discovery.Update{Source: "c", Service: "x.ns"}) },
		checks: []check{{"x.ns", true, true}, {"y.ns", false, false}},
	}}
	for _, st := range steps {
		st.do()
		for _, ck := range st.checks {
			got := c.Snapshot(ck.service)
			if got.Known != ck.known || got.Answered != ck.answer {
				t.Errorf("%s: %s: Known=%v Answered=%v, want Known=%v Answered=%v",
					st.name, ck.service, got.Known, got.Answered, ck.known, ck.answer)
			}
		}
	}
}

func TestSyncedWakesWatcher(t *testing.T) {
	c := newCatalog(t, reg{"a", 0}, reg{"b", 0})
	mustApply(t, c, discovery.Update{Source: "a", Service: "x.ns", Endpoints: eps(ep("1", "10.0.0.1:80"))})
	ch := c.Watch(t.Context(), "x.ns")
	first := <-ch
	if first.Answered {
		t.Fatalf("Answered before b synced: %+v", first)
	}
	c.Synced("b")
	got := <-ch // the flip is a change: it must arrive
	if !got.Answered || got.Version <= first.Version {
		t.Errorf("after Synced: Answered=%v version %d, want true and > %d", got.Answered, got.Version, first.Version)
	}
	c.Synced("b") // again: harmless
	if v := c.Snapshot("x.ns").Version; v != got.Version {
		t.Errorf("second Synced changed the version from %d to %d", got.Version, v)
	}
}

func TestApplyValidation(t *testing.T) {
	zeroWeight := ep("w", "10.0.0.1:80")
	zeroWeight.Weight = 0
	tests := []struct {
		name    string
		update  discovery.Update
		wantIs  error
		wantSub []string
	}{{
		name:    "unregistered source",
		update:  discovery.Update{Source: "ghost", Service: "orders.shop", Endpoints: eps(ep("1", "10.0.0.1:80"))},
		wantSub: []string{`source "ghost"`, "not registered"},
	}, {
		name:    "no namespace",
		update:  discovery.Update{Source: "a", Service: "orders", Endpoints: eps(ep("1", "10.0.0.1:80"))},
		wantIs:  discovery.ErrInvalidService,
		wantSub: []string{`service "orders"`},
	}, {
		name:   "upper case key",
		update: discovery.Update{Source: "a", Service: "Orders.shop"},
		wantIs: discovery.ErrInvalidService,
	}, {
		name:   "bad key on delete",
		update: discovery.Update{Source: "a", Service: "a.b.c", Deleted: true},
		wantIs: discovery.ErrInvalidService,
	}, {
		name:    "weight zero",
		update:  discovery.Update{Source: "a", Service: "orders.shop", Endpoints: eps(zeroWeight)},
		wantSub: []string{`endpoint "w": weight 0`},
	}, {
		name:    "no address, no id",
		update:  discovery.Update{Source: "a", Service: "orders.shop", Endpoints: []discovery.Endpoint{{Weight: 1}}},
		wantSub: []string{"endpoint has no id", "invalid address"},
	}, {
		name:    "port zero",
		update:  discovery.Update{Source: "a", Service: "orders.shop", Endpoints: eps(ep("p", "10.0.0.1:0"))},
		wantSub: []string{`endpoint "p": invalid address`},
	}, {
		name: "duplicate id",
		update: discovery.Update{Source: "a", Service: "orders.shop", Endpoints: eps(
			ep("1", "10.0.0.1:80"), ep("2", "10.0.0.2:80"), ep("1", "10.0.0.3:80"), ep("1", "10.0.0.4:80"))},
		wantSub: []string{`duplicate endpoint id "1"`},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCatalog(t, reg{"a", 0})
			err := c.Apply(tt.update)
			if err == nil {
				t.Fatal("Apply succeeded, want an error")
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %q is not %v", err, tt.wantIs)
			}
			for _, sub := range append(tt.wantSub, "catalog: ") {
				if !strings.Contains(err.Error(), sub) {
					t.Errorf("error %q does not contain %q", err, sub)
				}
			}
			if n := strings.Count(err.Error(), "duplicate"); n > 1 {
				t.Errorf("error %q reports the duplicate %d times", err, n)
			}
			if got := c.Snapshot("orders.shop"); got.Known || got.Version != 0 || len(c.Services()) != 0 {
				t.Errorf("rejected update left state: %+v, services %v", got, c.Services())
			}
		})
	}
}

func TestRegisterSource(t *testing.T) {
	c := newCatalog(t, reg{"a", 0})
	for _, name := range []string{"a", "", "a/b", "a\x00", "tab\t"} {
		if err := c.RegisterSource(name, 1); err == nil {
			t.Errorf("RegisterSource(%q) succeeded, want an error", name)
		}
	}
	if err := c.RegisterSource("east-1.k8s", -1); err != nil {
		t.Errorf("RegisterSource: %v", err)
	}
}

// The catalog copies what it stores and never writes to the caller's slice.
func TestApplyDoesNotAlias(t *testing.T) {
	c := newCatalog(t, reg{"a", 0})
	in := eps(ep("b", "10.0.0.2:80"), ep("a", "10.0.0.1:80"))
	orig := slices.Clone(in)
	mustApply(t, c, discovery.Update{Source: "a", Service: "orders.shop", Endpoints: in})
	if diff := cmp.Diff(in, orig, cmpSnap); diff != "" {
		t.Errorf("Apply modified its input (-got +want):\n%s", diff)
	}
	before := c.Snapshot("orders.shop")
	want := &discovery.Snapshot{Service: "orders.shop", Known: true, Answered: true, Endpoints: eps(
		pub("a", 0, ep("a", "10.0.0.1:80")), pub("a", 0, ep("b", "10.0.0.2:80")))}
	in[0].Weight, in[1].ID = 99, "changed"

	sorted := eps(ep("a", "10.0.0.1:80"))
	mustApply(t, c, discovery.Update{Source: "a", Service: "users.shop", Endpoints: sorted})
	sorted[0].Weight = 99

	if diff := cmp.Diff(c.Snapshot("orders.shop"), want, cmpSnap); diff != "" {
		t.Errorf("caller's writes reached the catalog (-got +want):\n%s", diff)
	}
	if c.Snapshot("orders.shop") != before {
		t.Error("snapshot pointer changed without an update")
	}
	if got := c.Snapshot("users.shop").Endpoints[0].Weight; got != 1 {
		t.Errorf("caller's write to a sorted input reached the catalog: weight %d", got)
	}
}

func TestServicesSorted(t *testing.T) {
	c := newCatalog(t, reg{"a", 0})
	for _, s := range []string{"b.x", "a.x-y", "a.x", "a-b.x", "c.a"} {
		mustApply(t, c, discovery.Update{Source: "a", Service: s})
	}
	want := []string{"a-b.x", "a.x", "a.x-y", "b.x", "c.a"}
	if diff := cmp.Diff(c.Services(), want); diff != "" {
		t.Errorf("Services (-got +want):\n%s", diff)
	}
}
