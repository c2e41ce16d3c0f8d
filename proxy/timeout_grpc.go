package proxy

import (
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/route"
)

// gRPC deadlines (gRPC "PROTOCOL-HTTP2.md", Timeout): a call's
// grpc-timeout header is its deadline, relative to when it is received.
// On a gRPC listener the proxy takes it as one more bound of the
// request's deadline (timeout.go): the earliest of it and the route's
// timeout (and the retry policy's) wins, and when it passes before the
// response head came the call gets DEADLINE_EXCEEDED as a trailers-only
// response (grpc.go). Each attempt carries what is left of the deadline
// as its own grpc-timeout, so that the endpoint knows the remaining
// budget and stops working for a caller that gave up (as Envoy does with
// grpc_timeout_header_max); a call with only a route timeout gets one
// too. Once the head came, the deadline is the client's and the
// endpoint's to keep: both know it, and the proxy does not cut a stream.
//
// A malformed grpc-timeout (not 1 to 8 ASCII digits followed by one of
// H M S m u n) gives the proxy no deadline, as Envoy reads it, and is
// forwarded as it came unless a route timeout replaces it: the spec does
// not say what a malformed value means, and the endpoint is the gRPC
// server that answers for its own parsing (grpc-go refuses such a call
// with INTERNAL).

// grpcTimeoutDigits is the most digits a grpc-timeout value may have.
const grpcTimeoutDigits = 8

// parseGRPCTimeout parses a grpc-timeout value strictly. ok is false when
// v is malformed; d is 0 for a valid value too long to be a deadline
// (more than the 292 years a time.Duration holds), which means none.
func parseGRPCTimeout(v string) (d time.Duration, ok bool) {
	if len(v) < 2 || len(v) > grpcTimeoutDigits+1 {
		return 0, false
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, false
	}
	var n int64
	for i := 0; i < len(v)-1; i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if n > math.MaxInt64/int64(unit) {
		return 0, true
	}
	// A zero value ("0n", which grpc-go sends for a deadline that passed
	// while the call was being sent) is a deadline already passed.
	return max(time.Duration(n)*unit, 1), true
}

// appendGRPCTimeout appends d (> 0) as a grpc-timeout value: the finest
// unit that fits in 8 digits, rounded down, so that the endpoint never
// gets more time than the proxy gives (at least 1n).
func appendGRPCTimeout(b []byte, d time.Duration) []byte {
	const maxValue = 1e8 - 1
	for _, u := range [...]struct {
		unit time.Duration
		c    byte
	}{{time.Nanosecond, 'n'}, {time.Microsecond, 'u'}, {time.Millisecond, 'm'}, {time.Second, 'S'}, {time.Minute, 'M'}, {time.Hour, 'H'}} {
		if v := d / u.unit; v <= maxValue || u.c == 'H' {
			b = strconv.AppendInt(b, int64(max(v, 1)), 10)
			return append(b, u.c)
		}
	}
	panic("unreachable")
}

// deadlineOf returns the deadline of a request on rt on net/http's path,
// starting now (zero: none), and whether it is a gRPC call on a gRPC
// listener (its attempts carry grpc-timeout when it has a deadline).
func (l *HTTPListener) deadlineOf(req *http.Request, rt *route.Route) (time.Time, bool) {
	grpc := l.cfg.GRPC && isGRPCRequest(req)
	if !grpc && rt.Config.Timeout <= 0 {
		return time.Time{}, false // no clock read
	}
	now := time.Now()
	deadline := requestDeadline(rt, now)
	if !grpc {
		return deadline, false
	}
	if v := req.Header["Grpc-Timeout"]; len(v) == 1 {
		if d, ok := parseGRPCTimeout(v[0]); ok && d > 0 {
			deadline = earlier(deadline, now.Add(d))
		}
	}
	return deadline, true
}

// setGRPCTimeout gives an attempt the time left until deadline as its
// grpc-timeout. The header map is the attempt's own: one that failed may
// still be read by its transport.
func setGRPCTimeout(out *http.Request, deadline time.Time) {
	h := out.Header.Clone()
	h["Grpc-Timeout"] = []string{string(appendGRPCTimeout(nil, max(time.Until(deadline), 1)))}
	out.Header = h
}
