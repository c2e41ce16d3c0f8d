// Package proxy carries connections and requests: the L4 TCP listeners that
// forward each accepted connection to an endpoint, the L7 HTTP listeners that
// route and balance each request, and the admin HTTP server.
//
// Place in the data flow: a listener accepts a connection, asks its Upstream
// (a *balancer.Balancer, or StaticUpstream for an inbound listener in front
// of the local application) for an endpoint with Pick, dials it, and copies
// bytes both ways until both sides are done. Pick never blocks; when there is
// no endpoint the client connection is closed at once, never queued. A dial
// failure means nothing reached the endpoint, so the connection is retried on
// another one (TCPConfig.ConnectAttempts); once a dial succeeded the
// connection is committed to that endpoint.
//
// Ownership: the proxy owns its listening sockets and both sockets of every
// connection, and nothing of the discovery state. PickResult.Endpoint is read
// to dial (and to log); the proxy never consults discovery again for an open
// connection. So an endpoint that leaves discovery (removed, draining, not
// ready) gets no new connections but never has an open connection cut: that
// runs until its client or endpoint closes it, it idles out, or the process
// drains. PickResult.Done is called exactly once for every successful Pick:
// at once with the dial error when the dial fails, otherwise when the
// connection ends, with nil unless a copy failed (the error may come from
// either socket; splice does not say which).
//
// Data path: both sides are raw *net.TCPConn and bytes move with
// (*net.TCPConn).ReadFrom of an *io.LimitedReader over the other
// *net.TCPConn, which Linux serves with splice(2): payload never enters user
// space. Half-close is kept: EOF in one direction becomes CloseWrite on the
// other side while the reverse direction keeps running. The idle timeout
// counts time with no byte moving in either direction (see
// TCPConfig.IdleTimeout); it is enforced with read deadlines renewed per
// chunk and at least every IdleTimeout/4, never with write deadlines, and
// the data path allocates nothing per chunk.
//
// HTTP engine (HTTPListener): HTTP/1.1 and cleartext HTTP/2 with prior
// knowledge (h2c) on one port. Each request is matched against the
// listener's route.Table (swapped atomically by SetRoutes for requests that
// start afterwards); a redirect or fixed-response route is answered at
// once, otherwise the route picks a service, the service's Upstream picks an
// endpoint for this request alone (so one keep-alive or HTTP/2 connection is
// spread over all endpoints), and the request is forwarded. A dial failure
// is retried on another endpoint (HTTPConfig.ConnectAttempts). Done is
// called exactly once per pick: at once for a failed attempt, else when the
// response body has been copied (EOF; a 5xx reports a *StatusError),
// failed, or was abandoned by the client. Bodies stream both ways, never
// buffered whole, and every read of a response body is written to the
// client at once (event streams flush per event). Hop-by-hop fields are
// removed (those named in Connection too), X-Forwarded-For/-Proto/-Host are
// replaced (extended from HTTPConfig.TrustedProxies) and Via is added both
// ways. Errors the proxy makes itself carry a text/plain body and the
// X-Outrigger-Error header (on net/http's path, the 400 and 431 its parser
// sends before any handler runs cannot).
//
// Two engines serve it. serveConn runs the HTTP/1.1 fast path (h1conn.go)
// for every connection of a plain HTTP listener with upstream protocol
// http1: one goroutine per client connection reads into a pooled buffer,
// parses each request head with proxy/internal/h1 (strict, no allocation:
// fields are slices of the buffer), routes, and forwards over the
// listener's own pool of upstream HTTP/1.1 connections, writing head and a
// small body in one write each way and relaying chunked bodies as they are
// (extensions and trailers included). A request body that is not all in
// hand streams on a second goroutine, so that an endpoint may answer before
// it read the body; no other request costs a goroutine or, on the common
// path, an allocation. The fast path hands the connection, every byte it
// buffered replayed, to net/http for the rest of its life at the first
// request that is: not HTTP/1.1 (HTTP/1.0, the HTTP/2 preface), an upgrade
// (WebSocket; "Upgrade: h2c" is then dropped, never passed on), CONNECT,
// with an Expect other than 100-continue, or not in origin form (absolute
// URI, "OPTIONS *"). "Expect: 100-continue" stays on the fast path: it is
// forwarded, the endpoint's 100 Continue relayed like any interim
// response, and the body streamed when the client sends it. net/http (httputil.ReverseProxy over http.Transport)
// serves those, gRPC listeners, h2c upstreams, TLS connections whose ALPN
// chose h2, and everything when HTTPConfig.NetHTTPOnly is set.
//
// The fast path's upstream pool (h1pool.go) keeps, per endpoint address,
// a LIFO stack of idle connections (at most 256) behind a short mutex: the
// critical section is a slice push or pop, and LIFO lets a burst's extra
// connections idle out (upstreamIdleTimeout, swept every quarter of it);
// the address-to-stack map is copy-on-write behind an atomic.Pointer, read
// without a lock. A reused connection that fails before any response byte
// (the endpoint closed it while idle) is replaced by a new one and the
// request sent again once, when its body is all in hand and it is
// idempotent (method, Idempotency-Key, or RouteConfig.Idempotent), as
// net/http's Transport does; otherwise the client gets 502 upstream_reset.
// Timeouts: HeaderTimeout from a request's first byte, IdleTimeout between
// requests, ResponseTimeout from the end of the request to the response
// head (504), and on both engines one deadline per request for its
// response head over all attempts: the route's Timeout, the retry
// policy's and a gRPC call's grpc-timeout, the earliest winning
// (timeout.go); bodies have no deadline. A client that leaves while its
// request awaits the response head ends the request, neutral for the
// endpoint (timeout_client.go: on the fast path it is looked at only
// after a second of waiting).
//
// Admission control (admit.go; SetRouting publishes it with the routes):
// before a request is forwarded, both engines ask its route's rate limits,
// the route's and the service's in-flight limits, the service's
// connection limit and the route's circuit breaker, in that order, and
// answer a refusal at once (429 rate_limited with Retry-After, 503
// overflow, 503 circuit_open; gRPC statuses on gRPC calls); nothing is
// queued. The route breaker gets each admitted request's outcome once,
// after its last attempt, from the status the client got (a body the
// endpoint broke after the head counts as a reset). All of it is
// atomics on the request path: no lock, and no allocation on the fast path.
//
// gRPC (HTTPConfig.GRPC, upstream h2c): calls are balanced per call like any
// request, streams flush per message both ways, "TE: trailers" is forwarded
// and the endpoint's trailers (grpc-status, grpc-message, custom) are copied
// as they are. Errors the proxy makes for a gRPC request are trailers-only
// gRPC responses (HTTP 200, grpc-status, grpc-message, X-Outrigger-Error;
// mapping in grpc.go), and Done reports a non-OK grpc-status as a
// *GRPCStatusError.
//
// Retries (retry.go): an Upstream wrapped by WithRetry carries its
// service's retry policy and budget (and per-route policies), swapped with
// the route table. Both engines then retry what resilience.RetryPolicy
// allows on another endpoint, after a jittered backoff and only while the
// service's Budget has room: a failed dial always (it sent nothing);
// after bytes were sent only an idempotent request (method,
// Idempotency-Key, or RouteConfig.Idempotent) whose body is kept whole
// (the fast path: all in the read buffer at send time; net/http's path:
// read to its end within MaxReplayBody). A response retried on its status
// (or gRPC status) is discarded whole, drained to keep its connection when
// small; interim (1xx) responses before it were relayed as they came (HTTP
// allows several before the final one, and holding them back would defeat
// 103 Early Hints). The client gets the last attempt's response, or for a
// connection failure, reset or timeout the proxy's own 502 or 504. A
// retried response is held until the retry's endpoint is picked (after
// the backoff): when none is left (the picker emptied, or the attempt's own
// Done ejected the last endpoint), it is the answer after all. Done
// is still called exactly once per pick, a retried attempt's at once,
// before the next Pick, so that the picker sees its outcome.
// Per-try timeouts bound the wait for each response head: on the fast
// path from when the request is all sent (a streamed body too), on
// net/http's path from the attempt's start.
//
// Request smuggling (RFC 9112 §11.2): the fast path refuses with 400 and
// closes (X-Outrigger-Error: bad_request) Content-Length with
// Transfer-Encoding, differing Content-Lengths, a Content-Length that is
// not digits, obs-fold, bare LF line endings, invalid field names and
// values, a missing or repeated Host, bad chunk sizes, extensions and
// framing; any Transfer-Encoding but one "chunked" gets 501 (RFC 9112
// §6.1); heads over MaxHeaderBytes (plus net/http's 4 KiB slack) or with
// more than 128 field lines get 431. On net/http's path its parser refuses
// most of these itself, and the framing guard (httpguard.go) refuses what it
// lets through: Content-Length with Transfer-Encoding, Transfer-Encoding in
// HTTP/1.0, and obs-fold. A broken chunked body is answered 400 and never
// completed upstream on either path.
//
// Front listeners (FrontListener: protocol auto, and http or grpc with
// TLS) run a first phase on each connection's own goroutine before either
// path: sniff the first bytes (sniff.go; decided as soon as the bytes
// allow, bounded by SniffConfig.Timeout) and/or terminate TLS (tls.go;
// certificates from a CertSource, ALPN h2 and http/1.1, the handshake
// bounded by HTTPConfig.HeaderTimeout). HTTP goes to the HTTP engine with
// the bytes already read; anything else (the application's own TLS when the
// listener has no certificate, other protocols, servers that speak first)
// is forwarded as TCP with those bytes written upstream first and then the
// splice path above, on the raw sockets. A connection is counted as a TCP
// connection until the HTTP engine takes it.
//
// The "why" (debugwhy*.go): a request with "X-Outrigger-Debug: why" from
// a loopback client gets its trail (route, service, attempts, retries,
// timeouts, cause) in an X-Outrigger-Why response field on both engines;
// the request field is never forwarded, and from other clients ignored.
//
// Tracing (Options.TracerProvider; trace*.go): a server span per HTTP
// request on both engines, a client span per upstream attempt (a retry or
// a reconnect after a failed dial is a span of its own), a span per
// forwarded TCP connection. The parent is extracted from the request's
// fields (on the fast path in place, over the parsed fields); the
// attempt's context is written into the upstream head, replacing the
// client's trace-context fields. With no TracerProvider nothing of this
// runs: a nil check per request and attempt.
//
// Concurrency: Server.Serve runs one accept goroutine per TCP listener and two
// goroutines per connection (one per direction; the connection's own
// goroutine is one of them); an HTTP listener runs one accept goroutine, one
// pool sweeper, one goroutine per fast-path connection (plus one per
// streaming request body) and net/http's goroutines (one per connection,
// one per HTTP/2 stream), and counts connections and handlers so that Serve
// still returns only after they are gone. Serve owns all of them and returns only after
// every one has exited. When Serve's context ends, the listeners close at
// once (new connections are refused by the kernel), open connections get
// ServerConfig.DrainTimeout to finish, and the rest are closed. HTTP
// listeners drain like http.Server.Shutdown (idle keep-alive connections
// close at once, HTTP/2 gets GOAWAY, busy HTTP/1 connections close after
// their response); at the deadline every request context is canceled, which
// also ends upgraded tunnels. The admin
// server runs in its own Serve(ctx) and only reads through the callbacks it
// was given, which must be safe for concurrent use.
//
// Changes while serving (a config reload): Server.Apply adds and removes
// listeners, all or nothing; a removed listener drains alone, as in Serve's
// drain but with its own deadline, and Serve waits for it too. A listener
// added with the address of one removed in the same Apply takes over its
// socket (a duplicated descriptor), so replacing a listener refuses no
// connection. In place, TCPListener.Update swaps the config and upstream
// for new connections (each connection keeps the generation it was accepted
// with) and HTTPListener.SetRoutes / FrontListener.SetRoutes swap routes
// and upstreams for new requests.
package proxy
