package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"

	"github.com/outrigger-mesh/outrigger/balancer"
	"github.com/outrigger-mesh/outrigger/resilience"
)

// Admission control: before a request is forwarded, both HTTP engines ask
// its route and its service whether it may go (issue 5, items 2, 5, 6).
// In order: the route's rate limit and per-client rate limit (429 with
// Retry-After, "rate_limited"), the route's and the service's in-flight
// request limits and, on the fast path, the service's connection limit
// (503 "overflow", as Envoy's overflow), then the route's circuit breaker
// (503 "circuit_open", a gRPC UNAVAILABLE on gRPC calls). A refused
// request sends nothing upstream. An admitted one releases its counters
// when the engine is done with it and reports its outcome, judged after
// its last attempt, to the route's breaker once.
//
// Everything here is read on the request path without a lock and without
// allocating: limits are atomics, rate limits are one atomic per bucket
// (resilience.Limiter), a closed breaker is one atomic load. Only a
// half-open probe, a failure reported to a breaker and a client new to a
// per-client table take a lock.
//
// Ownership: an Admission is built per listener (cmd/outrigger, with the
// route table) and published with it by SetRouting; RouteLimits belong to
// one route and may be carried into the next Admission when the route's
// settings did not change; ServiceLimits belong to one upstream service,
// shared by every listener that sends to it, and live as long as the
// process wants (SetConfig changes their limits in place).

// Error causes of admission refusals (see ErrorHeader).
const (
	causeRateLimited = "rate_limited" // 429, with Retry-After
	causeOverflow    = "overflow"     // 503: an in-flight or connection limit
	causeCircuitOpen = "circuit_open" // 503: the route's breaker is open
)

// RouteLimitsConfig is one route's admission settings; the zero value
// admits everything.
type RouteLimitsConfig struct {
	// Breaker is the route's circuit breaker (off unless it enables a trip
	// condition). It judges requests after their last attempt: 5xx
	// answers, gateway errors and connect, reset and timeout failures
	// count; a client that went away does not.
	Breaker resilience.BreakerConfig
	// RateLimit limits the route's requests; PerClient limits each
	// client's (by source IP) separately. Rate 0: off.
	RateLimit resilience.RateLimitConfig
	PerClient resilience.RateLimitConfig
	// MaxRequests bounds the route's requests in flight; 0: no limit.
	MaxRequests int64
}

// Enabled reports whether c limits anything.
func (c RouteLimitsConfig) Enabled() bool {
	return c.Breaker.Enabled() || c.RateLimit.Enabled() || c.PerClient.Enabled() || c.MaxRequests > 0
}

// Validate reports every problem of c, joined.
func (c RouteLimitsConfig) Validate() error {
	var errs []error
	if c.Breaker.Enabled() {
		errs = append(errs, c.Breaker.Validate())
	}
	errs = append(errs, c.RateLimit.Validate())
	if err := c.PerClient.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("per client: %w", err))
	}
	if c.MaxRequests < 0 {
		errs = append(errs, fmt.Errorf("max_requests: %d is negative", c.MaxRequests))
	}
	return errors.Join(errs...)
}

// RouteLimits is the live admission state of one route. Safe for
// concurrent use.
type RouteLimits struct {
	// Set at construction.
	breaker     *resilience.Breaker // nil: none
	rate        *resilience.Limiter // nil: none
	perClient   *resilience.ClientLimiter[netip.Addr]
	maxRequests int64

	// Atomic.
	inflight atomic.Int64
}

// NewRouteLimits returns the state of route for a valid cfg; nil when cfg
// limits nothing. Breaker state changes are logged to log (nil: the
// default logger) — not per request.
func NewRouteLimits(route string, cfg RouteLimitsConfig, log *slog.Logger) *RouteLimits {
	if !cfg.Enabled() {
		return nil
	}
	if log == nil {
		log = slog.Default()
	}
	rl := &RouteLimits{maxRequests: cfg.MaxRequests}
	if cfg.RateLimit.Enabled() {
		rl.rate = resilience.NewLimiter(cfg.RateLimit)
	}
	if cfg.PerClient.Enabled() {
		rl.perClient = resilience.NewClientLimiter[netip.Addr](cfg.PerClient)
	}
	if cfg.Breaker.Enabled() {
		// gobreaker calls this under the breaker's lock: it logs and
		// touches nothing else (never the breaker). State changes are
		// rare, so a log line here costs the route nothing.
		rl.breaker = resilience.NewBreaker("route/"+route, cfg.Breaker, func(s resilience.BreakerState) {
			lvl := slog.LevelWarn
			if s == resilience.BreakerClosed {
				lvl = slog.LevelInfo
			}
			log.Log(nil, lvl, "route circuit breaker "+s.String(), "route", route)
		})
	}
	return rl
}

