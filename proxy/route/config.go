package route

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/outrigger-mesh/outrigger/discovery"
)

// Config is the route table as the user wrote it, in config order.
type Config struct {
	Routes []RouteConfig
}

// RouteConfig is one route: the requests it takes and what happens to them.
type RouteConfig struct {
	// Name identifies the route in warnings, logs and the admin page.
	// Optional; when set it must be unique in the table.
	Name  string
	Match MatchConfig

	// Exactly one action: Backends (a weighted split over services),
	// Redirect or Fixed.
	Backends []Backend
	Redirect *Redirect
	Fixed    *FixedResponse

	// RequestHeaders change the request sent upstream; ResponseHeaders
	// change the response sent to the client.
	RequestHeaders, ResponseHeaders HeaderOps

	// RewritePrefix replaces the matched path prefix before the request goes
	// upstream, like Gateway API's ReplacePrefixMatch; only with a Prefix
	// path match and Backends. "" means no rewrite; "/" strips the prefix.
	RewritePrefix string
	// RewriteHost sets the upstream Host header ("host" or "host:port");
	// only with Backends.
	RewriteHost string
	// Idempotent marks the route's requests as safe to retry.
	Idempotent bool
	// Timeout bounds a request's wait for its response head, over every
	// attempt and backoff, counted from when the proxy starts forwarding
	// it (Gateway API's timeouts.request); 0 means none. Only with
	// Backends. The engines enforce it (proxy's timeout.go).
	Timeout time.Duration
}

// MatchConfig is the conditions a request must meet, all of them.
type MatchConfig struct {
	// Hosts is any of: exact "shop.example.com" or wildcard "*.example.com"
	// (exactly one leftmost label: a.example.com, not example.com nor
	// a.b.example.com). Empty means any host.
	Hosts []string
	// Path is matched against the parsed URL path. Zero value: Prefix "/".
	Path PathMatch
	// Headers must all match.
	Headers []HeaderMatch
	// Methods is any of; empty means any method.
	Methods []string
	// Query parameters must all match.
	Query []QueryMatch
}

// PathType says how PathMatch.Value is compared with the request path.
type PathType string

// Path types. The empty PathType means PathPrefix.
const (
	// PathExact matches the path exactly, byte for byte.
	PathExact PathType = "Exact"
	// PathPrefix matches whole path segments, as Ingress pathType Prefix.
	PathPrefix PathType = "Prefix"
	// PathRegex matches when the RE2 expression matches the whole path.
	PathRegex PathType = "Regex"
)

// PathMatch is a path condition.
type PathMatch struct {
	Type  PathType
	Value string
}

// HeaderMatch is a request header condition: some field line of header Name
// equals Value (case-sensitive) or, with Regex, matches Value as a whole
// (RE2). Use Regex ".*" for "header present".
type HeaderMatch struct {
	Name, Value string
	Regex       bool
}

// QueryMatch is a query parameter condition: some value of parameter Name
// (case-sensitive, after URL decoding) equals Value or, with Regex, matches
// Value as a whole (RE2).
type QueryMatch struct {
	Name, Value string
	Regex       bool
}

// Backend is one service of a weighted split. If every backend's Weight is
// zero they share traffic equally; otherwise a zero Weight takes no traffic
// (drain one side of a canary).
type Backend struct {
	Service string // discovery service key, name.namespace
	Weight  uint32
}

// Redirect answers with a redirect. Empty fields keep the request's value;
// Port 0 keeps the request's port; Code 0 means 302.
type Redirect struct {
	Scheme, Host, Path string
	Port               int
	Code               int
}

// FixedResponse answers without going upstream. ContentType defaults to
// "text/plain; charset=utf-8" when Body is set.
type FixedResponse struct {
	Status      int
	Body        string
	ContentType string
}

// HeaderOps edits headers in the order Remove, Set, Add. Set and Add are
// ordered (name, value) pairs; names are canonicalized by New.
type HeaderOps struct {
	Set, Add [][2]string
	Remove   []string
}

// FieldError is one config problem at a field path relative to the route
// list, like "routes[2].match.path.value".
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// Validate returns nil or the errors.Join of one *FieldError per problem,
// every problem, in config order.
func (c Config) Validate() error {
	v := validator{}
	names := map[string]int{}
	for i, r := range c.Routes {
		p := fmt.Sprintf("routes[%d]", i)
		if r.Name != "" {
			if j, dup := names[r.Name]; dup {
				v.add(p+".name", "duplicate name %q (also routes[%d])", r.Name, j)
			} else {
				names[r.Name] = i
			}
		}
		v.match(p+".match", r.Match)
		v.action(p, r)
		v.headerOps(p+".request_headers", r.RequestHeaders, true)
		v.headerOps(p+".response_headers", r.ResponseHeaders, false)
		switch {
		case r.Timeout < 0:
			v.add(p+".timeout", "must not be negative")
		case r.Timeout > 0 && len(r.Backends) == 0:
			v.add(p+".timeout", "applies only to a route with backends")
		}
	}
	return errors.Join(v.errs...)
}

