package route

import (
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// fuzzRoutes exercises every kind of condition.
var fuzzRoutes = []RouteConfig{
	to("shop-api", MatchConfig{Hosts: []string{"shop.example.com"}, Path: prefix("/api/")}),
	to("shop-exact", MatchConfig{Hosts: []string{"shop.example.com"}, Path: exact("/")}),
	to("shop-canary", MatchConfig{Hosts: []string{"shop.example.com"}, Path: prefix("/api"), Headers: []HeaderMatch{{Name: "x-canary", Value: "1"}}}),
	to("wild", MatchConfig{Hosts: []string{"*.example.com"}, Path: prefix("/")}),
	to("wild-post", MatchConfig{Hosts: []string{"*.example.com", "api.example.org"}, Path: prefix("/a/b"), Methods: []string{"POST", "PUT"}}),
	to("wild-org", MatchConfig{Hosts: []string{"*.example.org"}, Path: regex("/v[0-9]+/.*")}),
	to("short-wild", MatchConfig{Hosts: []string{"*.org"}, Path: prefix("/a")}),
	to("ua", MatchConfig{Path: prefix("/"), Headers: []HeaderMatch{{Name: "User-Agent", Value: "curl/.*", Regex: true}}}),
	to("query", MatchConfig{Path: prefix("/q"), Query: []QueryMatch{{Name: "v", Value: "1"}, {Name: "x", Value: "[a-z]+", Regex: true}}}),
	to("regex", MatchConfig{Path: regex("/r/[^/]*|/s")}),
	to("exact-any", MatchConfig{Path: exact("/exact")}),
	to("get", MatchConfig{Path: prefix("/g"), Methods: []string{"GET"}}),
}

// oracle recomputes, with different code, whether route r applies to the
// request and how it ranks: the host class it matched through, or ok false.
func oracle(rc RouteConfig, host, path, method string, h http.Header, rawQuery string) (class int, ok bool) {
	// Host: strip the port (anything after the last colon outside
	// brackets) and a trailing dot; compare lower-case.
	hn := host
	if i := strings.LastIndex(hn, ":"); i >= 0 && !strings.Contains(hn[i:], "]") {
		hn = hn[:i]
	}
	// ASCII case only: strings.ToLower would also turn invalid UTF-8
	// into U+FFFD (three bytes each) and change the length.
	hn = asciiLower(strings.TrimSuffix(hn, "."))
	if len(hn) > 253 {
		hn = ""
	}
	class = 3
	if len(rc.Match.Hosts) == 0 {
		class = 2
	}
	for _, pat := range rc.Match.Hosts {
		pat = asciiLower(pat)
		if hn != "" && pat == hn {
			class = 0
		} else if suffix, wild := strings.CutPrefix(pat, "*."); wild {
			labels := strings.SplitN(hn, ".", 2)
			if len(labels) == 2 && labels[0] != "" && labels[1] == suffix {
				class = min(class, 1)
			}
		}
	}
	if class == 3 {
		return 0, false
	}

	p := rc.Match.Path
	switch p.Type {
	case PathExact:
		if path != p.Value {
			return 0, false
		}
	case PathPrefix, "":
		want := strings.Split(strings.TrimRight(p.Value, "/"), "/")
		got := strings.Split(path, "/")
		if len(want) > 1 && (len(got) < len(want) || !slices.Equal(got[:len(want)], want)) {
			return 0, false
		}
	case PathRegex:
		if !fullMatch(p.Value, path) {
			return 0, false
		}
	}
	if len(rc.Match.Methods) > 0 && !slices.Contains(rc.Match.Methods, method) {
		return 0, false
	}
	for _, hm := range rc.Match.Headers {
		if !slices.ContainsFunc(h.Values(hm.Name), func(v string) bool {
			return hm.Regex && fullMatch(hm.Value, v) || !hm.Regex && v == hm.Value
		}) {
			return 0, false
		}
	}
	q, _ := url.ParseQuery(rawQuery)
	for _, qm := range rc.Match.Query {
		if !slices.ContainsFunc(q[qm.Name], func(v string) bool {
			return qm.Regex && fullMatch(qm.Value, v) || !qm.Regex && v == qm.Value
		}) {
			return 0, false
		}
	}
	return class, true
}

// fullMatch reports whether expr matches all of s: the leftmost-longest
// match starts at 0 and ends at len(s) exactly when a whole match exists.
func fullMatch(expr, s string) bool {
	re := regexp.MustCompile(expr)
	re.Longest()
	loc := re.FindStringIndex(s)
	return loc != nil && loc[0] == 0 && loc[1] == len(s)
}

func FuzzMatch(f *testing.F) {
	tab := mustNew(f, fuzzRoutes...)
	routes := tab.Routes()
	f.Add("shop.example.com", "/api/orders", "GET", "X-Canary", "1", "")
	f.Add("SHOP.example.com:8080", "/api", "GET", "x-canary", "1", "")
	f.Add("shop.example.com.", "/", "HEAD", "", "", "")
	f.Add("a.example.com", "/a/b/c", "POST", "", "", "")
	f.Add("api.example.org", "/a/b", "PUT", "", "", "")
	f.Add("x.example.org", "/v2/x", "GET", "", "", "")
	f.Add("example.org", "/a", "GET", "", "", "")
	f.Add("a.b.example.com", "/a", "GET", "User-Agent", "curl/8", "")
	f.Add("", "/q", "GET", "", "", "v=1&x=abc")
	f.Add("h", "/q/", "GET", "", "", "v=%31&x=a%62c;y")
	f.Add("h", "/r/x", "DELETE", "", "", "")
	f.Add("[::1]:80", "/s", "GET", "", "", "")
	f.Add("h", "/exact", "GET", "", "", "")
	f.Add("h", "/g", "get", "", "", "")
	f.Add("h", "", "", "", "", "")
	f.Fuzz(func(t *testing.T, host, path, method, hname, hvalue, rawQuery string) {
		h := http.Header{}
		if hname != "" {
			h.Add(hname, hvalue)
		}
		got := tab.Match(host, path, method, h, rawQuery)

		// The winner by brute force over all routes, ranked by (host class,
		// same-host precedence).
		var want *Route
		wantClass := 0
		for _, r := range routes {
			class, ok := oracle(fuzzRoutes[r.Index], host, path, method, h, rawQuery)
			if !ok {
				continue
			}
			if want == nil || class < wantClass || class == wantClass && compareSameHost(r, want) < 0 {
				want, wantClass = r, class
			}
		}
		if got != want {
			name := func(r *Route) string {
				if r == nil {
					return "<nil>"
				}
				return r.Name
			}
			t.Fatalf("Match(%q, %q, %q, %v, %q) = %s, want %s", host, path, method, h, rawQuery, name(got), name(want))
		}
		// Explain agrees with Match, and names a failed condition for
		// every candidate before the match.
		x := tab.Explain(host, path, method, h, rawQuery)
		if x.Match != got {
			t.Fatalf("Explain(%q, %q, %q, %v, %q) matched %v, Match %v", host, path, method, h, rawQuery, x.Match, got)
		}
		for i, tr := range x.Tried {
			if last := i == len(x.Tried)-1 && got != nil; (tr.Failed == "") != last {
				t.Fatalf("Explain: candidate %d (%s) failed %q; match %v", i, tr.Route.Name, tr.Failed, got)
			}
		}
		if got != nil {
			if _, ok := oracle(fuzzRoutes[got.Index], host, path, method, h, rawQuery); !ok {
				t.Fatalf("Match returned %s whose conditions do not hold", got.Name)
			}
			got.RewritePath(path)
			got.PickBackend()
		}
	})
}
