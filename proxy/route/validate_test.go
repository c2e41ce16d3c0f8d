package route

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// messages returns the Error texts of a Validate result, one per problem,
// checking that each is a *FieldError.
func messages(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("Validate returned %T, want errors.Join of *FieldError", err)
	}
	var out []string
	for _, e := range joined.Unwrap() {
		var fe *FieldError
		if !errors.As(e, &fe) || e != error(fe) {
			t.Errorf("%v is %T, want *FieldError", e, e)
		}
		out = append(out, e.Error())
	}
	return out
}

func backends(s ...string) []Backend {
	var out []Backend
	for _, svc := range s {
		out = append(out, Backend{Service: svc})
	}
	return out
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		routes []RouteConfig
		want   []string
	}{{
		name: "valid",
		routes: []RouteConfig{
			{Name: "a", Match: MatchConfig{Hosts: []string{"shop.example.com", "*.Example.com", "10.0.0.1"}, Path: regex("/x/[0-9]+"),
				Headers: []HeaderMatch{{Name: "X-A", Value: "v"}, {Name: "x-b", Value: "a|b", Regex: true}},
				Methods: []string{"GET", "PROPFIND"}, Query: []QueryMatch{{Name: "q", Value: ""}}},
				Backends: []Backend{{"a.ns", 0}, {"b.ns", 0}}, RewriteHost: "orders.shop:8080", Idempotent: true},
			{Match: MatchConfig{Path: prefix("/api/")}, Backends: backends("a.ns"), RewritePrefix: "/"},
			{Match: MatchConfig{Path: PathMatch{Value: "/typeless"}}, Backends: backends("a.ns"), RewritePrefix: "/v2"},
			{Redirect: &Redirect{Scheme: "https", Host: "[::1]", Port: 8443, Code: 308}},
			{Fixed: &FixedResponse{Status: 204}, ResponseHeaders: HeaderOps{Set: [][2]string{{"x-a", "b\tc"}}}},
			{Fixed: &FixedResponse{Status: 503, Body: "{}", ContentType: "application/json; charset=utf-8"}},
		},
	}, {
		name: "paths",
		routes: []RouteConfig{
			{Match: MatchConfig{Path: prefix("api")}, Backends: backends("a.ns")},
			{Match: MatchConfig{Path: exact("")}, Backends: backends("a.ns")},
			{Match: MatchConfig{Path: PathMatch{Value: "x"}}, Backends: backends("a.ns")},
			{Match: MatchConfig{Path: regex("/(abc")}, Backends: backends("a.ns")},
			{Match: MatchConfig{Path: regex(`/\8`)}, Backends: backends("a.ns")},
			{Match: MatchConfig{Path: PathMatch{Type: "PathPrefix", Value: "/"}}, Backends: backends("a.ns")},
		},
		want: []string{
			`routes[0].match.path.value: "api" must start with "/"`,
			`routes[1].match.path.value: "" must start with "/"`,
			`routes[2].match.path.value: "x" must start with "/"`,
			"routes[3].match.path.value: error parsing regexp: missing closing ): `/(abc`",
			"routes[4].match.path.value: error parsing regexp: invalid escape sequence: `\\8`",
			`routes[5].match.path.type: unknown path type "PathPrefix" (want Exact, Prefix or Regex)`,
		},
	}, {
		name: "hosts",
		routes: []RouteConfig{{Match: MatchConfig{Hosts: []string{
			"", "*", "*.", "foo.*.com", "*foo.com", "f*.com", "*.*.com", "shop.example.com:8080",
			"-a.com", "a..com", "a.com.", "under_score.com", strings.Repeat("a", 64) + ".com", "https://a.com",
		}}, Backends: backends("a.ns")}},
		want: []string{
			`routes[0].match.hosts[0]: invalid host pattern "": want a DNS name like shop.example.com or a wildcard like *.example.com`,
			`routes[0].match.hosts[1]: "*": wildcard must be the whole leftmost label only, like *.example.com`,
			`routes[0].match.hosts[2]: invalid host pattern "*.": want a DNS name like shop.example.com or a wildcard like *.example.com`,
			`routes[0].match.hosts[3]: "foo.*.com": wildcard must be the whole leftmost label only, like *.example.com`,
			`routes[0].match.hosts[4]: "*foo.com": wildcard must be the whole leftmost label only, like *.example.com`,
			`routes[0].match.hosts[5]: "f*.com": wildcard must be the whole leftmost label only, like *.example.com`,
			`routes[0].match.hosts[6]: "*.*.com": wildcard must be the whole leftmost label only, like *.example.com`,
			`routes[0].match.hosts[7]: invalid host pattern "shop.example.com:8080": want a DNS name like shop.example.com or a wildcard like *.example.com`,
			`routes[0].match.hosts[8]: invalid host pattern "-a.com": want a DNS name like shop.example.com or a wildcard like *.example.com`,
			`routes[0].match.hosts[9]: invalid host pattern "a..com": want a DNS name like shop.example.com or a wildcard like *.example.com`,
			`routes[0].match.hosts[10]: invalid host pattern "a.com.": want a DNS name like shop.example.com or a wildcard like *.example.com`,
			`routes[0].match.hosts[11]: invalid host pattern "under_score.com": want a DNS name like shop.example.com or a wildcard like *.example.com`,
			`routes[0].match.hosts[12]: invalid host pattern "` + strings.Repeat("a", 64) + `.com": want a DNS name like shop.example.com or a wildcard like *.example.com`,
			`routes[0].match.hosts[13]: invalid host pattern "https://a.com": want a DNS name like shop.example.com or a wildcard like *.example.com`,
		},
	}, {
		name: "headers, methods, query",
		routes: []RouteConfig{{Match: MatchConfig{
			Headers: []HeaderMatch{{Name: "", Value: "x"}, {Name: "X Y", Value: "x"}, {Name: "X-A", Value: "[", Regex: true}, {Name: "X-B", Value: "[", Regex: false}},
			Methods: []string{"get", "GET", "", "GE T", "propfind"},
			Query:   []QueryMatch{{Name: "", Value: "x"}, {Name: "q", Value: "a{2,1}", Regex: true}},
		}, Backends: backends("a.ns")}},
		want: []string{
			`routes[0].match.headers[0].name: "" is not a valid header name (RFC 9110 token)`,
			`routes[0].match.headers[1].name: "X Y" is not a valid header name (RFC 9110 token)`,
			"routes[0].match.headers[2].value: error parsing regexp: missing closing ]: `[`",
			`routes[0].match.methods[0]: "get" never matches: methods are case-sensitive (RFC 9110 §9.1); want "GET"`,
			`routes[0].match.methods[2]: "" is not a valid method (RFC 9110 token)`,
			`routes[0].match.methods[3]: "GE T" is not a valid method (RFC 9110 token)`,
			`routes[0].match.query[0].name: must not be empty`,
			"routes[0].match.query[1].value: error parsing regexp: invalid repeat count: `{2,1}`",
		},
	}, {
		name: "actions",
		routes: []RouteConfig{
			{Name: "none"},
			{Name: "two", Backends: backends("a.ns"), Redirect: &Redirect{}},
			{Name: "three", Backends: backends("a.ns"), Redirect: &Redirect{}, Fixed: &FixedResponse{Status: 200}},
			{Name: "redirect-fixed", Redirect: &Redirect{}, Fixed: &FixedResponse{Status: 200}},
		},
		want: []string{
			`routes[0]: needs an action: backends, redirect or fixed`,
			`routes[1]: backends and redirect are mutually exclusive`,
			`routes[2]: backends and redirect and fixed are mutually exclusive`,
			`routes[3]: redirect and fixed are mutually exclusive`,
		},
	}, {
		name: "backends",
		routes: []RouteConfig{{Backends: []Backend{
			{Service: "orders"}, {Service: "Orders.shop"}, {Service: "a.b.c"}, {Service: "a.ns", Weight: 1}, {Service: "a.ns", Weight: 2},
		}}},
		want: []string{
			`routes[0].backends[0].service: invalid service key "orders": want name.namespace, like orders.shop`,
			`routes[0].backends[1].service: invalid service key "Orders.shop": "Orders" is not a DNS label (lower-case letters, digits and '-', at most 63, starting and ending with a letter or digit)`,
			`routes[0].backends[2].service: invalid service key "a.b.c": want name.namespace, like orders.shop`,
			`routes[0].backends[4].service: duplicate service "a.ns" (also backends[3])`,
		},
	}, {
		name: "redirect",
		routes: []RouteConfig{
			{Redirect: &Redirect{Scheme: "ftp", Host: "*.a.com", Path: "new", Port: 70000, Code: 200}},
			{Redirect: &Redirect{Port: -1, Code: 304}},
		},
		want: []string{
			`routes[0].redirect.scheme: "ftp" must be http or https`,
			`routes[0].redirect.host: "*.a.com" is not a host name or IP address`,
			`routes[0].redirect.path: "new" must start with "/"`,
			`routes[0].redirect.port: 70000 out of range 0..65535`,
			`routes[0].redirect.code: 200 is not a redirect code (want 301, 302, 303, 307 or 308)`,
			`routes[1].redirect.port: -1 out of range 0..65535`,
			`routes[1].redirect.code: 304 is not a redirect code (want 301, 302, 303, 307 or 308)`,
		},
	}, {
		name: "fixed",
		routes: []RouteConfig{
			{Fixed: &FixedResponse{}},
			{Fixed: &FixedResponse{Status: 199}},
			{Fixed: &FixedResponse{Status: 600}},
			{Fixed: &FixedResponse{Status: 204, Body: "x"}},
			{Fixed: &FixedResponse{Status: 304, Body: "x"}},
			{Fixed: &FixedResponse{Status: 200, ContentType: "text/"}},
		},
		want: []string{
			`routes[0].fixed.status: 0 out of range 200..599`,
			`routes[1].fixed.status: 199 out of range 200..599`,
			`routes[2].fixed.status: 600 out of range 200..599`,
			`routes[3].fixed.body: must be empty with status 204`,
			`routes[4].fixed.body: must be empty with status 304`,
			`routes[5].fixed.content_type: "text/": mime: expected token after slash`,
		},
	}, {
		name: "rewrites",
		routes: []RouteConfig{
			{Match: MatchConfig{Path: exact("/a")}, Backends: backends("a.ns"), RewritePrefix: "/b"},
			{Match: MatchConfig{Path: regex("/a")}, Backends: backends("a.ns"), RewritePrefix: "/b"},
			{Match: MatchConfig{Path: prefix("/a")}, Backends: backends("a.ns"), RewritePrefix: "b"},
			{Match: MatchConfig{Path: prefix("/a")}, Redirect: &Redirect{}, RewritePrefix: "/b", RewriteHost: "a.com"},
			{Backends: backends("a.ns"), RewriteHost: "a.com:0"},
			{Backends: backends("a.ns"), RewriteHost: "a b"},
			{Backends: backends("a.ns"), RewriteHost: "[::1]:80"},
		},
		want: []string{
			`routes[0].rewrite_prefix: needs a Prefix path match, not Exact`,
			`routes[1].rewrite_prefix: needs a Prefix path match, not Regex`,
			`routes[2].rewrite_prefix: "b" must start with "/"`,
			`routes[3].rewrite_prefix: applies only to a route with backends`,
			`routes[3].rewrite_host: applies only to a route with backends`,
			`routes[4].rewrite_host: "a.com:0" is not a host or host:port`,
			`routes[5].rewrite_host: "a b" is not a host or host:port`,
		},
	}, {
		name: "header ops",
		routes: []RouteConfig{{
			Backends: backends("a.ns"),
			RequestHeaders: HeaderOps{
				Set:    [][2]string{{"X-Ok", "v"}, {"bad name", "v"}, {"host", "a.com"}},
				Add:    [][2]string{{"X-Ok", "a\r\nb"}, {"X-Nul", "a\x00"}},
				Remove: []string{"", "Host"},
			},
			ResponseHeaders: HeaderOps{
				Set:    [][2]string{{"Host", "fine-on-a-response"}},
				Remove: []string{"x:y"},
			},
		}},
		want: []string{
			`routes[0].request_headers.set[1].name: "bad name" is not a valid header name (RFC 9110 token)`,
			`routes[0].request_headers.set[2].name: Host cannot be edited here; use rewrite_host`,
			`routes[0].request_headers.add[0].value: "a\r\nb" contains a control character (RFC 9110 §5.5)`,
			`routes[0].request_headers.add[1].value: "a\x00" contains a control character (RFC 9110 §5.5)`,
			`routes[0].request_headers.remove[0]: "" is not a valid header name (RFC 9110 token)`,
			`routes[0].request_headers.remove[1]: Host cannot be edited here; use rewrite_host`,
			`routes[0].response_headers.remove[0]: "x:y" is not a valid header name (RFC 9110 token)`,
		},
	}, {
		name: "names",
		routes: []RouteConfig{
			{Name: "a", Backends: backends("a.ns")},
			{Name: "b", Backends: backends("a.ns")},
			{Name: "a", Backends: backends("a.ns")},
			{Backends: backends("a.ns")},
			{Backends: backends("a.ns")},
		},
		want: []string{`routes[2].name: duplicate name "a" (also routes[0])`},
	}, {
		name: "every problem of one route, in field order",
		routes: []RouteConfig{{
			Match:         MatchConfig{Hosts: []string{"a.*"}, Path: PathMatch{Type: "Glob", Value: "*"}, Methods: []string{"G T"}},
			RewritePrefix: "/x",
			Fixed:         &FixedResponse{Status: 1},
		}},
		want: []string{
			`routes[0].match.hosts[0]: "a.*": wildcard must be the whole leftmost label only, like *.example.com`,
			`routes[0].match.path.type: unknown path type "Glob" (want Exact, Prefix or Regex)`,
			`routes[0].match.methods[0]: "G T" is not a valid method (RFC 9110 token)`,
			`routes[0].fixed.status: 1 out of range 200..599`,
			`routes[0].rewrite_prefix: needs a Prefix path match, not Glob`,
		},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Config{Routes: tc.routes}.Validate()
			if diff := cmp.Diff(messages(t, err), tc.want); diff != "" {
				t.Errorf("Validate messages (-got +want):\n%s", diff)
			}
			// New refuses exactly what Validate refuses.
			if _, nerr := New(Config{Routes: tc.routes}); (nerr == nil) != (err == nil) {
				t.Errorf("New error %v, Validate error %v", nerr, err)
			}
		})
	}
}
