package route

import (
	"math"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRewritePath(t *testing.T) {
	// The Gateway API ReplacePrefixMatch table, with "" spelled "/" (here ""
	// means no rewrite), plus identity cases.
	tests := []struct {
		prefix, rewrite, path, want string
	}{
		{"/foo", "/xyz", "/foo/bar", "/xyz/bar"},
		{"/foo", "/xyz/", "/foo/bar", "/xyz/bar"},
		{"/foo/", "/xyz", "/foo/bar", "/xyz/bar"},
		{"/foo/", "/xyz/", "/foo/bar", "/xyz/bar"},
		{"/foo", "/xyz", "/foo", "/xyz"},
		{"/foo/", "/xyz", "/foo", "/xyz"},
		{"/foo", "/xyz/", "/foo", "/xyz/"},
		{"/foo/", "/xyz/", "/foo", "/xyz/"},
		{"/foo", "/", "/foo/bar", "/bar"},
		{"/foo/", "/", "/foo/bar", "/bar"},
		{"/foo", "/", "/foo", "/"},
		{"/foo", "/xyz", "/foo/", "/xyz/"},
		{"/api", "/v2", "/api/x/y", "/v2/x/y"},
		{"/api", "/v2", "/api", "/v2"},
		{"/", "/v2", "/x", "/v2/x"},
		{"/", "/v2", "/", "/v2/"},
		{"/api", "/v2", "/apix", "/apix"},   // not matched: identity
		{"/api", "/v2", "/other", "/other"}, // not matched: identity
		{"/api", "", "/api/x", "/api/x"},    // no rewrite
	}
	for _, tc := range tests {
		rc := to("r", MatchConfig{Path: prefix(tc.prefix)})
		rc.RewritePrefix = tc.rewrite
		r := mustNew(t, rc).Routes()[0]
		if got := r.RewritePath(tc.path); got != tc.want {
			t.Errorf("prefix %q rewrite %q: RewritePath(%q) = %q, want %q", tc.prefix, tc.rewrite, tc.path, got, tc.want)
		}
	}
	// Exact and Regex routes never rewrite.
	r := mustNew(t, to("r", MatchConfig{Path: exact("/api")})).Routes()[0]
	if got := r.RewritePath("/api"); got != "/api" {
		t.Errorf("exact route: RewritePath = %q, want /api", got)
	}
}

func pickCounts(r *Route, n int) map[string]int {
	counts := map[string]int{}
	for range n {
		counts[r.PickBackend()]++
	}
	return counts
}

func TestPickBackendDistribution(t *testing.T) {
	// 100k picks of a 90/10 split: the share of "a" has a standard deviation
	// of sqrt(0.9*0.1/1e5) ≈ 0.095%, so ±1% is over 10 sigma: this test does
	// not flake, and it fails if the weights are ignored or inverted.
	const n = 100_000
	rc := RouteConfig{Name: "split", Backends: []Backend{{Service: "a.ns", Weight: 90}, {Service: "b.ns", Weight: 10}}}
	counts := pickCounts(mustNew(t, rc).Routes()[0], n)
	if len(counts) != 2 {
		t.Fatalf("picked %v, want only a.ns and b.ns", counts)
	}
	if share := float64(counts["a.ns"]) / n; math.Abs(share-0.9) > 0.01 {
		t.Errorf("a.ns got %.2f%% of picks, want 90%% ± 1%%", share*100)
	}

	// Three-way split, including the last backend, and equal split when all
	// weights are zero.
	for _, tc := range []struct {
		backends []Backend
		want     map[string]float64
	}{
		{[]Backend{{"a.ns", 1}, {"b.ns", 2}, {"c.ns", 7}}, map[string]float64{"a.ns": 0.1, "b.ns": 0.2, "c.ns": 0.7}},
		{[]Backend{{"a.ns", 0}, {"b.ns", 0}}, map[string]float64{"a.ns": 0.5, "b.ns": 0.5}},
	} {
		counts := pickCounts(mustNew(t, RouteConfig{Backends: tc.backends}).Routes()[0], n)
		for svc, want := range tc.want {
			if share := float64(counts[svc]) / n; math.Abs(share-want) > 0.01 {
				t.Errorf("%v: %s got %.2f%% of picks, want %.0f%% ± 1%%", tc.backends, svc, share*100, want*100)
			}
		}
		if len(counts) != len(tc.want) {
			t.Errorf("%v: picked %v", tc.backends, counts)
		}
	}
}

func TestPickBackendZeroWeight(t *testing.T) {
	for _, backends := range [][]Backend{
		{{"old.ns", 0}, {"new.ns", 5}},
		{{"new.ns", 5}, {"old.ns", 0}},
		{{"a.ns", 1}, {"old.ns", 0}, {"b.ns", 1}},
	} {
		r := mustNew(t, RouteConfig{Backends: backends}).Routes()[0]
		if n := pickCounts(r, 10_000)["old.ns"]; n != 0 {
			t.Errorf("%v: zero-weight old.ns picked %d times", backends, n)
		}
	}
}

func TestPickBackendNoBackends(t *testing.T) {
	r := mustNew(t, RouteConfig{Fixed: &FixedResponse{Status: 404}}).Routes()[0]
	if got := r.PickBackend(); got != "" {
		t.Errorf("PickBackend on a fixed route = %q, want \"\"", got)
	}
}

func TestPickBackendAllocs(t *testing.T) {
	for _, backends := range [][]Backend{
		{{"a.ns", 1}},
		{{"a.ns", 90}, {"b.ns", 10}},
		{{"a.ns", 1}, {"b.ns", 1}, {"c.ns", 1}, {"d.ns", 1}, {"e.ns", 1}},
	} {
		r := mustNew(t, RouteConfig{Backends: backends}).Routes()[0]
		if allocs := testing.AllocsPerRun(1000, func() { r.PickBackend() }); allocs != 0 {
			t.Errorf("%v: PickBackend allocates %v times, want 0", backends, allocs)
		}
	}
}

// TestRouteConfigNormalized checks the read-only Config a Route exposes:
// defaults applied, names canonical, and no memory shared with the input.
func TestRouteConfigNormalized(t *testing.T) {
	in := Config{Routes: []RouteConfig{{
		Name:            "r",
		Match:           MatchConfig{Hosts: []string{"Shop.Example.com", "shop.example.com"}, Headers: []HeaderMatch{{Name: "x-env", Value: "a"}}},
		Backends:        []Backend{{Service: "a.ns"}, {Service: "b.ns"}},
		RequestHeaders:  HeaderOps{Set: [][2]string{{"x-from", "outrigger"}}, Remove: []string{"x-secret"}},
		ResponseHeaders: HeaderOps{Add: [][2]string{{"cache-control", "no-store"}}},
	}, {
		Name:     "moved",
		Match:    MatchConfig{Path: exact("/old")},
		Redirect: &Redirect{Path: "/new"},
	}, {
		Name:  "teapot",
		Match: MatchConfig{Path: exact("/tea")},
		Fixed: &FixedResponse{Status: 418, Body: "short and stout"},
	}}}
	tab, err := New(in)
	if err != nil {
		t.Fatal(err)
	}
	in.Routes[0].Match.Hosts[0] = "changed.example.com"
	in.Routes[0].Backends[0].Service = "changed.ns"
	in.Routes[1].Redirect.Code = 301

	got := map[string]RouteConfig{}
	for _, r := range tab.Routes() {
		got[r.Name] = r.Config
	}
	want := map[string]RouteConfig{
		"r": {
			Name:            "r",
			Match:           MatchConfig{Hosts: []string{"shop.example.com"}, Path: prefix("/"), Headers: []HeaderMatch{{Name: "X-Env", Value: "a"}}},
			Backends:        []Backend{{Service: "a.ns", Weight: 1}, {Service: "b.ns", Weight: 1}},
			RequestHeaders:  HeaderOps{Set: [][2]string{{"X-From", "outrigger"}}, Remove: []string{"X-Secret"}},
			ResponseHeaders: HeaderOps{Add: [][2]string{{"Cache-Control", "no-store"}}},
		},
		"moved":  {Name: "moved", Match: MatchConfig{Path: exact("/old")}, Redirect: &Redirect{Path: "/new", Code: 302}},
		"teapot": {Name: "teapot", Match: MatchConfig{Path: exact("/tea")}, Fixed: &FixedResponse{Status: 418, Body: "short and stout", ContentType: "text/plain; charset=utf-8"}},
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("Route.Config (-got +want):\n%s", diff)
	}
	if r := tab.Match("shop.example.com", "/", "GET", http.Header{"X-Env": {"a"}}, ""); r == nil || r.Name != "r" {
		t.Errorf("after the input changed, Match = %v, want route r", r)
	}
}

func TestRoutesOrder(t *testing.T) {
	tab := mustNew(t,
		to("any", MatchConfig{}),
		to("wild-short", MatchConfig{Hosts: []string{"*.com"}}),
		to("wild-long", MatchConfig{Hosts: []string{"*.example.com"}}),
		to("exact-root", MatchConfig{Hosts: []string{"a.example.com"}}),
		to("exact-deep", MatchConfig{Hosts: []string{"a.example.com"}, Path: prefix("/a/b")}),
		to("exact-exact", MatchConfig{Hosts: []string{"a.example.com"}, Path: exact("/")}),
		to("any-regex", MatchConfig{Path: regex("/x")}),
		to("any-method", MatchConfig{Methods: []string{"GET"}}),
	)
	var got []string
	for _, r := range tab.Routes() {
		got = append(got, r.Name)
	}
	want := []string{"exact-exact", "exact-deep", "exact-root", "wild-long", "wild-short", "any-method", "any", "any-regex"}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("Routes order (-got +want):\n%s", diff)
	}
}
