// Package route is the HTTP route table: it maps a request's host, path,
// method, headers and query to the route that handles it, in the spirit of a
// Kubernetes Ingress and a Gateway API HTTPRoute.
//
// Place in the data flow: cmd/outrigger maps the config file into a Config;
// New validates it (every problem, as *FieldError) and compiles it into an
// immutable Table. The HTTP engine calls Table.Match for every request and
// then acts on the returned *Route: PickBackend chooses the upstream service
// (whose balancer.Balancer then picks the endpoint), RewritePath and the
// route's Config give the request and response edits, or the route answers
// with its Redirect or Fixed response. A nil *Route means no route matched;
// the engine answers 404.
//
// Config is plain data without tags. Validate names each problem by a field
// path relative to the route list in the config file's snake_case spelling
// ("routes[2].match.path.value", "routes[0].request_headers.set[1].name",
// "routes[4].fixed.content_type"), which cmd/outrigger maps to file:line.
//
// Ownership: the package owns nothing live. A Table and its Routes are never
// modified after New and share no memory with the Config they came from; a
// reload builds a new Table and the engine swaps the pointer, so requests in
// flight finish with the Route they matched.
//
// Concurrency: the package does no I/O and starts no goroutines. Match,
// Routes, Warnings, PickBackend, RewritePath and Explain (the admin /why's
// view of Match, with the condition each earlier candidate failed) may be
// called from any goroutine at any time; they take no lock. Match does not
// allocate for a host and prefix path (nor for headers and unencoded query
// parameters), and PickBackend never allocates: it draws from math/rand/v2's
// per-thread generator and binary-searches precomputed cumulative weights.
// Explain allocates; it is not for the request path.
//
// # Matching
//
// Hosts: "shop.example.com" matches that host only; "*.example.com" matches
// exactly one more leftmost label (a.example.com, not example.com nor
// a.b.example.com), as Ingress wildcards do. Case is ignored, and so are a
// port and a trailing dot in the request's Host. A route without hosts
// matches any host. A request Host longer than 253 bytes is not a DNS name
// and only matches routes without hosts.
//
// Paths are compared with the already-decoded URL path, never decoded again.
// Exact compares byte for byte. Prefix follows Ingress pathType Prefix:
// it matches whole "/"-separated segments and ignores a trailing slash, so
// "/foo" and "/foo/" both match "/foo", "/foo/" and "/foo/bar" but not
// "/foobar"; "/" matches every path. Regex is RE2 and must match the whole
// path.
//
// Headers match when some field line of the header equals the value
// (case-sensitive) or matches the RE2 regex as a whole; field lines are not
// split on commas. Query parameters are decoded as url.ParseQuery does and
// match when some value of the (case-sensitive) name matches. Methods are
// case-sensitive (RFC 9110 §9.1). All listed headers and query parameters
// must match; any listed method.
//
// # Precedence
//
// A request goes to the first route, in this order, whose conditions all
// hold; a route that fails falls through to the next, including routes of a
// less specific host:
//
//  1. Host: routes naming the request's exact host, then routes whose
//     wildcard covers it (only one wildcard suffix can, because a wildcard
//     stands for one label; for display, Routes sorts longer suffixes
//     first), then routes for any host. A route with several host patterns
//     ranks by the one that matched.
//  2. Path: Exact, then Prefix by descending length of the prefix (without
//     its trailing slash, so "/a/b" beats "/a"), then Regex. This is the
//     Gateway API order; Gateway API leaves Regex implementation-specific,
//     and here any Prefix, "/" included, beats any Regex.
//  3. A route with a method condition beats one without.
//  4. More header conditions beat fewer.
//  5. More query conditions beat fewer.
//  6. Config order.
//
// Rules 2 to 5 are Gateway API's HTTPRoute precedence, which puts the
// method before headers and query. Warnings lists routes that this order
// makes unreachable.
package route
