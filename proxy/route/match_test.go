package route

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
)

// to is a backend route called name with the given match.
func to(name string, m MatchConfig) RouteConfig {
	return RouteConfig{Name: name, Match: m, Backends: []Backend{{Service: "svc.ns"}}}
}

func prefix(v string) PathMatch { return PathMatch{Type: PathPrefix, Value: v} }
func exact(v string) PathMatch  { return PathMatch{Type: PathExact, Value: v} }
func regex(v string) PathMatch  { return PathMatch{Type: PathRegex, Value: v} }

func mustNew(t testing.TB, routes ...RouteConfig) *Table {
	t.Helper()
	tab, err := New(Config{Routes: routes})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return tab
}

type request struct {
	host, path, method string
	header             http.Header
	query              string
}

func (r request) match(t *Table) string {
	method := r.method
	if method == "" {
		method = "GET"
	}
	got := t.Match(r.host, r.path, method, r.header, r.query)
	if got == nil {
		return "<nil>"
	}
	return got.Name
}

func TestMatch(t *testing.T) {
	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Add(kv[i], kv[i+1])
		}
		return h
	}
	tests := []struct {
		name   string
		routes []RouteConfig
		reqs   []request
		want   []string // route name per request, "<nil>" for no match
	}{{
		name: "host: exact beats wildcard beats any, whatever the config order",
		routes: []RouteConfig{
			to("any", MatchConfig{}),
			to("wild", MatchConfig{Hosts: []string{"*.example.com"}}),
			to("exact", MatchConfig{Hosts: []string{"shop.example.com"}}),
		},
		reqs: []request{{host: "shop.example.com", path: "/"}, {host: "blog.example.com", path: "/"}, {host: "other.org", path: "/"}},
		want: []string{"exact", "wild", "any"},
	}, {
		name: "host: wildcard is one leftmost label",
		routes: []RouteConfig{
			to("wild", MatchConfig{Hosts: []string{"*.example.com"}}),
		},
		reqs: []request{
			{host: "a.example.com", path: "/"},
			{host: "example.com", path: "/"},
			{host: "a.b.example.com", path: "/"},
			{host: ".example.com", path: "/"},
			{host: "aexample.com", path: "/"},
		},
		want: []string{"wild", "<nil>", "<nil>", "<nil>", "<nil>"},
	}, {
		name: "host: longer wildcard suffix serves its hosts, shorter the rest",
		routes: []RouteConfig{
			to("short", MatchConfig{Hosts: []string{"*.com"}}),
			to("long", MatchConfig{Hosts: []string{"*.example.com"}}),
		},
		reqs: []request{{host: "a.example.com", path: "/"}, {host: "example.com", path: "/"}},
		want: []string{"long", "short"},
	}, {
		name: "host: case, port, trailing dot are ignored",
		routes: []RouteConfig{
			to("exact", MatchConfig{Hosts: []string{"Shop.Example.com"}}),
			to("wild", MatchConfig{Hosts: []string{"*.EXAMPLE.org"}}),
			to("ip", MatchConfig{Hosts: []string{"10.0.0.1"}}),
		},
		reqs: []request{
			{host: "SHOP.example.COM", path: "/"},
			{host: "shop.example.com:8080", path: "/"},
			{host: "shop.example.com.", path: "/"},
			{host: "shop.example.com.:443", path: "/"},
			{host: "A.example.ORG:1", path: "/"},
			{host: "10.0.0.1:80", path: "/"},
			{host: "[::1]:80", path: "/"},
			{host: "", path: "/"},
		},
		want: []string{"exact", "exact", "exact", "exact", "wild", "ip", "<nil>", "<nil>"},
	}, {
		name: "host: a failing exact-host route falls through to wildcard and any",
		routes: []RouteConfig{
			to("exact-api", MatchConfig{Hosts: []string{"shop.example.com"}, Path: prefix("/api")}),
			to("wild-admin", MatchConfig{Hosts: []string{"*.example.com"}, Path: prefix("/admin")}),
			to("any", MatchConfig{}),
		},
		reqs: []request{{host: "shop.example.com", path: "/api/x"}, {host: "shop.example.com", path: "/admin"}, {host: "shop.example.com", path: "/x"}},
		want: []string{"exact-api", "wild-admin", "any"},
	}, {
		name: "host: a route with several hosts ranks by the one that matched",
		routes: []RouteConfig{
			to("both", MatchConfig{Hosts: []string{"*.example.com", "shop.example.com"}, Path: prefix("/")}),
			to("exact-long", MatchConfig{Hosts: []string{"blog.example.com"}, Path: prefix("/")}),
			to("wild-long", MatchConfig{Hosts: []string{"*.example.com"}, Path: prefix("/x")}),
		},
		// shop: "both" is an exact-host route there and beats the longer
		// wildcard prefix; news: "both" is a wildcard route like wild-long.
		reqs: []request{{host: "shop.example.com", path: "/x"}, {host: "news.example.com", path: "/x"}, {host: "blog.example.com", path: "/x"}},
		want: []string{"both", "wild-long", "exact-long"},
	}, {
		name: "path: exact beats prefix",
		routes: []RouteConfig{
			to("prefix", MatchConfig{Path: prefix("/foo")}),
			to("exact", MatchConfig{Path: exact("/foo")}),
		},
		reqs: []request{{path: "/foo"}, {path: "/foo/"}},
		want: []string{"exact", "prefix"},
	}, {
		name: "path: longer prefix beats shorter",
		routes: []RouteConfig{
			to("root", MatchConfig{}),
			to("a", MatchConfig{Path: prefix("/a")}),
			to("ab", MatchConfig{Path: prefix("/a/b/")}),
		},
		reqs: []request{{path: "/a/b/c"}, {path: "/a/bc"}, {path: "/b"}},
		want: []string{"ab", "a", "root"},
	}, {
		name: "path: prefix, even /, beats regex",
		routes: []RouteConfig{
			to("regex", MatchConfig{Path: regex("/api/v[0-9]+/.*")}),
			to("api", MatchConfig{Path: prefix("/api")}),
			to("other", MatchConfig{Hosts: []string{"h.example"}, Path: prefix("/")}),
			to("other-regex", MatchConfig{Hosts: []string{"h.example"}, Path: regex("/x.*")}),
		},
		reqs: []request{{path: "/api/v1/x"}, {path: "/apiv1"}, {host: "h.example", path: "/xyz"}},
		want: []string{"api", "<nil>", "other"},
	}, {
		name: "path: regex is anchored",
		routes: []RouteConfig{
			to("regex", MatchConfig{Path: regex("/[a-z]+")}),
		},
		reqs: []request{{path: "/abc"}, {path: "/abc/"}, {path: "x/abc"}, {path: "/"}},
		want: []string{"regex", "<nil>", "<nil>", "<nil>"},
	}, {
		name: "path: regex alternation is anchored as a whole",
		routes: []RouteConfig{
			to("regex", MatchConfig{Path: regex("/a|/b")}),
		},
		reqs: []request{{path: "/a"}, {path: "/b"}, {path: "/ab"}, {path: "/a/b"}},
		want: []string{"regex", "regex", "<nil>", "<nil>"},
	}, {
		name: "method beats headers",
		routes: []RouteConfig{
			to("header", MatchConfig{Headers: []HeaderMatch{{Name: "x-a", Value: "1"}}}),
			to("method", MatchConfig{Methods: []string{"POST"}}),
		},
		reqs: []request{{path: "/", method: "POST", header: hdr("X-A", "1")}, {path: "/", method: "GET", header: hdr("X-A", "1")}, {path: "/", method: "GET"}},
		want: []string{"method", "header", "<nil>"},
	}, {
		name: "more headers beat fewer",
		routes: []RouteConfig{
			to("one", MatchConfig{Headers: []HeaderMatch{{Name: "X-A", Value: "1"}}}),
			to("two", MatchConfig{Headers: []HeaderMatch{{Name: "X-A", Value: "1"}, {Name: "X-B", Value: "2"}}}),
		},
		reqs: []request{{path: "/", header: hdr("X-A", "1", "X-B", "2")}, {path: "/", header: hdr("X-A", "1")}},
		want: []string{"two", "one"},
	}, {
		name: "headers beat query",
		routes: []RouteConfig{
			to("query", MatchConfig{Query: []QueryMatch{{Name: "a", Value: "1"}, {Name: "b", Value: "2"}}}),
			to("header", MatchConfig{Headers: []HeaderMatch{{Name: "X-A", Value: "1"}}}),
		},
		reqs: []request{{path: "/", header: hdr("X-A", "1"), query: "a=1&b=2"}},
		want: []string{"header"},
	}, {
		name: "more query beats fewer",
		routes: []RouteConfig{
			to("one", MatchConfig{Query: []QueryMatch{{Name: "a", Value: "1"}}}),
			to("two", MatchConfig{Query: []QueryMatch{{Name: "a", Value: "1"}, {Name: "b", Value: "2"}}}),
		},
		reqs: []request{{path: "/", query: "b=2&a=1"}, {path: "/", query: "a=1&b=3"}},
		want: []string{"two", "one"},
	}, {
		name: "query beats plain prefix of the same length",
		routes: []RouteConfig{
			to("plain", MatchConfig{Path: prefix("/x")}),
			to("query", MatchConfig{Path: prefix("/x"), Query: []QueryMatch{{Name: "a", Value: "1"}}}),
		},
		reqs: []request{{path: "/x", query: "a=1"}, {path: "/x"}},
		want: []string{"query", "plain"},
	}, {
		name: "config order breaks ties",
		routes: []RouteConfig{
			to("first", MatchConfig{Path: prefix("/x"), Headers: []HeaderMatch{{Name: "X-A", Value: "1"}}}),
			to("second", MatchConfig{Path: prefix("/x/"), Headers: []HeaderMatch{{Name: "X-B", Value: "1"}}}),
		},
		reqs: []request{{path: "/x", header: hdr("X-A", "1", "X-B", "1")}, {path: "/x", header: hdr("X-B", "1")}},
		want: []string{"first", "second"},
	}, {
		name: "header: exact is case-sensitive, name is not, any field line",
		routes: []RouteConfig{
			to("h", MatchConfig{Headers: []HeaderMatch{{Name: "x-env", Value: "canary"}}}),
		},
		reqs: []request{
			{path: "/", header: hdr("X-Env", "canary")},
			{path: "/", header: hdr("X-Env", "Canary")},
			{path: "/", header: hdr("X-Env", "prod", "X-Env", "canary")},
			{path: "/", header: hdr("X-Env", "prod, canary")},
			{path: "/"},
		},
		want: []string{"h", "<nil>", "h", "<nil>", "<nil>"},
	}, {
		name: "header: regex is anchored; .* means present",
		routes: []RouteConfig{
			to("re", MatchConfig{Headers: []HeaderMatch{{Name: "User-Agent", Value: "curl/[0-9.]+", Regex: true}}}),
			to("present", MatchConfig{Headers: []HeaderMatch{{Name: "X-Debug", Value: ".*", Regex: true}}}),
		},
		reqs: []request{
			{path: "/", header: hdr("User-Agent", "curl/8.5.0")},
			{path: "/", header: hdr("User-Agent", "xcurl/8.5.0")},
			{path: "/", header: hdr("X-Debug", "")},
			{path: "/"},
		},
		want: []string{"re", "<nil>", "present", "<nil>"},
	}, {
		name: "query: decoded, exact or regex, repeated names",
		routes: []RouteConfig{
			to("exact", MatchConfig{Query: []QueryMatch{{Name: "q", Value: "a b/c"}}}),
			to("re", MatchConfig{Query: []QueryMatch{{Name: "v", Value: "[0-9]+", Regex: true}}}),
		},
		reqs: []request{
			{path: "/", query: "q=a+b%2Fc"},
			{path: "/", query: "q=a%20b/c"},
			{path: "/", query: "x=1&q=a b/c"},
			{path: "/", query: "q=a;b"},
			{path: "/", query: "Q=a+b%2Fc"},
			{path: "/", query: "v=x&v=42"},
			{path: "/", query: "v=42x"},
			{path: "/", query: "v=%zz"},
			{path: "/", query: "%71=a+b%2fc"},
		},
		want: []string{"exact", "exact", "exact", "<nil>", "<nil>", "re", "<nil>", "<nil>", "exact"},
	}, {
		name: "method: any of, case-sensitive",
		routes: []RouteConfig{
			to("rw", MatchConfig{Methods: []string{"POST", "PUT"}}),
		},
		reqs: []request{{path: "/", method: "PUT"}, {path: "/", method: "POST"}, {path: "/", method: "GET"}, {path: "/", method: "post"}},
		want: []string{"rw", "rw", "<nil>", "<nil>"},
	}, {
		name:   "empty table",
		routes: nil,
		reqs:   []request{{path: "/"}},
		want:   []string{"<nil>"},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tab := mustNew(t, tc.routes...)
			for i, r := range tc.reqs {
				if got := r.match(tab); got != tc.want[i] {
					t.Errorf("Match(%q, %q, %q, %v, %q) = %s, want %s", r.host, r.path, r.method, r.header, r.query, got, tc.want[i])
				}
			}
		})
	}
}

