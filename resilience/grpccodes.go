package resilience

import "strconv"

// gRPC status codes (grpc "doc/statuscodes.md"), as the integers a
// grpc-status trailer carries.
const (
	GRPCOK                 = 0
	GRPCCancelled          = 1
	GRPCUnknown            = 2
	GRPCInvalidArgument    = 3
	GRPCDeadlineExceeded   = 4
	GRPCNotFound           = 5
	GRPCAlreadyExists      = 6
	GRPCPermissionDenied   = 7
	GRPCResourceExhausted  = 8
	GRPCFailedPrecondition = 9
	GRPCAborted            = 10
	GRPCOutOfRange         = 11
	GRPCUnimplemented      = 12
	GRPCInternal           = 13
	GRPCUnavailable        = 14
	GRPCDataLoss           = 15
	GRPCUnauthenticated    = 16
)

// grpcCodeNames are the retry-condition names of the gRPC codes, in the
// kebab case Envoy's retry_on uses ("cancelled", "deadline-exceeded", ...).
var grpcCodeNames = [...]string{
	"ok", "cancelled", "unknown", "invalid-argument", "deadline-exceeded",
	"not-found", "already-exists", "permission-denied", "resource-exhausted",
	"failed-precondition", "aborted", "out-of-range", "unimplemented",
	"internal", "unavailable", "data-loss", "unauthenticated",
}

// GRPCCodeName returns the kebab-case name of a gRPC code.
func GRPCCodeName(code int) string {
	if code >= 0 && code < len(grpcCodeNames) {
		return grpcCodeNames[code]
	}
	return "code-" + strconv.Itoa(code)
}

// grpcCodeByName is the inverse of GRPCCodeName for the defined codes.
func grpcCodeByName(name string) (int, bool) {
	for i, n := range grpcCodeNames {
		if n == name {
			return i, true
		}
	}
	return 0, false
}
