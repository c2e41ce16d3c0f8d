package route

import (
	"cmp"
	"math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// compile builds the Route for a validated config.
func compile(i int, rc RouteConfig) *Route {
	r := &Route{Name: rc.Name, Index: i}

	m := rc.Match
	var hosts []string
	for _, h := range m.Hosts {
		h = strings.ToLower(h)
		if !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	r.hosts = hosts

	r.pathType = cmp.Or(m.Path.Type, PathPrefix)
	val := m.Path.Value
	switch r.pathType {
	case PathPrefix:
		val = cmp.Or(val, "/")
		r.path = strings.TrimRight(val, "/")
	case PathExact:
		r.path = val
	case PathRegex:
		r.pathRE = anchored(val)
	}

	r.methods = slices.Clone(m.Methods)
	var headers []HeaderMatch
	for _, hm := range m.Headers {
		hm.Name = http.CanonicalHeaderKey(hm.Name)
		headers = append(headers, hm)
		r.headers = append(r.headers, valueMatch{name: hm.Name, value: hm.Value, re: anchoredIf(hm.Regex, hm.Value)})
	}
	for _, qm := range m.Query {
		r.query = append(r.query, valueMatch{name: qm.Name, value: qm.Value, re: anchoredIf(qm.Regex, qm.Value)})
	}

	// Backends: all weights zero means an equal split.
	backends := slices.Clone(rc.Backends)
	allZero := !slices.ContainsFunc(backends, func(b Backend) bool { return b.Weight > 0 })
	var total uint64
	for k := range backends {
		if allZero {
			backends[k].Weight = 1
		}
		if w := backends[k].Weight; w > 0 {
			total += uint64(w)
			r.services = append(r.services, backends[k].Service)
			r.cum = append(r.cum, total)
		}
	}
	r.rewrite = rc.RewritePrefix

	r.Config = RouteConfig{
		Name: rc.Name,
		Match: MatchConfig{
			Hosts:   hosts,
			Path:    PathMatch{Type: r.pathType, Value: val},
			Headers: headers,
			Methods: slices.Clone(m.Methods),
			Query:   slices.Clone(m.Query),
		},
		Backends:        backends,
		RequestHeaders:  canonicalOps(rc.RequestHeaders),
		ResponseHeaders: canonicalOps(rc.ResponseHeaders),
		RewritePrefix:   rc.RewritePrefix,
		RewriteHost:     rc.RewriteHost,
		Idempotent:      rc.Idempotent,
		Timeout:         rc.Timeout,
	}
	if rc.Redirect != nil {
		rd := *rc.Redirect
		rd.Code = cmp.Or(rd.Code, http.StatusFound)
		r.Config.Redirect = &rd
	}
	if rc.Fixed != nil {
		fx := *rc.Fixed
		if fx.Body != "" && fx.ContentType == "" {
			fx.ContentType = "text/plain; charset=utf-8"
		}
		r.Config.Fixed = &fx
	}
	return r
}

// anchored compiles a validated RE2 expression to match whole strings only.
func anchored(expr string) *regexp.Regexp {
	return regexp.MustCompile(`\A(?:` + expr + `)\z`)
}

func anchoredIf(ok bool, expr string) *regexp.Regexp {
	if !ok {
		return nil
	}
	return anchored(expr)
}

func canonicalOps(ops HeaderOps) HeaderOps {
	var out HeaderOps
	for _, kv := range ops.Set {
		out.Set = append(out.Set, [2]string{http.CanonicalHeaderKey(kv[0]), kv[1]})
	}
	for _, kv := range ops.Add {
		out.Add = append(out.Add, [2]string{http.CanonicalHeaderKey(kv[0]), kv[1]})
	}
	for _, name := range ops.Remove {
		out.Remove = append(out.Remove, http.CanonicalHeaderKey(name))
	}
	return out
}

// hostRank orders routes by their most specific host pattern: exact hosts
// first, then wildcards by descending suffix length, then any-host routes.
func (r *Route) hostRank() int {
	if len(r.hosts) == 0 {
		return 1 << 20
	}
	best := 1 << 19
	for _, h := range r.hosts {
		if !strings.HasPrefix(h, "*.") {
			return 0
		}
		best = min(best, 1<<10-len(h))
	}
	return best
}

// compareSameHost orders two routes that apply to the same host by the rest
// of the precedence rules (see the package doc).
func compareSameHost(a, b *Route) int {
	kind := func(r *Route) int {
		switch r.pathType {
		case PathExact:
			return 0
		case PathPrefix:
			return 1
		}
		return 2
	}
	hasMethods := func(r *Route) int {
		if len(r.methods) > 0 {
			return 0
		}
		return 1
	}
	if c := cmp.Compare(kind(a), kind(b)); c != 0 {
		return c
	}
	if a.pathType == PathPrefix {
		if c := cmp.Compare(len(b.path), len(a.path)); c != 0 {
			return c
		}
	}
	if c := cmp.Compare(hasMethods(a), hasMethods(b)); c != 0 {
		return c
	}
	if c := cmp.Compare(len(b.headers), len(a.headers)); c != 0 {
		return c
	}
	if c := cmp.Compare(len(b.query), len(a.query)); c != 0 {
		return c
	}
	return cmp.Compare(a.Index, b.Index)
}

// unescape is url.QueryUnescape without allocating when there is nothing
// to decode.
func unescape(s string) (string, bool) {
	if strings.IndexByte(s, '%') < 0 && strings.IndexByte(s, '+') < 0 {
		return s, true
	}
	u, err := url.QueryUnescape(s)
	return u, err == nil
}

// PickBackend returns a service of the route's weighted split, at random in
// proportion to the weights; a backend of weight zero is never returned. It
// returns "" for a Redirect or Fixed route. Lock-free, no allocation.
func (r *Route) PickBackend() string {
	switch len(r.services) {
	case 0:
		return ""
	case 1:
		return r.services[0]
	}
	x := rand.Uint64N(r.cum[len(r.cum)-1])
	lo, hi := 0, len(r.cum)-1
	for lo < hi { // first i with cum[i] > x
		mid := int(uint(lo+hi) >> 1)
		if r.cum[mid] > x {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return r.services[lo]
}

// RewritePath applies RewritePrefix to a path this route matched, segment
// by segment as Gateway API's ReplacePrefixMatch: with Prefix "/api" and
// RewritePrefix "/v2", "/api/x" becomes "/v2/x" and "/api" becomes "/v2";
// RewritePrefix "/" strips the prefix ("/api/x" becomes "/x", "/api"
// becomes "/"). Without a RewritePrefix, or for a path the prefix does not
// match, it returns path unchanged.
func (r *Route) RewritePath(path string) string {
	if r.rewrite == "" || r.pathType != PathPrefix || !prefixMatch(r.path, path) {
		return path
	}
	rest := path[len(r.path):]
	if rest == "" {
		return r.rewrite
	}
	return strings.TrimSuffix(r.rewrite, "/") + rest
}
