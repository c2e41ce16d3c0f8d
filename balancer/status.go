package balancer

import "github.com/outrigger-mesh/outrigger/discovery"

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
	// Eligible says the endpoint is in the current picker: ready and in the
	// best tier.
	Eligible bool `json:"eligible"`
	// InFlight is the number of picks whose Done has not been called.
	InFlight int64 `json:"in_flight"`
	// Picks is the total number of picks since the endpoint (by ID) appeared.
	Picks uint64 `json:"picks"`
}

// Status returns the upstream's current state. Safe from any goroutine.
func (b *Balancer) Status() Status {
	s := Status{
		Service:   b.cfg.Service,
		Policy:    b.policy.Name(),
		Ready:     b.Ready(),
		Endpoints: []EndpointStatus{},
	}
	g := b.cur.Load()
	if g == nil {
		return s
	}
	s.Version, s.Known, s.Answered = g.snap.Version, g.snap.Known, g.snap.Answered
	s.Endpoints = make([]EndpointStatus, len(g.snap.Endpoints))
	for i := range g.snap.Endpoints {
		s.Endpoints[i] = EndpointStatus{
			Endpoint:     g.snap.Endpoints[i],
			LocalityRank: int(g.ranks[i]),
			Eligible:     g.eligible[i],
			InFlight:     g.states[i].InFlight(),
			Picks:        g.states[i].Picks(),
		}
	}
	return s
}
