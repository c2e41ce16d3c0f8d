package resilience

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// Retry conditions, as written in RetryConfig.On. Besides these, On takes
// HTTP status codes ("503") and gRPC status names ("unavailable",
// "resource-exhausted", "deadline-exceeded", ... every code by its
// kebab-case name; see GRPCCodeName).
const (
	// RetryConnectFailure retries a failed dial.
	RetryConnectFailure = "connect-failure"
	// RetryRefusedStream retries an HTTP/2 stream the endpoint refused.
	RetryRefusedStream = "refused-stream"
	// RetryReset retries a connection or stream reset, or a per-try
	// timeout, before a response.
	RetryReset = "reset"
	// Retry5xx retries any 5xx response, and like Envoy's "5xx" also
	// connect failures, refused streams, resets and per-try timeouts.
	Retry5xx = "5xx"
	// RetryGatewayError retries 502, 503 and 504 responses.
	RetryGatewayError = "gateway-error"
)

// DefaultRetryOn is the condition list used when retries are on
// (Attempts > 1) and On is empty: the failures where the endpoint
// certainly did not process the request.
var DefaultRetryOn = []string{RetryConnectFailure, RetryRefusedStream}

// Defaults of RetryConfig.
const (
	DefaultBackoffBase   = 25 * time.Millisecond
	DefaultBackoffMax    = 250 * time.Millisecond
	DefaultMaxReplayBody = 64 << 10
)

// RetryConfig is the user's retry setting of one upstream or route. The zero
// value means no retries.
type RetryConfig struct {
	// Attempts is the most attempts per request, the first one included.
	// 0 or 1: no retries (the default).
	Attempts int
	// PerTryTimeout bounds each attempt until its response header; 0 means
	// only the overall timeout applies.
	PerTryTimeout time.Duration
	// Timeout bounds the whole request, all attempts and backoffs; no
	// retry starts after it. 0 means none.
	Timeout time.Duration
	// On lists the retry conditions; empty means DefaultRetryOn.
	On []string
	// BackoffBase and BackoffMax shape the exponential backoff with full
	// jitter before retry n: a uniform draw in
	// [0, min(BackoffMax, BackoffBase·2^(n-1))]. Defaults 25ms and 250ms.
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// MaxReplayBody is the largest request body kept for replay (default
	// 64 KiB); larger bodies are streamed and not retried once sent.
	// Negative: bodies are never kept.
	MaxReplayBody int64
}

// Validate reports every problem of c, joined; each message names its field.
func (c RetryConfig) Validate() error {
	var errs []error
	if c.Attempts < 0 {
		errs = append(errs, fmt.Errorf("retry: attempts: %d is negative", c.Attempts))
	}
	for _, f := range []struct {
		name string
		d    time.Duration
	}{{"per_try_timeout", c.PerTryTimeout}, {"timeout", c.Timeout}, {"backoff_base", c.BackoffBase}, {"backoff_max", c.BackoffMax}} {
		if f.d < 0 {
			errs = append(errs, fmt.Errorf("retry: %s: %v is negative", f.name, f.d))
		}
	}
	if c.BackoffBase > 0 && c.BackoffMax > 0 && c.BackoffMax < c.BackoffBase {
		errs = append(errs, fmt.Errorf("retry: backoff_max: %v is less than backoff_base %v", c.BackoffMax, c.BackoffBase))
	}
	for _, cond := range c.On {
		if _, err := parseCondition(cond); err != nil {
			errs = append(errs, fmt.Errorf("retry: on: %w", err))
		}
	}
	return errors.Join(errs...)
}

// conditions is a parsed On list.
type conditions struct {
	connectFailure, refusedStream, reset, any5xx, gateway bool
	status                                                [10]uint64 // bit s set: retry HTTP status s (0..639)
	grpc                                                  uint32     // bit c set: retry gRPC code c
}

func parseCondition(s string) (func(*conditions), error) {
	switch s {
	case RetryConnectFailure:
		return func(c *conditions) { c.connectFailure = true }, nil
	case RetryRefusedStream:
		return func(c *conditions) { c.refusedStream = true }, nil
	case RetryReset:
		return func(c *conditions) { c.reset = true }, nil
	case Retry5xx:
		return func(c *conditions) { c.any5xx = true }, nil
	case RetryGatewayError:
		return func(c *conditions) { c.gateway = true }, nil
	}
	if code, ok := grpcCodeByName(s); ok && code != GRPCOK {
		return func(c *conditions) { c.grpc |= 1 << code }, nil
	}
	if n, err := strconv.Atoi(s); err == nil {
		if n < 400 || n > 599 {
			return nil, fmt.Errorf("status %d: only 4xx and 5xx statuses can be retried", n)
		}
		return func(c *conditions) { c.status[n/64] |= 1 << (n % 64) }, nil
	}
	return nil, fmt.Errorf("unknown retry condition %q (want %s, %s, %s, %s, %s, an HTTP status like 503, or a gRPC status like unavailable)",
		s, RetryConnectFailure, RetryRefusedStream, RetryReset, Retry5xx, RetryGatewayError)
}