// TestPrefixIngressExamples is the examples table of the Kubernetes Ingress
// documentation ("Examples" under "Path types"), plus the same for Exact.
func TestPrefixIngressExamples(t *testing.T) {
	tests := []struct {
		paths []PathMatch // one route per path, named by its value and type
		path  string
		want  string // "<nil>", or the winning route's name
	}{
		{[]PathMatch{prefix("/")}, "/", "Prefix /"},
		{[]PathMatch{prefix("/")}, "/anything/at/all", "Prefix /"},
		{[]PathMatch{exact("/foo")}, "/foo", "Exact /foo"},
		{[]PathMatch{exact("/foo")}, "/bar", "<nil>"},
		{[]PathMatch{exact("/foo")}, "/foo/", "<nil>"},
		{[]PathMatch{exact("/foo/")}, "/foo", "<nil>"},
		{[]PathMatch{prefix("/foo")}, "/foo", "Prefix /foo"},
		{[]PathMatch{prefix("/foo")}, "/foo/", "Prefix /foo"},
		{[]PathMatch{prefix("/foo/")}, "/foo", "Prefix /foo/"},
		{[]PathMatch{prefix("/foo/")}, "/foo/", "Prefix /foo/"},
		{[]PathMatch{prefix("/aaa/bb")}, "/aaa/bbb", "<nil>"},
		{[]PathMatch{prefix("/aaa/bbb")}, "/aaa/bbb", "Prefix /aaa/bbb"},
		{[]PathMatch{prefix("/aaa/bbb/")}, "/aaa/bbb", "Prefix /aaa/bbb/"},
		{[]PathMatch{prefix("/aaa/bbb")}, "/aaa/bbb/", "Prefix /aaa/bbb"},
		{[]PathMatch{prefix("/aaa/bbb")}, "/aaa/bbb/ccc", "Prefix /aaa/bbb"},
		{[]PathMatch{prefix("/aaa/bbb")}, "/aaa/bbbxyz", "<nil>"},
		{[]PathMatch{prefix("/"), prefix("/aaa")}, "/aaa/ccc", "Prefix /aaa"},
		{[]PathMatch{prefix("/"), prefix("/aaa"), prefix("/aaa/bbb")}, "/aaa/bbb", "Prefix /aaa/bbb"},
		{[]PathMatch{prefix("/"), prefix("/aaa"), prefix("/aaa/bbb")}, "/ccc", "Prefix /"},
		{[]PathMatch{prefix("/aaa")}, "/ccc", "<nil>"},
		{[]PathMatch{prefix("/foo"), exact("/foo")}, "/foo", "Exact /foo"},
		{[]PathMatch{prefix("/foo")}, "/foobar", "<nil>"},
	}
	for _, tc := range tests {
		var routes []RouteConfig
		for _, p := range tc.paths {
			routes = append(routes, to(string(p.Type)+" "+p.Value, MatchConfig{Path: p}))
		}
		if got := (request{path: tc.path}).match(mustNew(t, routes...)); got != tc.want {
			t.Errorf("paths %v, request %q: got %s, want %s", tc.paths, tc.path, got, tc.want)
		}
	}
}

