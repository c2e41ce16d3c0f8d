package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/outrigger-mesh/outrigger/balancer"
	"github.com/outrigger-mesh/outrigger/proxy/route"
	"github.com/outrigger-mesh/outrigger/resilience"
)

// L7 retries, shared by both HTTP engines. A request's retry setting comes
// with its upstream: cmd/outrigger wraps each service's Upstream with
// WithRetry when it builds a listener's routing state, so the setting is
// swapped with the route table by SetRoutes, atomically, and a request
// keeps the one it started with. Per request: Budget.Begin, then per
// finished attempt RetryPolicy.Decide, Budget.TryRetry and a backoff
// before the next Pick, which avoids the endpoints already tried.

// Retry is the retry setting of one upstream service: its policy and its
// retry budget. One Retry is shared by every listener that sends to the
// service, so the budget counts all of the service's requests. Both fields
// are immutable or atomic: safe for concurrent use.
type Retry struct {
	// Policy is the service's policy; nil or not Enabled means no retries
	// unless a route overrides it.
	Policy *resilience.RetryPolicy
	// Budget bounds the retries of every request to the service, whichever
	// policy (the service's or a route's) asked for them. Required.
	Budget *resilience.Budget
}

// WithRetry returns up with the retry setting r for HTTP listeners.
// routes optionally overrides the policy per route of the listener's route
// table the returned Upstream is used with: routes[i] is the policy of the
// route with Index i (nil: the service's). Pick is up's; a TCP listener
// ignores the setting.
func WithRetry(up Upstream, r *Retry, routes []*resilience.RetryPolicy) Upstream {
	return &retryUpstream{Upstream: up, retry: r, routes: routes}
}

// retryUpstream is an Upstream with its retry setting. The engines unwrap
// it and pick from the Upstream beneath.
type retryUpstream struct {
	Upstream
	retry  *Retry
	routes []*resilience.RetryPolicy
}

// retryOf returns the Upstream to pick from and the policy and budget a
// request on rt to up follows; nil policy when it does not retry.
func retryOf(up Upstream, rt *route.Route) (Upstream, *resilience.RetryPolicy, *resilience.Budget) {
	if pp, ok := up.(*poolPick); ok {
		// Admission's connection-limit wrapper (admit_h1.go) around a
		// retrying upstream: unwrap beneath it, keep the wrapper on top.
		inner, p, b := retryOf(pp.up, rt)
		pp.up = inner
		return pp, p, b
	}
	ru, ok := up.(*retryUpstream)
	if !ok {
		return up, nil, nil
	}
	p := ru.retry.Policy
	if i := rt.Index; i < len(ru.routes) && ru.routes[i] != nil {
		p = ru.routes[i]
	}
	if !p.Enabled() || ru.retry.Budget == nil {
		return ru.Upstream, nil, nil
	}
	return ru.Upstream, p, ru.retry.Budget
}

// retryState is one request's retry bookkeeping. It lives on the
// forwarding goroutine's stack (fast path) or in the exchange (net/http's
// path) and is used by one goroutine at a time.
type retryState struct {
	pol    *resilience.RetryPolicy
	budget *resilience.Budget
	start  time.Time
	// deadline ends the request's attempts and backoffs: the policy's
	// overall timeout or the route's (bound), whichever comes first;
	// zero: none.
	deadline time.Time
	n        int  // attempts the policy counts so far (a free reconnect after a failed dial is not one)
	held     bool // a retry taken from the budget is in flight
	// backoff is the wait before the retry decide allowed last.
	backoff time.Duration
	// replayable says the request's body is kept whole (or it has none),
	// so it can be sent again after an attempt sent it.
	replayable bool
	// The request's idempotency, fixed when it starts (the fast path's
	// request fields may be overwritten by a body pump later).
	method    string // interned (methodName): "OTHER" is not idempotent
	idemKey   bool
	routeIdem bool
}

