package route

import (
	"fmt"
	"net/http"
	"testing"
)

// benchTable is 20 routes over a few hosts, like a small ingress: per-host
// API and static prefixes, a canary header route, a wildcard and a default.
func benchTable(b *testing.B) *Table {
	var routes []RouteConfig
	for i, host := range []string{"shop.example.com", "blog.example.com", "api.example.com", "admin.example.com"} {
		routes = append(routes,
			to(fmt.Sprintf("api-%d", i), MatchConfig{Hosts: []string{host}, Path: prefix("/api/v1")}),
			to(fmt.Sprintf("api2-%d", i), MatchConfig{Hosts: []string{host}, Path: prefix("/api/v2")}),
			to(fmt.Sprintf("static-%d", i), MatchConfig{Hosts: []string{host}, Path: prefix("/static")}),
			to(fmt.Sprintf("canary-%d", i), MatchConfig{Hosts: []string{host}, Path: prefix("/api"), Headers: []HeaderMatch{{Name: "X-Canary", Value: "1"}}}),
		)
	}
	routes = append(routes,
		to("wild-health", MatchConfig{Hosts: []string{"*.example.com"}, Path: exact("/healthz")}),
		to("wild", MatchConfig{Hosts: []string{"*.example.com"}, Path: prefix("/")}),
		to("regex", MatchConfig{Hosts: []string{"shop.example.com"}, Path: regex("/v[0-9]+/.*")}),
		to("default", MatchConfig{}),
	)
	if len(routes) != 20 {
		b.Fatalf("%d routes", len(routes))
	}
	tab := mustNew(b, routes...)
	if w := tab.Warnings(); len(w) > 0 {
		b.Fatalf("unreachable routes: %q", w)
	}
	return tab
}

func BenchmarkMatch(b *testing.B) {
	tab := benchTable(b)
	h := http.Header{"User-Agent": {"curl/8.5.0"}, "Accept": {"*/*"}}
	for _, bc := range []struct{ name, host, path, want string }{
		{"exact-host-prefix", "shop.example.com", "/api/v2/orders/42", "api2-0"},
		{"host-with-port", "api.example.com:8443", "/static/app.js", "static-2"},
		{"wildcard-fallthrough", "admin.example.com", "/login", "wild"},
		{"exact-host-regex", "shop.example.com", "/v3/items", "regex"},
		{"any-host", "other.org", "/v1/x", "default"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			if r := tab.Match(bc.host, bc.path, "GET", h, ""); r == nil || r.Name != bc.want {
				b.Fatalf("matched %v, want %s", r, bc.want)
			}
			b.ReportAllocs()
			for b.Loop() {
				tab.Match(bc.host, bc.path, "GET", h, "")
			}
		})
	}
}

func BenchmarkPickBackend(b *testing.B) {
	r := mustNew(b, RouteConfig{Backends: []Backend{{"a.ns", 90}, {"b.ns", 5}, {"c.ns", 5}}}).Routes()[0]
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r.PickBackend()
		}
	})
}
