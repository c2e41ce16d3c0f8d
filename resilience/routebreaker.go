package resilience

import (
	"errors"
	"fmt"
)

// ErrCircuitOpen is what a request refused by an open (or probing) route
// breaker fails with: the engine answers 503 at once with a reason header,
// or a gRPC UNAVAILABLE, and sends nothing upstream.
var ErrCircuitOpen = errors.New("circuit breaker open")

// RouteBreakers holds one Breaker per route that configures one, keyed by
// route name. It is built once per config and immutable afterwards (a
// reload builds a new one), so lookups need no lock.
//
// Per request: b := rb.Get(route); if b != nil, t, ok := b.Admit(); when
// !ok fail fast with ErrCircuitOpen; else keep t with the request and call
// b.Done(t, outcome) once when it ends (after its last attempt: the route
// breaker judges requests, the endpoint breakers judge attempts).
type RouteBreakers struct {
	m map[string]*Breaker
}

// NewRouteBreakers validates every enabled config of cfgs (keyed by route
// name) and returns their breakers; routes whose config enables nothing get
// none. onChange, if not nil, is called like Breaker's, with the route name.
func NewRouteBreakers(cfgs map[string]BreakerConfig, onChange func(route string, s BreakerState)) (*RouteBreakers, error) {
	rb := &RouteBreakers{m: map[string]*Breaker{}}
	var errs []error
	for route, cfg := range cfgs {
		if !cfg.Enabled() {
			continue
		}
		if err := cfg.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("route %q: %w", route, err))
			continue
		}
		var cb func(BreakerState)
		if onChange != nil {
			cb = func(s BreakerState) { onChange(route, s) }
		}
		rb.m[route] = NewBreaker("route/"+route, cfg, cb)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return rb, nil
}

// Get returns route's breaker, or nil when it has none.
func (rb *RouteBreakers) Get(route string) *Breaker {
	if rb == nil {
		return nil
	}
	return rb.m[route]
}
