package proxy

import (
	"net/http"
	"strconv"
	"strings"
)

// gRPC over the HTTP engine. gRPC is HTTP/2 with a framed body and the
// call's status in trailers (gRPC "PROTOCOL-HTTP2.md"), so the engine
// carries it as it is: streams flush per write both ways (no Content-Length,
// so ReverseProxy flushes every write), "TE: trailers" is forwarded, and the
// endpoint's trailers (grpc-status, grpc-message and custom ones) are copied
// after the body. What gRPC needs beyond that is here: the proxy's own
// errors as gRPC statuses, and the call's status reported to Done.

// GRPCStatusError is the DoneInfo.Err of a gRPC call the endpoint finished
// with a non-OK grpc-status (in the trailers, or the headers of a
// trailers-only response). The exchange completed; whether the status is
// the endpoint's failure (UNAVAILABLE) or the caller's (NOT_FOUND) is for
// the consumer to decide from Code.
type GRPCStatusError struct{ Code int }

func (e *GRPCStatusError) Error() string { return "upstream grpc-status " + strconv.Itoa(e.Code) }

// grpcStatusErrors are preallocated for the 16 defined codes, so that a
// failed call costs no allocation.
var grpcStatusErrors = func() (s [17]GRPCStatusError) {
	for i := range s {
		s[i].Code = i
	}
	return s
}()

// grpcStatusErr returns the error for a grpc-status value: nil for "0" or
// none, else a *GRPCStatusError (code 2 UNKNOWN when unparseable, as
// grpc-go reads it).
func grpcStatusErr(v string) error {
	if v == "" || v == "0" {
		return nil
	}
	c, err := strconv.Atoi(v)
	switch {
	case err != nil || c < 0:
		return &grpcStatusErrors[2]
	case c < len(grpcStatusErrors):
		return &grpcStatusErrors[c]
	default:
		return &GRPCStatusError{Code: c}
	}
}

// responseGRPCErr returns the call status of a finished gRPC response: the
// grpc-status trailer, or for a trailers-only response the header.
func responseGRPCErr(resp *http.Response) error {
	if v := resp.Trailer.Get("Grpc-Status"); v != "" {
		return grpcStatusErr(v)
	}
	return grpcStatusErr(resp.Header.Get("Grpc-Status"))
}

// isGRPCRequest reports whether r is a gRPC call: Content-Type
// "application/grpc", alone or with a "+codec" or parameters (not
// grpc-web, which is HTTP/1-compatible and framed differently).
func isGRPCRequest(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	rest, ok := strings.CutPrefix(ct, "application/grpc")
	return ok && (rest == "" || rest[0] == '+' || rest[0] == ';')
}

// gRPC status codes of the proxy's own errors (google.golang.org/grpc/codes).
const (
	grpcDeadlineExceeded  = 4
	grpcResourceExhausted = 8
	grpcUnimplemented     = 12
	grpcInternal          = 13
	grpcUnavailable       = 14
)

// grpcCodeOf maps an error cause to the status a gRPC client acts on:
// UNAVAILABLE is what gRPC clients retry (transparently, or by their retry
// policy), so every "try again, maybe elsewhere" cause maps to it.
func grpcCodeOf(cause string) int {
	switch cause {
	case causeNoRoute:
		return grpcUnimplemented
	case causeNoEndpoints, causeConnectFailure, causeUpstreamReset, causeOverflow, causeCircuitOpen:
		return grpcUnavailable
	case causeRateLimited:
		// Not UNAVAILABLE: gRPC clients retry that at once, which is
		// what a rate limit asks them not to do.
		return grpcResourceExhausted
	case causeUpstreamTimeout:
		return grpcDeadlineExceeded
	case causeBodyTooLarge:
		return grpcResourceExhausted
	default: // bad_request: HTTP 400 maps to INTERNAL (grpc "http-grpc-status-mapping.md")
		return grpcInternal
	}
}

// writeGRPCError answers a gRPC call with a trailers-only response: HTTP
// 200, Content-Type application/grpc, and grpc-status and grpc-message in
// the only HEADERS frame (net/http ends the stream with it when the handler
// writes no body), plus the X-Outrigger-Error header with the cause.
func writeGRPCError(w http.ResponseWriter, cause, msg string) {
	h := w.Header()
	h.Del("Content-Length")
	h.Set("Content-Type", "application/grpc")
	h.Set(ErrorHeader, cause)
	h.Set("Grpc-Status", strconv.Itoa(grpcCodeOf(cause)))
	h.Set("Grpc-Message", grpcPercentEncode("outrigger: "+msg))
	w.WriteHeader(http.StatusOK)
}

// grpcPercentEncode encodes a grpc-message: bytes outside printable ASCII,
// and '%', as %XX (PROTOCOL-HTTP2.md, "Status-Message").
func grpcPercentEncode(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c <= 0x7e && c != '%' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}
