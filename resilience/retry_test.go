package resilience

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRetryConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  RetryConfig
		want []string
	}{
		{"zero", RetryConfig{}, nil},
		{"full", RetryConfig{Attempts: 3, PerTryTimeout: time.Second, Timeout: 5 * time.Second,
			On:          []string{"connect-failure", "refused-stream", "reset", "5xx", "gateway-error", "503", "429", "unavailable", "resource-exhausted", "deadline-exceeded"},
			BackoffBase: time.Millisecond, BackoffMax: time.Second, MaxReplayBody: 1 << 20}, nil},
		{"everything wrong", RetryConfig{Attempts: -1, PerTryTimeout: -1, BackoffBase: time.Second, BackoffMax: time.Millisecond,
			On: []string{"5XX", "200", "ok"}}, []string{
			"retry: attempts: -1 is negative",
			"retry: per_try_timeout: -1ns is negative",
			"retry: backoff_max: 1ms is less than backoff_base 1s",
			`retry: on: unknown retry condition "5XX" (want connect-failure, refused-stream, reset, 5xx, gateway-error, an HTTP status like 503, or a gRPC status like unavailable)`,
			"retry: on: status 200: only 4xx and 5xx statuses can be retried",
			`retry: on: unknown retry condition "ok" (want connect-failure, refused-stream, reset, 5xx, gateway-error, an HTTP status like 503, or a gRPC status like unavailable)`,
		}},
	}
	for _, tt := range tests {
		var got []string
		if err := tt.cfg.Validate(); err != nil {
			got = strings.Split(err.Error(), "\n")
		}
		if diff := cmp.Diff(got, tt.want); diff != "" {
			t.Errorf("%s: Validate (-got +want):\n%s", tt.name, diff)
		}
		if _, err := NewRetryPolicy(tt.cfg); (err == nil) != (tt.want == nil) {
			t.Errorf("%s: NewRetryPolicy err = %v", tt.name, err)
		}
	}
}