// Reason says why Decide answered as it did. Retry reasons name the
// condition that matched; the others why no retry is taken.
type Reason string

// Reasons Decide gives.
const (
	ReasonOff            Reason = "retries off"
	ReasonNoCondition    Reason = "no retry condition matched"
	ReasonCanceled       Reason = "request canceled"
	ReasonAttempts       Reason = "attempts exhausted"
	ReasonTimeout        Reason = "overall timeout reached"
	ReasonNotIdempotent  Reason = "request reached the upstream and is not idempotent"
	ReasonBodyNotKept    Reason = "request body was not kept for replay"
	ReasonConnectFailure Reason = RetryConnectFailure
	ReasonRefusedStream  Reason = RetryRefusedStream
	ReasonReset          Reason = RetryReset
	Reason5xx            Reason = Retry5xx
	ReasonGatewayError   Reason = RetryGatewayError
	ReasonStatus         Reason = "retriable-status-code"
	ReasonGRPCStatus     Reason = "retriable-grpc-status"
)

// Attempt is everything Decide needs to know about one finished attempt of
// a request.
type Attempt struct {
	// Outcome is how the attempt ended.
	Outcome Outcome
	// N counts the attempts made so far, this one included (1 after the
	// first).
	N int
	// Elapsed is the time since the request's first attempt began.
	Elapsed time.Duration
	// Sent says some byte of the request reached the upstream (was written
	// to its connection). A failed dial sends nothing.
	Sent bool
	// Method is the request's method ("" for an L4 connection).
	Method string
	// IdempotencyKey says the request carries an Idempotency-Key header.
	IdempotencyKey bool
	// RouteIdempotent says the route is configured as idempotent.
	RouteIdempotent bool
	// BodyReplayable says the request can be sent again as it was: it has
	// no body, its body is held whole (within MaxReplayBody), or no byte of
	// the body has been read yet.
	BodyReplayable bool
}

// Decision is Decide's answer.
type Decision struct {
	Retry  bool
	Reason Reason
}

// RetryPolicy is a validated RetryConfig, ready for the request path. It is
// immutable and safe for concurrent use.
type RetryPolicy struct {
	cfg  RetryConfig
	cond conditions
	// int64n draws uniformly from [0, n); rand.Int64N unless a test sets it.
	int64n func(n int64) int64
}

// NewRetryPolicy validates cfg, applies defaults and returns the policy.
func NewRetryPolicy(cfg RetryConfig) (*RetryPolicy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.BackoffBase == 0 {
		cfg.BackoffBase = DefaultBackoffBase
	}
	if cfg.BackoffMax == 0 {
		cfg.BackoffMax = max(DefaultBackoffMax, cfg.BackoffBase)
	}
	if cfg.MaxReplayBody == 0 {
		cfg.MaxReplayBody = DefaultMaxReplayBody
	}
	if len(cfg.On) == 0 {
		cfg.On = DefaultRetryOn
	}
	p := &RetryPolicy{cfg: cfg, int64n: rand.Int64N}
	for _, s := range cfg.On {
		set, _ := parseCondition(s) // validated
		set(&p.cond)
	}
	return p, nil
}

// Config returns the policy's configuration with defaults applied.
func (p *RetryPolicy) Config() RetryConfig { return p.cfg }

// RetriesGRPC reports whether the policy retries any gRPC status, so
// that a caller only waits to learn a call's status when it matters.
func (p *RetryPolicy) RetriesGRPC() bool { return p.Enabled() && p.cond.grpc != 0 }

// Enabled reports whether the policy retries at all.
func (p *RetryPolicy) Enabled() bool { return p != nil && p.cfg.Attempts > 1 }

// KeepBody reports whether a request body of size bytes (-1 when unknown,
// as for a chunked body) should be buffered for replay.
func (p *RetryPolicy) KeepBody(size int64) bool {
	return p.Enabled() && size >= 0 && size <= p.cfg.MaxReplayBody
}

