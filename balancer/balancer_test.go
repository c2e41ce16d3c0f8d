package balancer

import (
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/outrigger-mesh/outrigger/discovery"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string // error lines; nil for valid
	}{
		{"round robin", Config{Service: "orders.shop", Policy: "round_robin"}, nil},
		{"default policy", Config{Service: "orders.shop"}, nil},
		{"least conn with locality", Config{Service: "orders.shop", Policy: "least_conn",
			Locality: discovery.Locality{Cluster: "east", Zone: "east-1a"}}, nil},
		{"no service", Config{}, []string{"balancer: service: must be set (name.namespace)"}},
		{"bad service", Config{Service: "orders"}, []string{
			`balancer: service: invalid service key "orders": want name.namespace, like orders.shop`}},
		{"everything wrong", Config{Service: "Orders.shop", Policy: "rr"}, []string{
			`balancer: service: invalid service key "Orders.shop": "Orders" is not a DNS label (lower-case letters, digits and '-', at most 63, starting and ending with a letter or digit)`,
			`balancer: policy: unknown balancer policy "rr" (want round_robin or least_conn)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			if err := tt.cfg.Validate(); err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("Validate errors (-got +want):\n%s", diff)
			}
		})
	}
}

func TestNew(t *testing.T) {
	_, err := New(Config{Service: "orders.shop"}, Options{})
	if err == nil || !strings.Contains(err.Error(), "Watcher is nil") {
		t.Errorf("New without Watcher: err = %v, want one naming Watcher", err)
	}
	_, err = New(Config{Service: "x", Policy: "nope"}, Options{})
	if got := strings.Count(err.Error(), "\n") + 1; got != 3 {
		t.Errorf("New with three problems reported %d: %v", got, err)
	}
	b, err := New(Config{Service: "orders.shop"}, Options{Watcher: &fakeWatcher{}})
	if err != nil {
		t.Fatal(err)
	}
	if b.Service() != "orders.shop" || b.Status().Policy != PolicyRoundRobin || b.Ready() {
		t.Errorf("new balancer: service %q, policy %q, ready %v; want orders.shop, round_robin, false",
			b.Service(), b.Status().Policy, b.Ready())
	}
}

func TestPolicyByName(t *testing.T) {
	for _, name := range []string{"", "round_robin", "least_conn", "random"} {
		p, err := PolicyByName(name)
		got := ""
		if err == nil {
			got = p.Name()
		}
		want := map[string]string{"": "round_robin", "round_robin": "round_robin", "least_conn": "least_conn"}[name]
		if got != want || (err != nil) != (want == "") {
			t.Errorf("PolicyByName(%q) = %q, %v; want %q", name, got, err, want)
		}
	}
}

func TestNoEndpoints(t *testing.T) {
	for _, policy := range policies {
		t.Run(policy, func(t *testing.T) {
			b := newTestBalancer(t, Config{Policy: policy})
			check := func(when string) {
				t.Helper()
				res, err := b.Pick(&PickInfo{})
				if !errors.Is(err, ErrNoEndpoints) || res.Endpoint != nil || res.Done != nil {
					t.Errorf("%s: Pick = %+v, %v; want zero result and ErrNoEndpoints", when, res, err)
				}
			}
			check("before the first snapshot")
			b.apply(snapshot(1))
			check("with zero endpoints")
			b.apply(snapshot(2, ep("a", state(discovery.StateNotReady)), ep("b", state(discovery.StateDraining))))
			check("with no ready endpoint")
			b.apply(snapshot(3, ep("a")))
			if _, err := b.Pick(nil); err != nil {
				t.Errorf("with a ready endpoint: %v", err)
			}
		})
	}
}

func TestTiers(t *testing.T) {
	east1a := discovery.Locality{Cluster: "east", Zone: "east-1a"}
	type step struct {
		eps  []discovery.Endpoint
		want []string // distinct IDs picked; nil for ErrNoEndpoints
	}
	tests := []struct {
		name  string
		node  discovery.Locality
		steps []step
	}{
		{"priority failover and back", discovery.Locality{}, []step{
			{[]discovery.Endpoint{ep("p0a"), ep("p0b"), ep("p1a", priority(1))}, []string{"p0a", "p0b"}},
			{[]discovery.Endpoint{ep("p0a", state(discovery.StateNotReady)), ep("p0b", state(discovery.StateDraining)),
				ep("p1a", priority(1)), ep("p1b", priority(1)), ep("p2", priority(2))}, []string{"p1a", "p1b"}},
			{[]discovery.Endpoint{ep("p0a"), ep("p0b", state(discovery.StateDraining)),
				ep("p1a", priority(1)), ep("p1b", priority(1))}, []string{"p0a"}},
		}},
		{"locality: zone, then cluster, then elsewhere", east1a, []step{
			{[]discovery.Endpoint{ep("zone", locality("east", "east-1a")), ep("cluster", locality("east", "east-1b")),
				ep("west", locality("west", "west-1a"))}, []string{"zone"}},
			{[]discovery.Endpoint{ep("zone", locality("east", "east-1a"), state(discovery.StateNotReady)),
				ep("cluster", locality("east", "east-1b")), ep("cluster2", locality("east", "east-1c")),
				ep("west", locality("west", "west-1a"))}, []string{"cluster", "cluster2"}},
			{[]discovery.Endpoint{ep("cluster", locality("east", "east-1b"), state(discovery.StateDraining)),
				ep("west", locality("west", "west-1a")), ep("none")}, []string{"none", "west"}},
		}},
		{"priority beats locality", east1a, []step{
			{[]discovery.Endpoint{ep("near", locality("east", "east-1a"), priority(1)),
				ep("far", locality("west", "west-1a"))}, []string{"far"}},
		}},
		{"node without locality: no preference", discovery.Locality{}, []step{
			{[]discovery.Endpoint{ep("zone", locality("east", "east-1a")), ep("cluster", locality("east", "east-1b")),
				ep("west", locality("west", "west-1a"))}, []string{"cluster", "west", "zone"}},
		}},
		{"node without zone: whole cluster is near", discovery.Locality{Cluster: "east"}, []step{
			{[]discovery.Endpoint{ep("a", locality("east", "east-1a")), ep("b", locality("east", "east-1b")),
				ep("west", locality("west", "west-1a"))}, []string{"a", "b"}},
		}},
		{"nothing ready", east1a, []step{
			{[]discovery.Endpoint{ep("a", state(discovery.StateNotReady)), ep("b", priority(1), state(discovery.StateDraining))}, nil},
		}},
	}
	for _, tt := range tests {
		for _, policy := range policies {
			t.Run(tt.name+"/"+policy, func(t *testing.T) {
				b := newTestBalancer(t, Config{Policy: policy, Locality: tt.node})
				for i, s := range tt.steps {
					b.apply(snapshot(uint64(i+1), s.eps...))
					var got []string
					if res, err := b.Pick(nil); !errors.Is(err, ErrNoEndpoints) {
						res.Done(DoneInfo{})
						got = pickIDs(t, b, 300)
					}
					if diff := cmp.Diff(got, s.want); diff != "" {
						t.Errorf("step %d: picked endpoints (-got +want):\n%s", i, diff)
					}
					var eligible []string
					for _, e := range b.Status().Endpoints {
						if e.Eligible {
							eligible = append(eligible, e.ID)
						}
					}
					if diff := cmp.Diff(eligible, s.want, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
						t.Errorf("step %d: Status eligible (-got +want):\n%s", i, diff)
					}
				}
			})
		}
	}
}

func TestTriedAvoidance(t *testing.T) {
	tests := []struct {
		name  string
		eps   []discovery.Endpoint
		tried []string
		// want is the set of IDs picks may return.
		want []string
	}{
		{"two of three tried", manyEndpoints(3), []string{"e00", "e01"}, []string{"e02"}},
		{"one tried, weighted", []discovery.Endpoint{ep("e00", weight(1)), ep("e01", weight(2)), ep("e02", weight(50))},
			[]string{"e02"}, []string{"e00", "e01"}},
		{"all tried: still picks", manyEndpoints(2), []string{"e00", "e01"}, []string{"e00", "e01"}},
		{"four of 50 tried", manyEndpoints(50), []string{"e00", "e10", "e11", "e49"}, nil},
		{"four of 5 tried", manyEndpoints(5), []string{"e00", "e01", "e03", "e04"}, []string{"e02"}},
		{"four of 9 tried (p2c), weighted", []discovery.Endpoint{ep("e00", weight(100)), ep("e01", weight(100)),
			ep("e02", weight(100)), ep("e03", weight(100)), ep("e04"), ep("e05"), ep("e06"), ep("e07"), ep("e08")},
			[]string{"e00", "e01", "e02", "e03"}, []string{"e04", "e05", "e06", "e07", "e08"}},
	}
	for _, tt := range tests {
		for _, policy := range policies {
			t.Run(tt.name+"/"+policy, func(t *testing.T) {
				b := newTestBalancer(t, Config{Policy: policy})
				b.apply(snapshot(1, tt.eps...))
				info := &PickInfo{}
				tried := map[string]bool{}
				for _, id := range tt.tried {
					info.AddTried(ep(id).Addr)
					tried[id] = true
				}
				want := tt.want
				if want == nil { // every untried endpoint
					for _, e := range tt.eps {
						if !tried[e.ID] {
							want = append(want, e.ID)
						}
					}
				}
				got := pickCounts(t, b, 2000, info)
				for id := range got {
					if !contains(want, id) {
						t.Errorf("picked %s (%d times), want only %v", id, got[id], want)
					}
				}
			})
		}
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func TestReconcileKeepsLiveState(t *testing.T) {
	for _, policy := range policies {
		t.Run(policy, func(t *testing.T) {
			b := newTestBalancer(t, Config{Policy: policy})
			b.apply(snapshot(1, ep("a")))
			resA, err := b.Pick(nil)
			if err != nil {
				t.Fatal(err)
			}

			// a stays (with a new weight), b joins: a keeps its counters.
			b.apply(snapshot(2, ep("a", weight(3)), ep("b")))
			want := Status{
				Service: testService, Policy: policy, Version: 2, Known: true, Answered: true, Ready: true,
				Endpoints: []EndpointStatus{
					{Endpoint: ep("a", weight(3)), Eligible: true, InFlight: 1, Picks: 1},
					{Endpoint: ep("b"), Eligible: true},
				},
			}
			if diff := cmp.Diff(b.Status(), want, cmpopts.EquateComparable(netip.AddrPort{})); diff != "" {
				t.Errorf("after adding b (-got +want):\n%s", diff)
			}
			resA.Done(DoneInfo{})
			if got := inFlight(b)["a"]; got != 0 {
				t.Errorf("a in flight after Done = %d, want 0", got)
			}

			// b holds a connection and leaves; its Done lands on the old
			// state harmlessly, and when b returns it starts from zero.
			info := &PickInfo{}
			info.AddTried(ep("a").Addr)
			resB, err := b.Pick(info)
			if err != nil || resB.Endpoint.ID != "b" {
				t.Fatalf("Pick with a tried = %v, %v; want b", resB.Endpoint, err)
			}
			b.apply(snapshot(3, ep("a")))
			if diff := cmp.Diff(inFlight(b), map[string]int64{"a": 0}); diff != "" {
				t.Errorf("after b left (-got +want):\n%s", diff)
			}
			resB.Done(DoneInfo{Err: errors.New("reset")})
			b.apply(snapshot(4, ep("a"), ep("b")))
			st := b.Status().Endpoints[1]
			if st.ID != "b" || st.InFlight != 0 || st.Picks != 0 {
				t.Errorf("b after returning: in_flight %d, picks %d; want 0, 0", st.InFlight, st.Picks)
			}
		})
	}
}

func TestStatusJSON(t *testing.T) {
	b := newTestBalancer(t, Config{Policy: PolicyLeastConn, Locality: discovery.Locality{Cluster: "east", Zone: "east-1a"}})
	if got, want := mustJSON(t, b.Status()),
		`{"service":"orders.shop","policy":"least_conn","version":0,"known":false,"answered":false,"ready":false,"endpoints":[]}`; got != want {
		t.Errorf("Status before the first snapshot:\n got %s\nwant %s", got, want)
	}
	e := ep("file/a", locality("east", "east-1b"), weight(2))
	e.Addr = netip.MustParseAddrPort("10.1.2.3:8080")
	e.SPIFFEID = "spiffe://example.org/ns/shop/sa/orders"
	e.Priority = 1
	b.apply(snapshot(7, e))
	if _, err := b.Pick(nil); err != nil {
		t.Fatal(err)
	}
	want := `{"service":"orders.shop","policy":"least_conn","version":7,"known":true,"answered":true,"ready":true,` +
		`"endpoints":[{"id":"file/a","address":"10.1.2.3:8080","weight":2,"locality":{"cluster":"east","zone":"east-1b"},` +
		`"state":"ready","spiffe_id":"spiffe://example.org/ns/shop/sa/orders","source":"file","priority":1,` +
		`"locality_rank":1,"eligible":true,"in_flight":1,"picks":1}]}`
	if got := mustJSON(t, b.Status()); got != want {
		t.Errorf("Status JSON:\n got %s\nwant %s", got, want)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	j, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(j)
}
