package route

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// Explanation is how Match decides for one request: the candidate routes
// in precedence order up to the one that matched, each with the condition
// that failed. It is for the admin /why; Match itself never builds one.
type Explanation struct {
	// Host is the request's host as matched: lower-case, without a port
	// or trailing dot; "" when it is not a DNS name (then only routes
	// without hosts apply).
	Host string
	// Chain says which candidates the host selects: "exact host" (routes
	// naming the host, then wildcards covering it, then routes for any
	// host), "wildcard *.<suffix>" (that wildcard's routes, then any host)
	// or "any host" (only routes without hosts).
	Chain string
	// Tried are the candidates in precedence order, up to and including
	// the match (all of them when none matched).
	Tried []Trial
	// Match is the route Match returns for the request; nil when none.
	Match *Route
	// NotConsidered counts the table's routes that are no candidate: their
	// hosts do not cover the request's.
	NotConsidered int
}

// Trial is one candidate route and how it fared.
type Trial struct {
	Route *Route
	// Via is the host pattern through which the route is a candidate
	// ("" for a route without hosts).
	Via string
	// Failed is the first of its conditions that does not hold, in the
	// order path, method, headers, query; "" for the match.
	Failed string
}

// Explain is Match with its reasons. It allocates, and is meant for
// introspection, not for the request path; its Match is always the route
// Match returns for the same arguments.
func (t *Table) Explain(host, path, method string, h http.Header, rawQuery string) Explanation {
	x := Explanation{Host: trimHost(host)}
	if x.Host == "" || len(x.Host) > 253 {
		x.Host = ""
	}
	x.Host = asciiLower(x.Host) // as candidates does
	cands := t.candidates(host)
	switch {
	case x.Host == "":
		x.Chain = "any host"
	case t.exact[x.Host] != nil:
		x.Chain = "exact host"
	default:
		x.Chain = "any host"
		if _, suffix, ok := strings.Cut(x.Host, "."); ok && !strings.HasPrefix(x.Host, ".") && t.wild[suffix] != nil {
			x.Chain = "wildcard *." + suffix
		}
	}
	x.NotConsidered = len(t.routes) - len(cands)
	for _, r := range cands {
		tr := Trial{Route: r, Via: r.via(x.Host), Failed: r.mismatch(path, method, h, rawQuery)}
		x.Tried = append(x.Tried, tr)
		if tr.Failed == "" {
			x.Match = r
			break
		}
	}
	return x
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// via is the host pattern of r that covers host ("" when r has no hosts).
func (r *Route) via(host string) string {
	if len(r.hosts) == 0 {
		return ""
	}
	if slices.Contains(r.hosts, host) {
		return host
	}
	if _, suffix, ok := strings.Cut(host, "."); ok && slices.Contains(r.hosts, "*."+suffix) {
		return "*." + suffix
	}
	return ""
}

// mismatch names the first condition of r that the request fails, or ""
// when all hold. It checks what matches checks, in the same order.
func (r *Route) mismatch(path, method string, h http.Header, rawQuery string) string {
	switch r.pathType {
	case PathExact:
		if path != r.path {
			return fmt.Sprintf("path %q is not exactly %q", path, r.path)
		}
	case PathPrefix:
		if !prefixMatch(r.path, path) {
			return fmt.Sprintf("path %q is not under prefix %q", path, r.Config.Match.Path.Value)
		}
	case PathRegex:
		if !r.pathRE.MatchString(path) {
			return fmt.Sprintf("path %q does not match regex %q", path, r.Config.Match.Path.Value)
		}
	}
	if len(r.methods) > 0 && !slices.Contains(r.methods, method) {
		return fmt.Sprintf("method %q is not %s", method, strings.Join(r.methods, " or "))
	}
	for i := range r.headers {
		if m := &r.headers[i]; !m.inHeader(h) {
			return fmt.Sprintf("header %s: %s", m.name, m.want(len(h[m.name]) == 0))
		}
	}
	for i := range r.query {
		if m := &r.query[i]; !m.inQuery(rawQuery) {
			return fmt.Sprintf("query parameter %s: %s", m.name, m.want(false))
		}
	}
	return ""
}

func (m *valueMatch) want(absent bool) string {
	switch {
	case absent:
		return "absent"
	case m.re != nil:
		return fmt.Sprintf("no value matches regex %q", m.value)
	}
	return fmt.Sprintf("no value equals %q", m.value)
}

// Conditions describes r's match conditions, one per entry, as the config
// states them with defaults applied ("path Prefix /api", "method GET or
// HEAD", "header X-Canary = 1", "query v ~ [0-9]+").
func (r *Route) Conditions() []string {
	m := r.Config.Match
	var out []string
	if len(m.Hosts) > 0 {
		out = append(out, "host "+strings.Join(m.Hosts, " or "))
	} else {
		out = append(out, "any host")
	}
	out = append(out, fmt.Sprintf("path %s %s", m.Path.Type, m.Path.Value))
	if len(m.Methods) > 0 {
		out = append(out, "method "+strings.Join(m.Methods, " or "))
	}
	for _, hm := range m.Headers {
		out = append(out, fmt.Sprintf("header %s %s %s", hm.Name, op(hm.Regex), hm.Value))
	}
	for _, qm := range m.Query {
		out = append(out, fmt.Sprintf("query %s %s %s", qm.Name, op(qm.Regex), qm.Value))
	}
	return out
}

func op(regex bool) string {
	if regex {
		return "~"
	}
	return "="
}
