package route

import (
	"fmt"
	"slices"
)

// warnings finds routes that can never match because a route ahead of them
// in precedence takes every request they would: one with the same or more
// hosts (the same host class for each), a path that covers theirs, and a
// subset of their header, query and method conditions. The check is
// conservative: it never warns about a reachable route, but it does not
// find every unreachable one (two regexes, say). routes is in precedence
// order, so the route named for each is the first that shadows it; warnings
// come in config order.
func warnings(routes []*Route) []string {
	type shadow struct{ b, a *Route }
	var found []shadow
	for _, b := range routes {
		for _, a := range routes {
			if a != b && compareSameHost(a, b) < 0 && covers(a, b) {
				found = append(found, shadow{b, a})
				break
			}
		}
	}
	slices.SortFunc(found, func(x, y shadow) int { return x.b.Index - y.b.Index })
	var out []string
	for _, s := range found {
		out = append(out, fmt.Sprintf("%s can never match: %s matches every request it does", label(s.b), label(s.a)))
	}
	return out
}

func label(r *Route) string {
	if r.Name == "" {
		return fmt.Sprintf("routes[%d]", r.Index)
	}
	return fmt.Sprintf("routes[%d] (%q)", r.Index, r.Name)
}

// covers reports whether every request b matches is matched by a, given
// that a is ahead of b among routes for the same host.
func covers(a, b *Route) bool {
	// Hosts: each of b's patterns is one of a's, so they rank in the same
	// host class for every request b could take; any-host only covers
	// any-host (for a host-specific b ranks higher).
	if (len(a.hosts) == 0) != (len(b.hosts) == 0) {
		return false
	}
	for _, h := range b.hosts {
		if !slices.Contains(a.hosts, h) {
			return false
		}
	}
	switch a.pathType {
	case PathPrefix:
		switch b.pathType {
		case PathPrefix, PathExact:
			if !prefixMatch(a.path, b.path) {
				return false
			}
		case PathRegex:
			if a.path != "" {
				return false
			}
		}
	default: // Exact or Regex: only the same condition
		if a.pathType != b.pathType || a.Config.Match.Path.Value != b.Config.Match.Path.Value {
			return false
		}
	}
	if len(a.methods) > 0 {
		if len(b.methods) == 0 {
			return false
		}
		for _, m := range b.methods {
			if !slices.Contains(a.methods, m) {
				return false
			}
		}
	}
	return subset(a.headers, b.headers) && subset(a.query, b.query)
}

// subset reports whether every condition of a is also one of b's.
func subset(a, b []valueMatch) bool {
	for _, x := range a {
		if !slices.ContainsFunc(b, func(y valueMatch) bool {
			return x.name == y.name && x.value == y.value && (x.re == nil) == (y.re == nil)
		}) {
			return false
		}
	}
	return true
}