func TestMatchDefaultPath(t *testing.T) {
	tab := mustNew(t, to("zero", MatchConfig{}), to("typeless", MatchConfig{Hosts: []string{"a.b"}, Path: PathMatch{Value: "/x"}}))
	for _, tc := range []struct{ host, path, want string }{
		{"", "/", "zero"}, {"", "/a/b", "zero"}, {"", "", "zero"}, {"", "*", "zero"},
		{"a.b", "/x/y", "typeless"}, {"a.b", "/xy", "zero"},
	} {
		if got := (request{host: tc.host, path: tc.path}).match(tab); got != tc.want {
			t.Errorf("%s%s: got %s, want %s", tc.host, tc.path, got, tc.want)
		}
	}
}

func TestMatchAllocs(t *testing.T) {
	tab := mustNew(t,
		to("shop", MatchConfig{Hosts: []string{"shop.example.com"}, Path: prefix("/api")}),
		to("wild", MatchConfig{Hosts: []string{"*.example.com"}, Path: prefix("/")}),
		to("hdr", MatchConfig{Path: prefix("/"), Headers: []HeaderMatch{{Name: "X-Env", Value: "canary"}}, Query: []QueryMatch{{Name: "a", Value: "1"}}}),
	)
	h := http.Header{"X-Env": {"canary"}}
	for _, tc := range []struct{ name, host, path, query, want string }{
		{"exact host, prefix", "shop.example.com", "/api/orders", "", "shop"},
		{"upper-case host with port", "SHOP.Example.com:8443", "/api/orders", "", "shop"},
		{"wildcard host", "blog.example.com", "/x", "", "wild"},
		{"header and plain query", "other.org", "/x", "b=2&a=1", "hdr"},
	} {
		var got *Route
		allocs := testing.AllocsPerRun(100, func() { got = tab.Match(tc.host, tc.path, "GET", h, tc.query) })
		if got == nil || got.Name != tc.want {
			t.Fatalf("%s: matched %v, want %s", tc.name, got, tc.want)
		}
		if allocs != 0 {
			t.Errorf("%s: Match allocates %v times, want 0", tc.name, allocs)
		}
	}
}

// TestConcurrentUse runs Match and PickBackend from many goroutines; under
// -race it shows the Table is safe to share without locks.
func TestConcurrentUse(t *testing.T) {
	tab := mustNew(t,
		RouteConfig{Name: "split", Match: MatchConfig{Hosts: []string{"*.example.com"}}, Backends: []Backend{{"a.ns", 1}, {"b.ns", 1}}},
		to("q", MatchConfig{Query: []QueryMatch{{Name: "a", Value: "x y"}}}),
	)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				host := fmt.Sprintf("h%d.Example.com", (g+i)%3)
				if r := tab.Match(host, "/", "GET", nil, ""); r == nil || r.PickBackend() == "" {
					t.Errorf("Match(%q) = %v", host, r)
					return
				}
				if r := tab.Match("x", "/", "GET", nil, "a=x+y"); r == nil || r.Name != "q" {
					t.Errorf("query Match = %v", r)
					return
				}
			}
		})
	}
	wg.Wait()
}
