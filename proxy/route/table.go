package route

import (
	"cmp"
	"net/http"
	"regexp"
	"slices"
	"strings"
)

// Table is a compiled, immutable route table. Its methods may be called from
// any goroutine at any time.
type Table struct {
	// Set by New, never modified: every field below is read-only.
	routes   []*Route // precedence order, for Routes
	warnings []string

	// Lookup by the request's normalized host. Each chain is the full list of
	// candidate routes for such a host in precedence order: the exact-host
	// routes, then the wildcard routes whose suffix covers it, then the
	// any-host routes. So Match makes at most two map lookups and one scan.
	exact map[string][]*Route // lower-case host → chain
	wild  map[string][]*Route // suffix after "*." → chain
	any   []*Route

	headerMatch bool // some route matches on headers
}

// Route is one compiled route. It is immutable; the engine keeps the pointer
// Match returned for the whole request.
type Route struct {
	// Name is RouteConfig.Name.
	Name string
	// Index is the route's position in Config.Routes.
	Index int
	// Config is the route as New understood it: a deep copy with defaults
	// applied (path type and value, redirect code, weights, content type),
	// hosts lower-cased and header names canonicalized. Read-only.
	Config RouteConfig

	// Compiled from Config.
	hosts    []string // deduplicated; wildcards keep their "*." prefix
	pathType PathType
	path     string         // Exact: the value; Prefix: the value without trailing "/" ("" for "/")
	pathRE   *regexp.Regexp // Regex: anchored
	methods  []string
	headers  []valueMatch // names canonical
	query    []valueMatch
	services []string // backends with a weight above zero
	cum      []uint64 // cumulative weights of services
	rewrite  string   // RewritePrefix
}

type valueMatch struct {
	name, value string
	re          *regexp.Regexp // nil: exact value
}

// New validates c and compiles it. The Table shares nothing with c.
func New(c Config) (*Table, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	t := &Table{
		routes: make([]*Route, len(c.Routes)),
		exact:  map[string][]*Route{},
		wild:   map[string][]*Route{},
	}
	for i, rc := range c.Routes {
		t.routes[i] = compile(i, rc)
		t.headerMatch = t.headerMatch || len(t.routes[i].headers) > 0
	}
	slices.SortStableFunc(t.routes, func(a, b *Route) int {
		if c := cmp.Compare(a.hostRank(), b.hostRank()); c != 0 {
			return c
		}
		return compareSameHost(a, b)
	})

	// Group by host pattern, each group in precedence order.
	byExact := map[string][]*Route{}
	byWild := map[string][]*Route{}
	for _, r := range t.routes {
		if len(r.hosts) == 0 {
			t.any = append(t.any, r)
		}
		for _, h := range r.hosts {
			if suffix, ok := strings.CutPrefix(h, "*."); ok {
				byWild[suffix] = append(byWild[suffix], r)
			} else {
				byExact[h] = append(byExact[h], r)
			}
		}
	}
	for _, g := range byExact {
		slices.SortStableFunc(g, compareSameHost)
	}
	for _, g := range byWild {
		slices.SortStableFunc(g, compareSameHost)
	}
	for suffix, g := range byWild {
		t.wild[suffix] = chain(g, t.any)
	}
	for host, g := range byExact {
		var w []*Route
		if i := strings.IndexByte(host, '.'); i > 0 {
			w = byWild[host[i+1:]]
		}
		t.exact[host] = chain(g, w, t.any)
	}
	t.warnings = warnings(t.routes)
	return t, nil
}

// chain concatenates groups, keeping the first of duplicates (a route that
// names both a.example.com and *.example.com ranks as an exact-host route).
func chain(groups ...[]*Route) []*Route {
	var out []*Route
	for _, g := range groups {
		for _, r := range g {
			if !slices.Contains(out, r) {
				out = append(out, r)
			}
		}
	}
	return out
}

// Routes returns the routes in precedence order. A route with several host
// patterns is placed by its most specific one. The slice is the caller's.
func (t *Table) Routes() []*Route { return slices.Clone(t.routes) }