// begin starts the request's accounting; end must follow.
func (rs *retryState) begin(pol *resilience.RetryPolicy, b *resilience.Budget, method string, idemKey, routeIdem bool) {
	*rs = retryState{pol: pol, budget: b, start: time.Now(), n: 1,
		method: method, idemKey: idemKey, routeIdem: routeIdem}
	if t := pol.Config().Timeout; t > 0 {
		rs.deadline = rs.start.Add(t)
	}
	b.Begin()
}

// bound makes the request's attempts end by deadline too (zero: no
// change): the route's timeout and the policy's are one deadline, the
// earlier (see timeout.go).
func (rs *retryState) bound(deadline time.Time) {
	rs.deadline = earlier(rs.deadline, deadline)
}

// end finishes the request's accounting: its last retry and itself.
func (rs *retryState) end() {
	if rs.held {
		rs.budget.RetryDone()
		rs.held = false
	}
	rs.budget.End()
}

// attemptTimeout bounds the wait for an attempt's response head: the
// listener's response timeout, the policy's per-try timeout and what is
// left until the request's deadline, whichever is least (at least 1ns: an
// exhausted timeout fails the attempt at once).
func (rs *retryState) attemptTimeout(respTimeout time.Duration) time.Duration {
	t := respTimeout
	c := rs.pol.Config()
	if c.PerTryTimeout > 0 && (t <= 0 || c.PerTryTimeout < t) {
		t = c.PerTryTimeout
	}
	return untilDeadline(t, rs.deadline)
}

// decide answers whether a finished attempt with outcome o is retried:
// the policy must say yes and the budget must have room. sent says some
// byte of the request may have reached the endpoint; replayable that the
// request can be sent again as it was. It does not wait.
func (rs *retryState) decide(o resilience.Outcome, sent, replayable bool) (resilience.Decision, bool) {
	if rs.held {
		// The retry in flight ended with this attempt.
		rs.budget.RetryDone()
		rs.held = false
	}
	d := rs.pol.Decide(resilience.Attempt{
		Outcome:         o,
		N:               rs.n,
		Elapsed:         time.Since(rs.start),
		Sent:            sent,
		Method:          rs.method,
		IdempotencyKey:  rs.idemKey,
		RouteIdempotent: rs.routeIdem,
		BodyReplayable:  replayable,
	})
	if !d.Retry {
		return d, false
	}
	// The backoff is drawn now: a retry whose wait would outlast the
	// overall timeout is not taken, and the attempt's answer stands.
	rs.backoff = rs.pol.Backoff(rs.n)
	if !rs.deadline.IsZero() && !time.Now().Add(rs.backoff).Before(rs.deadline) {
		d.Retry, d.Reason = false, resilience.ReasonTimeout
		return d, false
	}
	if !rs.budget.TryRetry() {
		d.Retry, d.Reason = false, reasonBudget
		return d, false
	}
	rs.held = true
	rs.n++
	return d, true
}

// cancelRetry gives back the retry decide allowed last when it is not
// taken after all (no endpoint was left to take it): the budget's count
// of retries in flight and the attempt count are as before that decide.
func (rs *retryState) cancelRetry() {
	if rs.held {
		rs.budget.RetryDone()
		rs.held = false
	}
	rs.n--
}

// reasonBudget is why a retry the policy allowed was not taken.
const reasonBudget resilience.Reason = "retry budget exhausted"

