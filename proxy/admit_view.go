package proxy

// Read-only views of admission state, for the admin API's /why: what the
// limits would do to a request now, taking no token, no slot and no probe.

// RouteAdmissionView is one route's admission state now.
type RouteAdmissionView struct {
	// Breaker is the route breaker's state ("closed", "open",
	// "half-open"); "" when the route has none.
	Breaker string `json:"breaker,omitempty"`
	// InFlight counts the route's requests in flight; MaxRequests is its
	// limit (0: none).
	InFlight    int64 `json:"in_flight"`
	MaxRequests int64 `json:"max_requests,omitempty"`
	// RateLimit says whether the route has a rate limit, and RateLimited
	// whether its bucket is empty now (RetryAfter in seconds).
	RateLimit   bool `json:"rate_limit,omitempty"`
	RateLimited bool `json:"rate_limited,omitempty"`
	RetryAfter  int  `json:"retry_after,omitempty"`
	// PerClient says a per-client rate limit applies too (whether it
	// refuses depends on the client).
	PerClient bool `json:"rate_limit_per_client,omitempty"`
}

// View returns rl's state now; nil rl (no limits) gives the zero view.
func (rl *RouteLimits) View() RouteAdmissionView {
	if rl == nil {
		return RouteAdmissionView{}
	}
	v := RouteAdmissionView{InFlight: rl.inflight.Load(), MaxRequests: rl.maxRequests, PerClient: rl.perClient != nil}
	if rl.breaker != nil {
		v.Breaker = rl.breaker.State().String()
	}
	if rl.rate != nil {
		v.RateLimit = true
		ok, after := rl.rate.Peek()
		v.RateLimited, v.RetryAfter = !ok, after
	}
	return v
}

// ServiceAdmissionView is one service's limits and counts now.
type ServiceAdmissionView struct {
	InFlight       int64 `json:"in_flight"`
	MaxRequests    int64 `json:"max_requests,omitempty"`
	Connections    int64 `json:"connections"`
	MaxConnections int64 `json:"max_connections,omitempty"`
}

// View returns s's state now.
func (s *ServiceLimits) View() ServiceAdmissionView {
	return ServiceAdmissionView{InFlight: s.inflight.Load(), MaxRequests: s.maxRequests.Load(),
		Connections: s.conns.Load(), MaxConnections: s.maxConns.Load()}
}

// RouteLimitsAt returns the admission state of route index i (nil: none).
func (a *Admission) RouteLimitsAt(i int) *RouteLimits {
	if a == nil {
		return nil
	}
	return a.route(i)
}

// ServiceLimitsOf returns svc's limits (nil: none).
func (a *Admission) ServiceLimitsOf(svc string) *ServiceLimits {
	if a == nil {
		return nil
	}
	return a.Services[svc]
}

// Admission returns the admission control requests that start now use
// (nil: none).
func (l *HTTPListener) Admission() *Admission { return l.routing.Load().adm }

// Admission returns the admission control of the listener's HTTP engine.
func (l *FrontListener) Admission() *Admission { return l.http.Admission() }