// Warnings returns the table's routes that can never match, each with the
// route that takes all their requests. The slice is the caller's.
func (t *Table) Warnings() []string { return slices.Clone(t.warnings) }

// MatchesHeaders reports whether some route has a header condition: if
// not, Match ignores its header argument, and a caller may pass nil instead
// of building an http.Header.
func (t *Table) MatchesHeaders() bool { return t.headerMatch }

// Match returns the first route in precedence order whose conditions all
// hold for the request, or nil. host is the request's Host (a port and a
// trailing dot are ignored, case is not significant), path is the parsed
// r.URL.Path, rawQuery is r.URL.RawQuery. Match does not allocate unless a
// query parameter it must compare is percent-encoded.
func (t *Table) Match(host, path, method string, h http.Header, rawQuery string) *Route {
	for _, r := range t.candidates(host) {
		if r.matches(path, method, h, rawQuery) {
			return r
		}
	}
	return nil
}

// candidates returns the chain of routes for host.
func (t *Table) candidates(host string) []*Route {
	host = trimHost(host)
	if host == "" || len(host) > 253 {
		return t.any // not a DNS name: only any-host routes apply
	}
	var buf [253]byte
	b := buf[:len(host)]
	for i := 0; i < len(host); i++ {
		c := host[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b[i] = c
	}
	// m[string(b)] does not allocate.
	if c, ok := t.exact[string(b)]; ok {
		return c
	}
	for i, c := range b {
		if c == '.' {
			if i > 0 {
				if c, ok := t.wild[string(b[i+1:])]; ok {
					return c
				}
			}
			break
		}
	}
	return t.any
}

// trimHost removes a port and one trailing dot from a Host header value.
func trimHost(host string) string {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && i > strings.LastIndexByte(host, ']') {
		host = host[:i]
	}
	return strings.TrimSuffix(host, ".")
}

func (r *Route) matches(path, method string, h http.Header, rawQuery string) bool {
	switch r.pathType {
	case PathExact:
		if path != r.path {
			return false
		}
	case PathPrefix:
		if !prefixMatch(r.path, path) {
			return false
		}
	case PathRegex:
		if !r.pathRE.MatchString(path) {
			return false
		}
	}
	if len(r.methods) > 0 && !slices.Contains(r.methods, method) {
		return false
	}
	for i := range r.headers {
		if !r.headers[i].inHeader(h) {
			return false
		}
	}
	for i := range r.query {
		if !r.query[i].inQuery(rawQuery) {
			return false
		}
	}
	return true
}

// prefixMatch is Ingress pathType Prefix: p (without trailing "/") matches
// whole path segments, so "/foo" matches "/foo", "/foo/" and "/foo/bar" but
// not "/foobar"; "" (from "/") matches every path.
func prefixMatch(p, path string) bool {
	return strings.HasPrefix(path, p) && (len(path) == len(p) || p == "" || path[len(p)] == '/')
}

func (m *valueMatch) test(v string) bool {
	if m.re != nil {
		return m.re.MatchString(v)
	}
	return v == m.value
}

// inHeader reports whether some field line of the header matches. Field
// lines are not split on commas: a list-valued header matches as sent.
func (m *valueMatch) inHeader(h http.Header) bool {
	for _, v := range h[m.name] {
		if m.test(v) {
			return true
		}
	}
	return false
}

// inQuery reports whether some value of the parameter matches. It parses
// rawQuery as url.ParseQuery does (pairs with ";" or bad escapes are
// skipped) without building a map.
func (m *valueMatch) inQuery(rawQuery string) bool {
	for rawQuery != "" {
		var kv string
		kv, rawQuery, _ = strings.Cut(rawQuery, "&")
		if kv == "" || strings.Contains(kv, ";") {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		k, ok := unescape(k)
		if !ok || k != m.name {
			continue
		}
		if v, ok = unescape(v); ok && m.test(v) {
			return true
		}
	}
	return false
}