func mustPolicy(t *testing.T, cfg RetryConfig) *RetryPolicy {
	t.Helper()
	p, err := NewRetryPolicy(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRetryDecide(t *testing.T) {
	p := mustPolicy(t, RetryConfig{Attempts: 3, Timeout: 2 * time.Second,
		On: []string{"connect-failure", "refused-stream", "reset", "gateway-error", "429", "unavailable"}})
	dial := Outcome{Kind: KindConnectFailure}
	// get is a first attempt of a GET that reached the upstream, body-less.
	get := Attempt{N: 1, Sent: true, Method: "GET", BodyReplayable: true}
	with := func(a Attempt, f func(*Attempt)) Attempt { f(&a); return a }
	tests := []struct {
		name string
		a    Attempt
		want Decision
	}{
		{"dial failure of a POST with a streamed body", Attempt{Outcome: dial, N: 1, Method: "POST", BodyReplayable: true},
			Decision{true, ReasonConnectFailure}},
		{"refused stream of a POST after send", Attempt{Outcome: Outcome{Kind: KindRefusedStream}, N: 1, Sent: true, Method: "POST", BodyReplayable: true},
			Decision{true, ReasonRefusedStream}},
		{"503 of a GET", with(get, func(a *Attempt) { a.Outcome = Response(503) }), Decision{true, ReasonGatewayError}},
		{"429 listed", with(get, func(a *Attempt) { a.Outcome = Response(429) }), Decision{true, ReasonStatus}},
		{"500 not listed", with(get, func(a *Attempt) { a.Outcome = Response(500) }), Decision{false, ReasonNoCondition}},
		{"200", with(get, func(a *Attempt) { a.Outcome = Response(200) }), Decision{false, ReasonNoCondition}},
		{"grpc unavailable", with(get, func(a *Attempt) {
			a.Method = "POST"
			a.RouteIdempotent = true
			a.Outcome = GRPCResponse(GRPCUnavailable)
		}),
			Decision{true, ReasonGRPCStatus}},
		{"grpc not found", with(get, func(a *Attempt) { a.Outcome = GRPCResponse(GRPCNotFound) }), Decision{false, ReasonNoCondition}},
		{"reset of a GET", with(get, func(a *Attempt) { a.Outcome = Outcome{Kind: KindReset} }), Decision{true, ReasonReset}},
		{"timeout counts as reset", with(get, func(a *Attempt) { a.Outcome = Outcome{Kind: KindTimeout} }), Decision{true, ReasonReset}},
		{"reset of a POST after send", with(get, func(a *Attempt) { a.Method = "POST"; a.Outcome = Outcome{Kind: KindReset} }),
			Decision{false, ReasonNotIdempotent}},
		{"POST with Idempotency-Key", with(get, func(a *Attempt) { a.Method = "POST"; a.IdempotencyKey = true; a.Outcome = Response(503) }),
			Decision{true, ReasonGatewayError}},
		{"POST on an idempotent route", with(get, func(a *Attempt) { a.Method = "PATCH"; a.RouteIdempotent = true; a.Outcome = Response(502) }),
			Decision{true, ReasonGatewayError}},
		{"PUT with a body too big to keep", with(get, func(a *Attempt) { a.Method = "PUT"; a.BodyReplayable = false; a.Outcome = Response(503) }),
			Decision{false, ReasonBodyNotKept}},
		{"refused stream whose streamed body was read", Attempt{Outcome: Outcome{Kind: KindRefusedStream}, N: 1, Sent: true, Method: "POST"},
			Decision{false, ReasonBodyNotKept}},
		{"attempts exhausted", with(get, func(a *Attempt) { a.N = 3; a.Outcome = Response(503) }), Decision{false, ReasonAttempts}},
		{"overall timeout", with(get, func(a *Attempt) { a.N = 2; a.Elapsed = 2 * time.Second; a.Outcome = Response(503) }), Decision{false, ReasonTimeout}},
		{"canceled", with(get, func(a *Attempt) { a.Outcome = Outcome{Kind: KindCanceled} }), Decision{false, ReasonCanceled}},
	}
	for _, tt := range tests {
		if got := p.Decide(tt.a); got != tt.want {
			t.Errorf("%s: Decide = %+v, want %+v", tt.name, got, tt.want)
		}
	}

	off := mustPolicy(t, RetryConfig{})
	if got := off.Decide(Attempt{Outcome: dial, N: 1, BodyReplayable: true}); got != (Decision{false, ReasonOff}) {
		t.Errorf("zero config: Decide(dial failure) = %+v, want retries off", got)
	}
	def := mustPolicy(t, RetryConfig{Attempts: 2})
	for _, c := range []struct {
		o     Outcome
		retry bool
	}{{dial, true}, {Outcome{Kind: KindRefusedStream}, true}, {Outcome{Kind: KindReset}, false}, {Response(503), false}} {
		if got := def.Decide(with(get, func(a *Attempt) { a.Outcome = c.o })); got.Retry != c.retry {
			t.Errorf("default conditions: Decide(%v) = %+v, want retry %v", c.o.Kind, got, c.retry)
		}
	}
	all5xx := mustPolicy(t, RetryConfig{Attempts: 2, On: []string{"5xx"}})
	for _, o := range []Outcome{dial, {Kind: KindReset}, {Kind: KindTimeout}, Response(500), Response(599)} {
		if !all5xx.Decide(with(get, func(a *Attempt) { a.Outcome = o })).Retry {
			t.Errorf("5xx: Decide(%+v) did not retry", o)
		}
	}
	if all5xx.Decide(with(get, func(a *Attempt) { a.Outcome = Response(429) })).Retry {
		t.Errorf("5xx: Decide(429) retried")
	}
}

func TestRetryKeepBody(t *testing.T) {
	p := mustPolicy(t, RetryConfig{Attempts: 2})
	for _, c := range []struct {
		size int64
		want bool
	}{{0, true}, {64 << 10, true}, {64<<10 + 1, false}, {-1, false}} {
		if got := p.KeepBody(c.size); got != c.want {
			t.Errorf("KeepBody(%d) = %v, want %v", c.size, got, c.want)
		}
	}
	if mustPolicy(t, RetryConfig{}).KeepBody(10) {
		t.Error("KeepBody with retries off = true")
	}
	if mustPolicy(t, RetryConfig{Attempts: 2, MaxReplayBody: -1}).KeepBody(0) {
		t.Error("KeepBody with MaxReplayBody -1 = true")
	}
}

func TestBackoff(t *testing.T) {
	p := mustPolicy(t, RetryConfig{Attempts: 5, BackoffBase: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond})
	var ceilings []time.Duration
	for n := 1; n <= 5; n++ {
		ceilings = append(ceilings, p.BackoffCeiling(n))
	}
	want := []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond, 50 * time.Millisecond, 50 * time.Millisecond}
	if diff := cmp.Diff(ceilings, want); diff != "" {
		t.Errorf("ceilings (-got +want):\n%s", diff)
	}
	// Full jitter: the draw spans [0, ceiling], both ends included.
	var asked []int64
	p.int64n = func(n int64) int64 { asked = append(asked, n); return n - 1 }
	if got := p.Backoff(3); got != 40*time.Millisecond {
		t.Errorf("Backoff(3) with the top draw = %v, want 40ms", got)
	}
	p.int64n = func(n int64) int64 { asked = append(asked, n); return 0 }
	if got := p.Backoff(1); got != 0 {
		t.Errorf("Backoff(1) with the bottom draw = %v, want 0", got)
	}
	if diff := cmp.Diff(asked, []int64{int64(40*time.Millisecond) + 1, int64(10*time.Millisecond) + 1}); diff != "" {
		t.Errorf("draw ranges (-got +want):\n%s", diff)
	}
}

func TestRetryWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPolicy(t, RetryConfig{Attempts: 3, BackoffBase: 100 * time.Millisecond, BackoffMax: time.Second})
		p.int64n = func(n int64) int64 { return n / 2 } // half the ceiling
		start := time.Now()
		if err := p.Wait(t.Context(), 2); err != nil {
			t.Fatal(err)
		}
		if got := time.Since(start); got != 100*time.Millisecond {
			t.Errorf("Wait(2) took %v, want 100ms (half of the 200ms ceiling)", got)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Millisecond)
		defer cancel()
		start = time.Now()
		if err := p.Wait(ctx, 3); err != context.DeadlineExceeded {
			t.Errorf("Wait past the context's deadline: err = %v, want DeadlineExceeded", err)
		}
		if got := time.Since(start); got != 30*time.Millisecond {
			t.Errorf("Wait with a 30ms context returned after %v", got)
		}
	})
}

func TestDecideDoesNotAllocate(t *testing.T) {
	p := mustPolicy(t, RetryConfig{Attempts: 3, On: []string{"5xx", "unavailable", "429"}})
	a := Attempt{Outcome: Response(503), N: 1, Sent: true, Method: "GET", BodyReplayable: true}
	if n := testing.AllocsPerRun(100, func() { p.Decide(a) }); n != 0 {
		t.Errorf("Decide: %v allocations, want 0", n)
	}
}

func TestRetriesGRPC(t *testing.T) {
	for _, tc := range []struct {
		cfg  RetryConfig
		want bool
	}{
		{RetryConfig{Attempts: 2, On: []string{"unavailable"}}, true},
		{RetryConfig{Attempts: 2, On: []string{"5xx", "503"}}, false},
		{RetryConfig{Attempts: 1, On: []string{"unavailable"}}, false},
	} {
		p, err := NewRetryPolicy(tc.cfg)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.RetriesGRPC(); got != tc.want {
			t.Errorf("%+v: RetriesGRPC() = %v, want %v", tc.cfg, got, tc.want)
		}
	}
}