// IdempotentMethod reports whether method is idempotent by RFC 9110 §9.2.2
// (GET, HEAD, OPTIONS, TRACE, PUT, DELETE).
func IdempotentMethod(method string) bool {
	switch method {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return false
}

// Decide answers whether the request of a finished attempt may be retried,
// and why. It is pure: it does not consult the retry budget (take a retry
// from a Budget after Decide says yes) and does not allocate.
//
// The safety rule (DESIGN "a retry is only taken when it is provably
// safe"): an attempt whose request never reached the upstream (a failed
// dial, nothing sent) or that the upstream refused unprocessed
// (REFUSED_STREAM, RFC 9113 §8.7) may be retried whatever the request;
// after bytes were sent only an idempotent method, a request with an
// Idempotency-Key, or a route marked idempotent may be. In every case the
// body must still be replayable.
func (p *RetryPolicy) Decide(a Attempt) Decision {
	if !p.Enabled() {
		return Decision{Reason: ReasonOff}
	}
	if a.Outcome.Kind == KindCanceled {
		return Decision{Reason: ReasonCanceled}
	}
	reason, ok := p.match(a.Outcome)
	if !ok {
		return Decision{Reason: ReasonNoCondition}
	}
	if a.N >= p.cfg.Attempts {
		return Decision{Reason: ReasonAttempts}
	}
	if p.cfg.Timeout > 0 && a.Elapsed >= p.cfg.Timeout {
		return Decision{Reason: ReasonTimeout}
	}
	unprocessed := !a.Sent || a.Outcome.Kind == KindConnectFailure || a.Outcome.Kind == KindRefusedStream
	if !unprocessed && !IdempotentMethod(a.Method) && !a.IdempotencyKey && !a.RouteIdempotent {
		return Decision{Reason: ReasonNotIdempotent}
	}
	if !a.BodyReplayable {
		return Decision{Reason: ReasonBodyNotKept}
	}
	return Decision{Retry: true, Reason: reason}
}

// match finds the first configured condition o satisfies.
func (p *RetryPolicy) match(o Outcome) (Reason, bool) {
	c := &p.cond
	switch o.Kind {
	case KindConnectFailure:
		if c.connectFailure || c.any5xx {
			return ReasonConnectFailure, true
		}
	case KindRefusedStream:
		if c.refusedStream || c.any5xx {
			return ReasonRefusedStream, true
		}
	case KindReset:
		if c.reset || c.any5xx {
			return ReasonReset, true
		}
	case KindTimeout:
		// Envoy's "reset" and "5xx" both cover an endpoint that did not
		// answer in time.
		if c.reset || c.any5xx {
			return ReasonReset, true
		}
	case KindResponse:
		s := o.Status
		if s >= 0 && s < 640 && c.status[s/64]&(1<<(s%64)) != 0 {
			return ReasonStatus, true
		}
		if c.gateway && (s == 502 || s == 503 || s == 504) {
			return ReasonGatewayError, true
		}
		if c.any5xx && s >= 500 && s < 600 {
			return Reason5xx, true
		}
		if o.GRPC && o.GRPCStatus > 0 && o.GRPCStatus < 32 && c.grpc&(1<<o.GRPCStatus) != 0 {
			return ReasonGRPCStatus, true
		}
	}
	return "", false
}

// BackoffCeiling is the upper bound of the backoff before retry n (1 for
// the first retry): min(BackoffMax, BackoffBase·2^(n-1)).
func (p *RetryPolicy) BackoffCeiling(n int) time.Duration {
	d := p.cfg.BackoffBase
	for i := 1; i < n && d < p.cfg.BackoffMax; i++ {
		d *= 2
	}
	return min(d, p.cfg.BackoffMax)
}

// Backoff draws the wait before retry n with full jitter: uniform in
// [0, BackoffCeiling(n)] (the AWS "Exponential Backoff And Jitter" scheme;
// it spreads the retries of many clients that failed together).
func (p *RetryPolicy) Backoff(n int) time.Duration {
	return time.Duration(p.int64n(int64(p.BackoffCeiling(n)) + 1))
}

// Wait sleeps Backoff(n), or returns ctx's error when ctx ends first.
func (p *RetryPolicy) Wait(ctx context.Context, n int) error {
	t := time.NewTimer(p.Backoff(n))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// String renders the policy for logs.
func (p *RetryPolicy) String() string {
	if !p.Enabled() {
		return "retries off"
	}
	return fmt.Sprintf("attempts %d on %s", p.cfg.Attempts, strings.Join(p.cfg.On, ","))
}
