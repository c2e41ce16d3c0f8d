package proxy

import "github.com/outrigger-mesh/outrigger/resilience"

// AttemptOutcome implements resilience.Classifier: an endpoint's 5xx
// answer is a response with that status, so outlier detection can tell
// gateway errors (502, 503, 504) from other 5xx.
func (e *StatusError) AttemptOutcome() resilience.Outcome { return resilience.Response(e.Code) }

// AttemptOutcome implements resilience.Classifier: a non-OK gRPC status is
// an answer, and only the codes resilience counts as failures (UNAVAILABLE,
// INTERNAL, ...) count against the endpoint.
func (e *GRPCStatusError) AttemptOutcome() resilience.Outcome {
	return resilience.GRPCResponse(e.Code)
}
