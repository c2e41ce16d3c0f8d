package proxy

import (
	"context"
	"net/netip"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/route"
)

// Request timeouts, shared by both HTTP engines.
//
// A request has at most one deadline for its response head: the route's
// timeout (route.RouteConfig.Timeout, Gateway API's timeouts.request),
// the retry policy's overall timeout, and on a gRPC listener the call's
// grpc-timeout, each counted from when the proxy starts forwarding the
// request, the earliest winning. Every attempt waits for its response
// head at most until then (and, as before, at most the listener's
// ResponseTimeout and the policy's per-try timeout); a backoff that would
// end past it is not waited, no new attempt starts after it, and the
// client gets 504 upstream_timeout (gRPC: DEADLINE_EXCEEDED), or the last
// attempt's own response when a retry was refused for lack of time. The
// deadline bounds the wait for the response head only: a response whose
// head came in time streams its body for as long as it takes (event
// streams, downloads, gRPC streams). A request body still uploading
// counts against it: the head cannot come before the endpoint has what
// it needs.
//
// The deadline is a time.Time on the forwarding goroutine's stack (fast
// path) or in the exchange (net/http's path): no timer and no allocation
// on the fast path, where it only lowers the upstream read deadline that
// is set anyway.

// requestDeadline returns the deadline of a request on rt that starts
// forwarding at now; zero when the route has no timeout.
func requestDeadline(rt *route.Route, now time.Time) time.Time {
	if d := rt.Config.Timeout; d > 0 {
		return now.Add(d)
	}
	return time.Time{}
}

// earlier returns the earlier of two deadlines, zero meaning none.
func earlier(a, b time.Time) time.Time {
	switch {
	case a.IsZero():
		return b
	case b.IsZero() || a.Before(b):
		return a
	}
	return b
}

// untilDeadline bounds a relative timeout t (0: none) by what is left
// until deadline (zero: none), at least 1ns: an exhausted deadline fails
// the attempt at once.
func untilDeadline(t time.Duration, deadline time.Time) time.Duration {
	if deadline.IsZero() {
		return t
	}
	if left := time.Until(deadline); t <= 0 || left < t {
		return max(left, 1)
	}
	return t
}

// pastDeadline reports whether deadline (zero: none) has passed.
func pastDeadline(deadline time.Time) bool {
	return !deadline.IsZero() && !time.Now().Before(deadline)
}

// requestTimeoutError is the error of a request whose deadline passed
// between attempts: a timeout, answered 504 like an attempt's own.
type requestTimeoutError struct{}

func (requestTimeoutError) Error() string   { return "request timeout: no response head in time" }
func (requestTimeoutError) Timeout() bool   { return true }
func (requestTimeoutError) Temporary() bool { return true }

var errRequestTimeout error = requestTimeoutError{}

// dial dials addr for the fast path, within deadline (zero: only the
// listener's connect timeout) too.
func (hc *h1conn) dial(ep *epPool, addr netip.AddrPort, deadline time.Time) (*upConn, error) {
	l := hc.l
	if deadline.IsZero() {
		return l.dialUpstream(l.baseCtx, ep, addr)
	}
	ctx, cancel := context.WithDeadline(l.baseCtx, deadline)
	defer cancel()
	return l.dialUpstream(ctx, ep, addr)
}