// wait sleeps the backoff drawn by the decide that allowed a retry; false
// when ctx ended first.
func (rs *retryState) wait(ctx context.Context) bool {
	d := rs.backoff
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// pickEndpoint picks from up; a pick without an endpoint is an error (its
// Done is called).
func pickEndpoint(up Upstream, info *balancer.PickInfo) (balancer.PickResult, error) {
	res, err := up.Pick(info)
	if err == nil && res.Endpoint == nil {
		res.Done(balancer.DoneInfo{Err: errors.New("pick returned no endpoint")})
		err = errors.New("upstream returned a pick without an endpoint")
	}
	return res, err
}

// doneReported is the Done of a response relayed after its pick's Done
// was already called (a retried response that became the answer when no
// endpoint was left to retry on): Done is called once per pick.
func doneReported(balancer.DoneInfo) {}

// errListenerClosed is a backoff cut short by the listener shutting down.
var errListenerClosed = errors.New("listener shutting down")

// errOutcome classifies a failed attempt for the retry policy: a failed
// dial is a connect failure; a refused HTTP/2 stream is one; a connection
// that closed or reset before a complete response head is a reset; a
// deadline is a timeout; the rest as resilience.OutcomeOf says.
func errOutcome(err error) resilience.Outcome {
	var de *DialError
	var ne net.Error
	switch {
	case errors.As(err, &de):
		return resilience.Outcome{Kind: resilience.KindConnectFailure}
	case errors.Is(err, context.Canceled) && !errors.Is(err, errPerTryTimeout):
		return resilience.Outcome{Kind: resilience.KindCanceled}
	case errors.Is(err, errPerTryTimeout), errors.As(err, &ne) && ne.Timeout():
		return resilience.Outcome{Kind: resilience.KindTimeout}
	case isRefusedStream(err):
		return resilience.Outcome{Kind: resilience.KindRefusedStream}
	case isConnGone(err), errors.Is(err, errTooManyInterim):
		return resilience.Outcome{Kind: resilience.KindReset}
	}
	o := resilience.OutcomeOf(resilience.Outcome{}, err)
	if o.Kind == resilience.KindFailure {
		// A connection that ended or broke before a whole response head
		// (net/http: "server closed connection", a malformed head): the
		// endpoint did not answer, as with a reset.
		o.Kind = resilience.KindReset
	}
	return o
}

// isRefusedStream reports whether err is an HTTP/2 REFUSED_STREAM (RFC
// 9113 §8.7): the endpoint did not process the request. net/http's
// bundled HTTP/2 transport does not export its error type, so its text is
// matched.
func isRefusedStream(err error) bool {
	return err != nil && strings.Contains(err.Error(), "REFUSED_STREAM")
}

// errPerTryTimeout is the cause of an attempt canceled by the per-try
// timeout on net/http's path.
var errPerTryTimeout = errors.New("per-try timeout")

// perTryTimeoutError is the error of such an attempt: a timeout, so that
// the client gets 504 when no retry follows.
type perTryTimeoutError struct{ err error }

func (e *perTryTimeoutError) Error() string   { return "upstream per-try timeout: " + e.err.Error() }
func (e *perTryTimeoutError) Unwrap() error   { return errPerTryTimeout }
func (e *perTryTimeoutError) Timeout() bool   { return true }
func (e *perTryTimeoutError) Temporary() bool { return true }

// statusDoneErr is the DoneInfo.Err of a response with status: a
// *StatusError for a 5xx, else nil.
func statusDoneErr(status int) error {
	if status >= 500 && status < 600 {
		return &statusErrors[status-500]
	}
	return nil
}

// discardMax is the most response body bytes read to throw a response
// away and keep its connection; a bigger body closes the connection.
const discardMax = 64 << 10

// discardBody reads and drops what is left of a discarded response's body
// on net/http's path and closes it: read whole within discardMax, the
// transport keeps the connection; else closing the body closes it.
func discardBody(rc io.ReadCloser) {
	io.CopyN(io.Discard, rc, discardMax)
	rc.Close()
}

// doneDiscarded reports the outcome of an attempt whose response was
// discarded for a retry.
func doneDiscarded(done func(balancer.DoneInfo), status int, o resilience.Outcome, start time.Time) {
	err := statusDoneErr(status)
	if o.GRPC && o.GRPCStatus != 0 {
		err = grpcStatusErr(strconv.Itoa(o.GRPCStatus))
	}
	done(balancer.DoneInfo{Err: err, Duration: time.Since(start), Outcome: o})
}