// Breaker is the route's circuit breaker, nil when it has none.
func (rl *RouteLimits) Breaker() *resilience.Breaker { return rl.breaker }

// ServiceLimitsConfig is one upstream service's limits; the zero value
// limits nothing.
type ServiceLimitsConfig struct {
	// MaxRequests bounds the service's requests in flight, over every
	// listener; 0: no limit.
	MaxRequests int64
	// MaxConnections bounds the upstream connections open to the
	// service's endpoints, over every listener; 0: no limit. On the
	// HTTP/1.1 fast path a request that would need a connection beyond it
	// gets 503 overflow at once (each request holds one connection, so
	// the fast path counts its requests in flight against it, and a dial
	// at the limit closes an idle connection of the service first); on
	// net/http's path (HTTP/2, gRPC, HTTP/1.0, upgrades) a dial beyond it
	// fails at once with 503 overflow instead of queueing for a
	// connection.
	MaxConnections int64
}

// Validate reports every problem of c, joined.
func (c ServiceLimitsConfig) Validate() error {
	var errs []error
	if c.MaxRequests < 0 {
		errs = append(errs, fmt.Errorf("max_requests: %d is negative", c.MaxRequests))
	}
	if c.MaxConnections < 0 {
		errs = append(errs, fmt.Errorf("max_connections: %d is negative", c.MaxConnections))
	}
	return errors.Join(errs...)
}

// ServiceLimits is the live limit state of one upstream service, shared by
// every listener that sends to it. Safe for concurrent use; SetConfig
// changes the limits in place, so that the counts survive a reload.
type ServiceLimits struct {
	maxRequests atomic.Int64
	maxConns    atomic.Int64

	inflight atomic.Int64 // requests in flight, both engines
	busy     atomic.Int64 // fast-path requests in flight (one connection each)
	conns    atomic.Int64 // open upstream connections, both engines
}

// NewServiceLimits returns the state of a service limited by cfg.
func NewServiceLimits(cfg ServiceLimitsConfig) *ServiceLimits {
	s := new(ServiceLimits)
	s.SetConfig(cfg)
	return s
}

// SetConfig changes the limits for requests and dials that start
// afterwards.
func (s *ServiceLimits) SetConfig(cfg ServiceLimitsConfig) {
	s.maxRequests.Store(cfg.MaxRequests)
	s.maxConns.Store(cfg.MaxConnections)
}

// Conns is how many upstream connections to the service are open now
// (counted while a connection limit is set).
func (s *ServiceLimits) Conns() int64 { return s.conns.Load() }

// InFlight is how many requests to the service are in flight now
// (counted while any limit is set).
func (s *ServiceLimits) InFlight() int64 { return s.inflight.Load() }

// limited reports whether s limits anything now.
func (s *ServiceLimits) limited() bool {
	return s.maxRequests.Load() > 0 || s.maxConns.Load() > 0
}

