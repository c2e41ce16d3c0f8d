package resilience

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"syscall"
)

// Kind is how one attempt (a connection or a request on one endpoint) ended,
// as far as the endpoint's health is concerned.
type Kind uint8

const (
	// KindUnknown means the caller did not classify the attempt; consumers
	// derive a Kind from its error with KindOf.
	KindUnknown Kind = iota
	// KindSuccess is an attempt that completed without error (an L4
	// connection that ended cleanly).
	KindSuccess
	// KindResponse is an attempt that got a response; Outcome.Status (and
	// for gRPC Outcome.GRPCStatus) say which.
	KindResponse
	// KindConnectFailure is a failed dial: nothing reached the endpoint.
	KindConnectFailure
	// KindRefusedStream is an HTTP/2 REFUSED_STREAM (or a GOAWAY above the
	// stream's ID): the endpoint did not process the request (RFC 9113
	// §8.7), so it is as safe to retry as a dial failure.
	KindRefusedStream
	// KindReset is a connection or stream reset by the endpoint, or a
	// connection that ended before a complete response.
	KindReset
	// KindTimeout is an attempt that ran out of time (per-try timeout,
	// idle timeout) waiting for the endpoint.
	KindTimeout
	// KindCanceled is an attempt abandoned by the client or the proxy
	// itself (context canceled). It says nothing about the endpoint and is
	// neither a success nor a failure for breakers and outlier detection.
	KindCanceled
	// KindFailure is any other error the caller could not classify.
	KindFailure
)

var kindNames = [...]string{"unknown", "success", "response", "connect-failure",
	"refused-stream", "reset", "timeout", "canceled", "failure"}

// String returns the kind's lower-case name.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Outcome is what one attempt ended with. The zero value is KindUnknown.
type Outcome struct {
	Kind Kind
	// Status is the HTTP status of the response for KindResponse, else 0.
	Status int
	// GRPC says the exchange was a gRPC call whose status is GRPCStatus
	// (0 OK): from the trailers, or the headers of a trailers-only response.
	GRPC       bool
	GRPCStatus int
}

// Response returns the outcome of an HTTP exchange that got status.
func Response(status int) Outcome { return Outcome{Kind: KindResponse, Status: status} }

// GRPCResponse returns the outcome of a gRPC call that ended with code
// (HTTP status 200 with a grpc-status).
func GRPCResponse(code int) Outcome {
	return Outcome{Kind: KindResponse, Status: 200, GRPC: true, GRPCStatus: code}
}

// OutcomeOf returns o when it is classified, else the outcome err implies:
// its own if it is a Classifier, else KindOf's. It is how breakers and outlier detection read an attempt
// whose caller only had an error.
func OutcomeOf(o Outcome, err error) Outcome {
	if o.Kind != KindUnknown {
		return o
	}
	if c, ok := err.(Classifier); ok {
		return c.AttemptOutcome()
	}
	if err != nil {
		var c Classifier
		if errors.As(err, &c) {
			return c.AttemptOutcome()
		}
	}
	return Outcome{Kind: KindOf(err)}
}

// Classifier is an error that knows the outcome it stands for, such as the
// proxy's error for an endpoint's 5xx response or a gRPC call's non-OK
// status. OutcomeOf asks it before falling back to KindOf, so that a caller
// passing only an error still feeds breakers and outlier detection the
// status (a gRPC NOT_FOUND is an answer, not a failure; a 503 is a gateway
// error).
type Classifier interface {
	error
	AttemptOutcome() Outcome
}

// KindOf classifies an error of an attempt: nil is success; a failed dial
// (a *net.OpError with Op "dial", or ECONNREFUSED) is a connect failure;
// ECONNRESET, EPIPE and ECONNABORTED are resets; deadlines and net timeouts
// are timeouts; context.Canceled is canceled; anything else is KindFailure.
// Callers that know more (an HTTP/2 REFUSED_STREAM, a status) set
// Outcome.Kind themselves.
func KindOf(err error) Kind {
	if err == nil {
		return KindSuccess
	}
	var op *net.OpError
	switch {
	case errors.Is(err, context.Canceled):
		return KindCanceled
	case errors.As(err, &op) && op.Op == "dial", errors.Is(err, syscall.ECONNREFUSED):
		return KindConnectFailure
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return KindTimeout
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNABORTED):
		return KindReset
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return KindTimeout
	}
	return KindFailure
}

// httpEquivalent maps an outcome to the HTTP status that stands for it in
// 5xx accounting: the response status, or for a gRPC call the status its
// code maps to (as Envoy maps them: UNAVAILABLE 503, DEADLINE_EXCEEDED 504,
// UNKNOWN/INTERNAL/DATA_LOSS 500); 0 for outcomes without a response.
func (o Outcome) httpEquivalent() int {
	if o.Kind != KindResponse {
		return 0
	}
	if !o.GRPC {
		return o.Status
	}
	switch o.GRPCStatus {
	case GRPCUnavailable:
		return 503
	case GRPCDeadlineExceeded:
		return 504
	case GRPCUnknown, GRPCInternal, GRPCDataLoss:
		return 500
	}
	return 200
}

// LocalOrigin reports whether the attempt failed before the endpoint
// answered: connect failure, refused stream, reset or timeout.
func (o Outcome) LocalOrigin() bool {
	switch o.Kind {
	case KindConnectFailure, KindRefusedStream, KindReset, KindTimeout:
		return true
	}
	return false
}

// Failed reports whether the attempt counts as the endpoint's failure for
// circuit breakers: a local-origin failure, an unclassified error, a 5xx
// response, or a gRPC status that is the server's fault (UNAVAILABLE,
// DEADLINE_EXCEEDED, UNKNOWN, INTERNAL, DATA_LOSS). 4xx responses and other
// gRPC statuses (NOT_FOUND, ...) are the caller's and count as successes.
func (o Outcome) Failed() bool {
	return o.LocalOrigin() || o.Kind == KindFailure || o.httpEquivalent() >= 500
}

// Neutral reports whether the attempt says nothing about the endpoint
// (canceled, or unclassified): breakers and outlier detection skip it.
func (o Outcome) Neutral() bool { return o.Kind == KindCanceled || o.Kind == KindUnknown }
