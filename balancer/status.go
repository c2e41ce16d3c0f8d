package balancer

import (
	"time"

	"github.com/outrigger-mesh/outrigger/discovery"
	"github.com/outrigger-mesh/outrigger/resilience"
)

// Status is a point-in-time view of one upstream for the admin API. Counters
// are read atomically one by one, so a Status taken under load is not an
// exact cut across endpoints.
type Status struct {
	Service string `json:"service"`
	Policy  string `json:"policy"`
	// Version is the applied snapshot's version; 0 before the first one.
	Version  uint64 `json:"version"`
	Known    bool   `json:"known"`
	Answered bool   `json:"answered"`
	// Ready is Balancer.Ready: some applied snapshot was Answered.
	Ready bool `json:"ready"`
	// EjectionsTotal counts outlier ejections and BreakerOpensTotal
	// circuit breaker openings (from closed or half-open) since the
	// balancer was made, over all its endpoints, past and present.
	EjectionsTotal    uint64 `json:"ejections_total,omitempty"`
	BreakerOpensTotal uint64 `json:"breaker_opens_total,omitempty"`
	// Endpoints are all endpoints of the snapshot, in its order, eligible or
	// not; never nil, so it renders as [] in JSON.
	Endpoints []EndpointStatus `json:"endpoints"`
}

// EndpointStatus is one endpoint with its live state. The discovery.Endpoint
// fields are embedded, so in JSON they sit at the same level (id, address,
// weight, locality, state, spiffe_id, metadata, source, priority). Metadata
// is the snapshot's own map: read it, never modify it.
type EndpointStatus struct {
	discovery.Endpoint
	// LocalityRank is 0 for this node's zone (or any endpoint when the node
	// has no locality), 1 for its cluster, 2 elsewhere.
	LocalityRank int `json:"locality_rank"`
	// Eligible says the endpoint is in the current picker: ready, healthy,
	// its breaker not open, not ejected, and in the best tier.
	Eligible bool `json:"eligible"`
	// InFlight is the number of picks whose Done has not been called.
	InFlight int64 `json:"in_flight"`
	// Picks is the total number of picks since the endpoint (by ID) appeared.
	Picks uint64 `json:"picks"`
	// Breaker, Outlier and Health are the endpoint's resilience state; each
	// is nil (absent in JSON) when the feature is off.
	Breaker *BreakerStatus `json:"breaker,omitempty"`
	Outlier *OutlierStatus `json:"outlier,omitempty"`
	Health  *HealthStatus  `json:"health,omitempty"`
}

// BreakerStatus is an endpoint's circuit breaker.
type BreakerStatus struct {
	// State is "closed", "open" or "half-open".
	State resilience.BreakerState `json:"state"`
	// Trips counts the openings since the breaker was last closed.
	Trips uint32 `json:"trips"`
	// OpenUntil is when an open breaker admits probes; absent otherwise.
	OpenUntil *time.Time `json:"open_until,omitempty"`
}

// OutlierStatus is an endpoint's outlier ejection.
type OutlierStatus struct {
	Ejected bool `json:"ejected"`
	// Ejections counts the ejections in a row (they grow the ejection time).
	Ejections int32 `json:"ejections"`
	// EjectedUntil is when the current ejection ends; absent when not
	// ejected.
	EjectedUntil *time.Time `json:"ejected_until,omitempty"`
	// Reason is the run of failures that ejected the endpoint, named as in
	// the config ("consecutive-5xx", "consecutive-gateway-errors",
	// "consecutive-local-origin-failures"); absent when not ejected.
	Reason string `json:"reason,omitempty"`
}

// HealthStatus is an endpoint's active health.
type HealthStatus struct {
	Healthy bool `json:"healthy"`
}

// Status returns the upstream's current state. Safe from any goroutine.
func (b *Balancer) Status() Status {
	s := Status{
		Service:   b.cfg.Service,
		Policy:    b.policy.Name(),
		Ready:     b.Ready(),
		Endpoints: []EndpointStatus{},

		EjectionsTotal:    b.ejectionsTotal.Load(),
		BreakerOpensTotal: b.breakerOpensTotal.Load(),
	}
	g := b.cur.Load()
	if g == nil {
		return s
	}
	s.Version, s.Known, s.Answered = g.snap.Version, g.snap.Known, g.snap.Answered
	s.Endpoints = make([]EndpointStatus, len(g.snap.Endpoints))
	for i := range g.snap.Endpoints {
		st := g.states[i]
		e := EndpointStatus{
			Endpoint:     g.snap.Endpoints[i],
			LocalityRank: int(g.ranks[i]),
			Eligible:     g.eligible[i],
			InFlight:     st.InFlight(),
			Picks:        st.Picks(),
		}
		if st.breaker != nil {
			e.Breaker = &BreakerStatus{State: st.breaker.State(), Trips: st.breaker.Trips()}
			if e.Breaker.State == resilience.BreakerOpen {
				t := st.breaker.OpenUntil()
				e.Breaker.OpenUntil = &t
			}
		}
		if st.outlier != nil {
			e.Outlier = &OutlierStatus{Ejected: st.ejected.Load(), Ejections: st.ejections.Load()}
			if e.Outlier.Ejected {
				t := time.Unix(0, st.ejectedUntil.Load())
				e.Outlier.EjectedUntil = &t
				e.Outlier.Reason = resilience.EjectReason(st.ejectReason.Load()).String()
			}
		}
		if b.cfg.healthOn() {
			e.Health = &HealthStatus{Healthy: !st.unhealthy.Load()}
		}
		s.Endpoints[i] = e
	}
	return s
}