var standardMethods = []string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}

type validator struct{ errs []error }

func (v *validator) add(field, format string, args ...any) {
	v.errs = append(v.errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) match(p string, m MatchConfig) {
	for j, h := range m.Hosts {
		if msg := checkHostPattern(h); msg != "" {
			v.add(fmt.Sprintf("%s.hosts[%d]", p, j), "%s", msg)
		}
	}
	switch m.Path.Type {
	case "", PathPrefix, PathExact:
		if m.Path.Value == "" && m.Path.Type != PathExact {
			break // Prefix "/"
		}
		if !strings.HasPrefix(m.Path.Value, "/") {
			v.add(p+".path.value", "%q must start with \"/\"", m.Path.Value)
		}
	case PathRegex:
		if _, err := regexp.Compile(m.Path.Value); err != nil {
			v.add(p+".path.value", "%v", err)
		}
	default:
		v.add(p+".path.type", "unknown path type %q (want Exact, Prefix or Regex)", m.Path.Type)
	}
	for j, h := range m.Headers {
		f := fmt.Sprintf("%s.headers[%d]", p, j)
		if !isToken(h.Name) {
			v.add(f+".name", "%q is not a valid header name (RFC 9110 token)", h.Name)
		}
		if h.Regex {
			if _, err := regexp.Compile(h.Value); err != nil {
				v.add(f+".value", "%v", err)
			}
		}
	}
	for j, meth := range m.Methods {
		if !isToken(meth) {
			v.add(fmt.Sprintf("%s.methods[%d]", p, j), "%q is not a valid method (RFC 9110 token)", meth)
		} else if up := strings.ToUpper(meth); up != meth && slices.Contains(standardMethods, up) {
			v.add(fmt.Sprintf("%s.methods[%d]", p, j), "%q never matches: methods are case-sensitive (RFC 9110 §9.1); want %q", meth, up)
		}
	}
	for j, q := range m.Query {
		f := fmt.Sprintf("%s.query[%d]", p, j)
		if q.Name == "" {
			v.add(f+".name", "must not be empty")
		}
		if q.Regex {
			if _, err := regexp.Compile(q.Value); err != nil {
				v.add(f+".value", "%v", err)
			}
		}
	}
}

func (v *validator) action(p string, r RouteConfig) {
	var actions []string
	if len(r.Backends) > 0 {
		actions = append(actions, "backends")
	}
	if r.Redirect != nil {
		actions = append(actions, "redirect")
	}
	if r.Fixed != nil {
		actions = append(actions, "fixed")
	}
	switch len(actions) {
	case 0:
		v.add(p, "needs an action: backends, redirect or fixed")
	case 1:
	default:
		v.add(p, "%s are mutually exclusive", strings.Join(actions, " and "))
	}

	seen := map[string]int{}
	for j, b := range r.Backends {
		f := fmt.Sprintf("%s.backends[%d].service", p, j)
		if err := discovery.ValidateService(b.Service); err != nil {
			v.add(f, "%v", err)
		} else if k, dup := seen[b.Service]; dup {
			v.add(f, "duplicate service %q (also backends[%d])", b.Service, k)
		} else {
			seen[b.Service] = j
		}
	}

	if r.Redirect != nil {
		v.redirect(p+".redirect", r.Redirect)
	}
	if r.Fixed != nil {
		v.fixed(p+".fixed", r.Fixed)
	}
	v.rewrites(p, r)
}

func (v *validator) redirect(f string, rd *Redirect) {
	switch rd.Scheme {
	case "", "http", "https":
	default:
		v.add(f+".scheme", "%q must be http or https", rd.Scheme)
	}
	if rd.Host != "" && !isDNSName(rd.Host) && !isIP(rd.Host) {
		v.add(f+".host", "%q is not a host name or IP address", rd.Host)
	}
	if rd.Path != "" && !strings.HasPrefix(rd.Path, "/") {
		v.add(f+".path", "%q must start with \"/\"", rd.Path)
	}
	if rd.Port < 0 || rd.Port > 65535 {
		v.add(f+".port", "%d out of range 0..65535", rd.Port)
	}
	switch rd.Code {
	case 0, 301, 302, 303, 307, 308:
	default:
		v.add(f+".code", "%d is not a redirect code (want 301, 302, 303, 307 or 308)", rd.Code)
	}
}

func (v *validator) fixed(f string, fx *FixedResponse) {
	if fx.Status < 200 || fx.Status > 599 {
		v.add(f+".status", "%d out of range 200..599", fx.Status)
	} else if (fx.Status == 204 || fx.Status == 304) && fx.Body != "" {
		// RFC 9110 §15.3.5, §15.4.5: these responses have no content.
		v.add(f+".body", "must be empty with status %d", fx.Status)
	}
	if fx.ContentType != "" {
		if _, _, err := mime.ParseMediaType(fx.ContentType); err != nil {
			v.add(f+".content_type", "%q: %v", fx.ContentType, err)
		}
	}
}

func (v *validator) rewrites(p string, r RouteConfig) {
	if r.RewritePrefix != "" {
		f := p + ".rewrite_prefix"
		switch {
		case r.Match.Path.Type != "" && r.Match.Path.Type != PathPrefix:
			v.add(f, "needs a Prefix path match, not %s", r.Match.Path.Type)
		case !strings.HasPrefix(r.RewritePrefix, "/"):
			v.add(f, "%q must start with \"/\"", r.RewritePrefix)
		case len(r.Backends) == 0:
			v.add(f, "applies only to a route with backends")
		}
	}
	if r.RewriteHost != "" {
		f := p + ".rewrite_host"
		if !isHostPort(r.RewriteHost) {
			v.add(f, "%q is not a host or host:port", r.RewriteHost)
		} else if len(r.Backends) == 0 {
			v.add(f, "applies only to a route with backends")
		}
	}
}

func (v *validator) headerOps(p string, ops HeaderOps, request bool) {
	check := func(f, name string) {
		if !isToken(name) {
			v.add(f, "%q is not a valid header name (RFC 9110 token)", name)
		} else if request && http.CanonicalHeaderKey(name) == "Host" {
			v.add(f, "Host cannot be edited here; use rewrite_host")
		}
	}
	for _, list := range []struct {
		field string
		pairs [][2]string
	}{{"set", ops.Set}, {"add", ops.Add}} {
		for j, kv := range list.pairs {
			f := fmt.Sprintf("%s.%s[%d]", p, list.field, j)
			check(f+".name", kv[0])
			if !isFieldValue(kv[1]) {
				v.add(f+".value", "%q contains a control character (RFC 9110 §5.5)", kv[1])
			}
		}
	}
	for j, name := range ops.Remove {
		check(fmt.Sprintf("%s.remove[%d]", p, j), name)
	}
}

// checkHostPattern returns "" for a valid host pattern, else the problem.
func checkHostPattern(h string) string {
	const want = "want a DNS name like shop.example.com or a wildcard like *.example.com"
	if rest, ok := strings.CutPrefix(h, "*."); ok {
		if strings.Contains(rest, "*") {
			return fmt.Sprintf("%q: wildcard must be the whole leftmost label only, like *.example.com", h)
		}
		if !isDNSName(rest) {
			return fmt.Sprintf("invalid host pattern %q: %s", h, want)
		}
		return ""
	}
	if strings.Contains(h, "*") {
		return fmt.Sprintf("%q: wildcard must be the whole leftmost label only, like *.example.com", h)
	}
	if !isDNSName(h) {
		return fmt.Sprintf("invalid host pattern %q: %s", h, want)
	}
	return ""
}

// isDNSName reports whether s is a DNS name of letters, digits and hyphens
// (RFC 1123 labels, any case), at most 253 bytes; IPv4 addresses pass too.
func isDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

func isIP(s string) bool {
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		a, err := netip.ParseAddr(s[1 : len(s)-1])
		return err == nil && a.Is6()
	}
	_, err := netip.ParseAddr(s)
	return err == nil && !strings.Contains(s, ":")
}

func isHostPort(s string) bool {
	host := s
	if i := strings.LastIndexByte(s, ':'); i > strings.LastIndexByte(s, ']') {
		host = s[:i]
		n, err := strconv.Atoi(s[i+1:])
		if err != nil || n < 1 || n > 65535 {
			return false
		}
	}
	return isDNSName(host) || isIP(host)
}

// isToken reports whether s is an RFC 9110 §5.6.2 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// isFieldValue reports whether s may be sent as a field value: no control
// characters but horizontal tab (RFC 9110 §5.5).
func isFieldValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