// takeConn counts a new connection; false (and nothing counted) when the
// service is at its connection limit.
func (s *ServiceLimits) takeConn() bool {
	max := s.maxConns.Load()
	if max <= 0 {
		s.conns.Add(1)
		return true
	}
	for {
		n := s.conns.Load()
		if n >= max {
			return false
		}
		if s.conns.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// Admission is the admission control of one HTTP listener's routing: per
// route (by route.Route.Index, the route's position in the config; a nil
// entry limits nothing) and per upstream service. It is immutable once
// published by SetRouting; the states it points to are live.
type Admission struct {
	Routes   []*RouteLimits
	Services map[string]*ServiceLimits
}

func (a *Admission) route(i int) *RouteLimits {
	if i < 0 || i >= len(a.Routes) {
		return nil
	}
	return a.Routes[i]
}

func (a *Admission) service(svc string) *ServiceLimits {
	if len(a.Services) == 0 {
		return nil
	}
	return a.Services[svc]
}

// admitted is one admitted request: what it holds, released by done.
type admitted struct {
	rl      *RouteLimits
	sl      *ServiceLimits
	ticket  resilience.Ticket
	breaker bool // rl.breaker admitted it: report its outcome
	route   bool // counted in rl.inflight
	service bool // counted in sl.inflight
	busy    bool // counted in sl.busy
}

// refusal is why admit refused a request.
type refusal struct {
	status     int
	cause, msg string
	retryAfter int // seconds, for 429
}

// admit asks rl (may be nil) and sl (may be nil) whether a request from
// client (read only with a per-client limit) may go; fast says the request runs on the fast path (it holds
// one upstream connection while in flight). On refusal nothing is held.
func admit(rl *RouteLimits, sl *ServiceLimits, client netip.Addr, fast bool) (admitted, *refusal) {
	ad := admitted{rl: rl, sl: sl}
	if rl != nil {
		if rl.rate != nil {
			if ok, ra := rl.rate.Allow(); !ok {
				return ad, &refusal{429, causeRateLimited, "rate limited", ra}
			}
		}
		if rl.perClient != nil {
			if ok, ra := rl.perClient.Allow(client); !ok {
				return ad, &refusal{429, causeRateLimited, "rate limited", ra}
			}
		}
		if rl.maxRequests > 0 {
			ad.route = true
			if rl.inflight.Add(1) > rl.maxRequests {
				ad.release()
				return ad, &refusal{503, causeOverflow, "too many requests in flight on this route", 0}
			}
		}
	}
	if sl != nil && sl.limited() {
		if max := sl.maxRequests.Load(); max > 0 {
			ad.service = true
			if sl.inflight.Add(1) > max {
				ad.release()
				return ad, &refusal{503, causeOverflow, "too many requests in flight to this service", 0}
			}
		}
		if max := sl.maxConns.Load(); fast && max > 0 {
			ad.busy = true
			if sl.busy.Add(1) > max {
				ad.release()
				return ad, &refusal{503, causeOverflow, "too many connections to this service", 0}
			}
		}
	}
	if rl != nil && rl.breaker != nil {
		t, ok := rl.breaker.Admit()
		if !ok {
			ad.release()
			return ad, refusedOpen
		}
		ad.ticket, ad.breaker = t, true
	}
	return ad, nil
}

// refusedOpen is the refusal of an open breaker.
var refusedOpen = &refusal{503, causeCircuitOpen, "circuit breaker open", 0}

// release gives back the counts ad holds.
func (ad *admitted) release() {
	if ad.route {
		ad.rl.inflight.Add(-1)
		ad.route = false
	}
	if ad.service {
		ad.sl.inflight.Add(-1)
		ad.service = false
	}
	if ad.busy {
		ad.sl.busy.Add(-1)
		ad.busy = false
	}
}

// done ends an admitted request with outcome o (after its last attempt).
func (ad *admitted) done(o resilience.Outcome) {
	ad.release()
	if ad.breaker {
		ad.breaker = false
		ad.rl.breaker.Done(ad.ticket, o)
	}
}

// requestOutcome judges a finished request for the route's breaker from
// the status the client got and the proxy's cause: none (the client went
// away before an answer) and the client's own faults (a malformed or too
// large body) say nothing about the route.
func requestOutcome(status int, cause string) resilience.Outcome {
	switch {
	case status == 0, cause == causeBadRequest, cause == causeBodyTooLarge:
		return resilience.Outcome{Kind: resilience.KindCanceled}
	case cause == causeUpstreamReset:
		// The proxy's 502, or the endpoint's status whose body the
		// endpoint broke after the head (h1relay.go, responseBody).
		return resilience.Outcome{Kind: resilience.KindReset}
	}
	return resilience.Response(status)
}

// errOverflow is a dial refused at the service's connection limit: nothing
// was sent, and it says nothing about the endpoint (its Outcome is
// neutral for breakers and outlier detection).
var errOverflow = &overflowError{}

type overflowError struct{}

func (*overflowError) Error() string { return "upstream connection limit reached" }

// AttemptOutcome implements resilience.Classifier: neutral.
func (*overflowError) AttemptOutcome() resilience.Outcome {
	return resilience.Outcome{Kind: resilience.KindCanceled}
}

// countedConn is a net/http upstream connection counted in its service's
// connection count until closed.
type countedConn struct {
	net.Conn
	sl     *ServiceLimits
	closed atomic.Bool
}

func (c *countedConn) Close() error {
	if !c.closed.Swap(true) {
		c.sl.conns.Add(-1)
	}
	return c.Conn.Close()
}

// poolPick is the Upstream the fast path forwards through when the
// service has a connection limit: it tags the picked endpoint's pool with
// the service's limits, so that dials and idle connections there are
// counted (an address serving two services counts for the latest).
type poolPick struct {
	up    Upstream
	sl    *ServiceLimits
	pools *upstreamPools
}

func (p *poolPick) Pick(info *balancer.PickInfo) (balancer.PickResult, error) {
	res, err := p.up.Pick(info)
	if err == nil && res.Endpoint != nil {
		if ep := p.pools.endpoint(res.Endpoint.Addr); ep.svc.Load() != p.sl {
			ep.svc.Store(p.sl)
		}
	}
	return res, err
}
