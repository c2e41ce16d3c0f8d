package catalog

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/outrigger-mesh/outrigger/discovery"
)

func TestUnregisterSource(t *testing.T) {
	c := newCatalog(t, reg{"a", 0}, reg{"b", 1}, reg{"late", 0})
	a1, b1 := ep("1", "10.0.0.1:80"), ep("1", "10.0.0.2:80")
	mustApply(t, c, discovery.Update{Source: "a", Service: "s.ns", Endpoints: eps(a1)})
	mustApply(t, c, discovery.Update{Source: "b", Service: "s.ns", Endpoints: eps(b1)})
	mustApply(t, c, discovery.Update{Source: "b", Service: "only-b.ns", Endpoints: eps(b1)})
	c.Synced("a")
	c.Synced("b")
	if c.Snapshot("s.ns").Answered {
		t.Fatal("answered while source late has not synced")
	}
	before := c.Snapshot("s.ns").Version

	if err := c.UnregisterSource("b"); err != nil {
		t.Fatal(err)
	}
	got := c.Snapshot("s.ns")
	want := &discovery.Snapshot{Service: "s.ns", Known: true, Endpoints: eps(pub("a", 0, a1))}
	if diff := cmp.Diff(got, want, cmpSnap); diff != "" {
		t.Errorf("s.ns after unregistering b (-got +want):\n%s", diff)
	}
	if got.Version <= before {
		t.Errorf("version %d after the change, was %d", got.Version, before)
	}
	if snap := c.Snapshot("only-b.ns"); snap.Known || len(snap.Endpoints) != 0 {
		t.Errorf("only-b.ns still known: %+v", snap)
	}
	if err := c.Apply(discovery.Update{Source: "b", Service: "s.ns", Endpoints: eps(b1)}); err == nil {
		t.Error("Apply from an unregistered source succeeded")
	}

	// The source that never synced no longer holds the answer back.
	if err := c.UnregisterSource("late"); err != nil {
		t.Fatal(err)
	}
	if !c.Snapshot("s.ns").Answered {
		t.Error("s.ns unanswered after the only unsynced source was unregistered")
	}

	// Registered again, a name starts over.
	if err := c.RegisterSource("b", 2); err != nil {
		t.Fatal(err)
	}
	mustApply(t, c, discovery.Update{Source: "b", Service: "s.ns", Endpoints: eps(b1)})
	if eps := c.Snapshot("s.ns").Endpoints; len(eps) != 2 || eps[1].Priority != 2 {
		t.Errorf("after registering b again with priority 2: %+v", eps)
	}
	if err := c.UnregisterSource("nope"); err == nil {
		t.Error("unregistering an unknown source succeeded")
	}
}

// A reset source keeps serving its endpoints, stale, without a new
// version; its new run replaces them as it reports, and its sync drops
// what it did not report again.
func TestResetSourceKeepsEndpointsUntilTheNewRunReports(t *testing.T) {
	c := newCatalog(t, reg{"a", 0})
	a1, a2 := ep("1", "10.0.0.1:80"), ep("2", "10.0.0.2:80")
	mustApply(t, c, discovery.Update{Source: "a", Service: "s.ns", Endpoints: eps(a1)})
	mustApply(t, c, discovery.Update{Source: "a", Service: "gone.ns", Endpoints: eps(a1)})
	mustApply(t, c, discovery.Update{Source: "a", Service: "tomb.ns", Deleted: true})
	c.Synced("a")
	before := c.Snapshot("s.ns")

	if err := c.ResetSource("a", 3); err != nil {
		t.Fatal(err)
	}
	for _, svc := range []string{"s.ns", "gone.ns"} {
		got := c.Snapshot(svc)
		if !got.Known || !got.Answered || len(got.Endpoints) != 1 {
			t.Errorf("%s right after the reset: %+v, want its endpoint, answered", svc, got)
		}
	}
	if got := c.Snapshot("s.ns"); got.Version != before.Version {
		t.Errorf("the reset changed s.ns's version %d → %d: watchers woke for nothing", before.Version, got.Version)
	}

	// The new run reports s.ns, the same endpoint: now stamped with the
	// new priority.
	mustApply(t, c, discovery.Update{Source: "a", Service: "s.ns", Endpoints: eps(a1, a2)})
	want := &discovery.Snapshot{Service: "s.ns", Known: true, Answered: true, Endpoints: eps(pub("a", 3, a1), pub("a", 3, a2))}
	if diff := cmp.Diff(c.Snapshot("s.ns"), want, cmpSnap); diff != "" {
		t.Errorf("s.ns after the new run reported (-got +want):\n%s", diff)
	}
	if got := c.Snapshot("gone.ns"); len(got.Endpoints) != 1 {
		t.Errorf("gone.ns before the new run synced: %+v, want the stale endpoint kept", got)
	}

	// Its sync drops the stale view it did not report again.
	c.Synced("a")
	if got := c.Snapshot("gone.ns"); len(got.Endpoints) != 0 || got.Known {
		t.Errorf("gone.ns after the new run synced: %+v, want unknown", got)
	}
	if got := c.Snapshot("s.ns"); len(got.Endpoints) != 2 {
		t.Errorf("s.ns after the sync: %+v", got)
	}
	if err := c.ResetSource("nope", 0); err == nil {
		t.Error("resetting an unknown source succeeded")
	}
}

// With no source registered, nobody has answered for a service: a process
// that starts its balancers before its sources must not look ready.
func TestNoSourceMeansNotAnswered(t *testing.T) {
	c := newCatalog(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := <-c.Watch(ctx, "s.ns")
	if first.Answered {
		t.Fatalf("with no source registered: %+v, want not answered", first)
	}
	if err := c.RegisterSource("a", 0); err != nil {
		t.Fatal(err)
	}
	if c.Snapshot("s.ns").Answered {
		t.Error("answered before the source synced")
	}
	c.Synced("a")
	if !c.Snapshot("s.ns").Answered {
		t.Error("not answered after the only source synced")
	}
}
