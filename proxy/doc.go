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
// knowledge (h2c) on one port, served by net/http. Each request is matched
// against a route.Table; a redirect or fixed-response route is answered at
// once, otherwise the route picks a service, the service's Upstream picks an
// endpoint for this request alone (so one keep-alive or HTTP/2 connection is
// spread over all endpoints), and httputil.ReverseProxy forwards it over the
// listener's pooled http.Transport: HTTP/1.1 by default (connections pooled
// per endpoint address), or with HTTPConfig.UpstreamProtocol "h2c" HTTP/2
// with prior knowledge (one connection per endpoint carrying every stream,
// another only when the endpoint's stream limit is reached; upgrade
// requests still go over HTTP/1.1). A dial failure is retried on another endpoint
// (HTTPConfig.ConnectAttempts); no other failure is. Done is called exactly
// once per pick: at once for a failed attempt, else when the response body
// has been copied (EOF; a 5xx reports a *StatusError), failed, or was
// abandoned (the request context's error). Bodies stream both ways, never
// buffered whole; responses without Content-Length and event streams are
// flushed per write. Hop-by-hop fields are removed, X-Forwarded-For/-Proto/
// -Host are replaced (extended from HTTPConfig.TrustedProxies) and Via is
// added both ways. Errors the proxy makes itself carry a text/plain body and
// the X-Outrigger-Error header; the 400 and 431 that net/http's parser sends
// before any handler runs cannot carry it.
//
// gRPC (HTTPConfig.GRPC, upstream h2c): calls are balanced per call like any
// request, streams flush per message both ways, "TE: trailers" is forwarded
// and the endpoint's trailers (grpc-status, grpc-message, custom) are copied
// as they are. Errors the proxy makes for a gRPC request are trailers-only
// gRPC responses (HTTP 200, grpc-status, grpc-message, X-Outrigger-Error;
// mapping in grpc.go), and Done reports a non-OK grpc-status as a
// *GRPCStatusError.
//
// Request smuggling: net/http refuses most bad framings itself (400, or 501
// for unknown transfer codings) and closes the connection. The framing guard
// (httpguard.go) refuses what it lets through: Content-Length with
// Transfer-Encoding, Transfer-Encoding in HTTP/1.0, and obs-fold; a broken
// chunked body is answered 400 and never completed upstream; "Upgrade: h2c"
// is never passed on.
//
// Concurrency: Server.Serve runs one accept goroutine per TCP listener and two
// goroutines per connection (one per direction; the connection's own
// goroutine is one of them); an HTTP listener runs net/http's goroutines
// (one per connection, one per HTTP/2 stream) and counts connections and
// handlers so that Serve still returns only after they are gone. Serve owns all of them and returns only after
// every one has exited. When Serve's context ends, the listeners close at
// once (new connections are refused by the kernel), open connections get
// ServerConfig.DrainTimeout to finish, and the rest are closed. HTTP
// listeners drain like http.Server.Shutdown (idle keep-alive connections
// close at once, HTTP/2 gets GOAWAY, busy HTTP/1 connections close after
// their response); at the deadline every request context is canceled, which
// also ends upgraded tunnels. The admin
// server runs in its own Serve(ctx) and only reads through the callbacks it
// was given, which must be safe for concurrent use.
package proxy
