package balancer

import (
	"fmt"
	"time"

	"github.com/outrigger-mesh/outrigger/discovery"
	"github.com/outrigger-mesh/outrigger/resilience"
)

// Explaining: Explain is the read-only view behind the admin /why and
// /upstreams. It says, for every endpoint of the current snapshot, why it
// is or is not in the picker, and which endpoint the next pick would
// choose, without taking a pick: no counter moves and no breaker admits a
// probe. It reads the published generation and the endpoints' atomics, as
// Status does, so under load it is a moment's view, not an exact cut.

// Exclusion reasons, as Explain names them.
const (
	ReasonNotReady      = "not_ready"      // discovery says not ready
	ReasonDraining      = "draining"       // discovery says draining
	ReasonUnhealthy     = "unhealthy"      // failing active health checks
	ReasonBreakerOpen   = "breaker_open"   // its circuit breaker is open
	ReasonEjected       = "ejected"        // outlier detection ejected it
	ReasonLowerPriority = "lower_priority" // its source's priority is not the best usable one
	ReasonOtherZone     = "other_zone"     // same cluster, another zone, and the local zone has usable endpoints
	ReasonOtherCluster  = "other_cluster"  // another cluster, and a nearer one has usable endpoints
	ReasonPending       = "pending"        // its state changed since the picker was built; the next rebuild decides
)

// Exclusion is one reason an endpoint is not in the picker.
type Exclusion struct {
	Reason string `json:"reason"`
	Detail string `json:"detail"`
	// Until is when the reason ends by itself (an open breaker admits
	// probes, an ejection ends); absent otherwise.
	Until *time.Time `json:"until,omitempty"`
}

// EndpointExplanation is one endpoint, its live state (as Status shows
// it), and why it is out of the picker.
type EndpointExplanation struct {
	EndpointStatus
	// Excluded lists every reason the endpoint is not in the picker, in
	// the order the balancer applies them; empty when it is eligible.
	Excluded []Exclusion `json:"excluded,omitempty"`
	// Note qualifies an eligible endpoint (half-open: probes only; an
	// ejection not honored because of the ejection share).
	Note string `json:"note,omitempty"`
}

// TierView is the tier picks come from: a source priority and a locality
// rank (0 this node's zone, 1 its cluster, 2 elsewhere).
type TierView struct {
	Priority     int `json:"priority"`
	LocalityRank int `json:"locality_rank"`
}

// Explanation is Explain's answer.
type Explanation struct {
	Service string `json:"service"`
	Policy  string `json:"policy"`
	// Version is the snapshot the picker was built from; 0 before one.
	Version uint64 `json:"version"`
	Ready   bool   `json:"ready"`
	// Locality is this node's, which locality ranks are relative to.
	Locality discovery.Locality `json:"locality"`
	// PickerSize is the number of endpoints in the picker.
	PickerSize int `json:"picker_size"`
	// Tier is where picks come from; nil when the picker is empty.
	Tier      *TierView             `json:"tier,omitempty"`
	Endpoints []EndpointExplanation `json:"endpoints"`
	// WouldPick are the IDs of the endpoints the next pick would choose
	// (several when the policy breaks a tie at random); empty when no
	// endpoint is eligible. PickRule says how the policy decided.
	WouldPick []string `json:"would_pick"`
	PickRule  string   `json:"pick_rule"`
}

// Explain returns the current explanation. Safe from any goroutine; it
// allocates and takes no lock on the pick path, and changes no state.
func (b *Balancer) Explain() Explanation {
	var g *generation
	var s Status
	// Status loads the generation itself: retry until both views are of
	// the same one, so endpoints line up index by index.
	for range 3 {
		g = b.cur.Load()
		s = b.Status()
		if b.cur.Load() == g {
			break
		}
	}
	x := Explanation{
		Service:   s.Service,
		Policy:    s.Policy,
		Version:   s.Version,
		Ready:     s.Ready,
		Locality:  b.cfg.Locality,
		Endpoints: []EndpointExplanation{},
		WouldPick: []string{},
	}
	if g == nil || len(s.Endpoints) != len(g.snap.Endpoints) {
		x.PickRule = "no snapshot applied yet"
		return x
	}
	best, haveTier := noTier, false
	for i, ok := range g.eligible {
		if k := (tierKey{g.snap.Endpoints[i].Priority, g.ranks[i]}); ok && (!haveTier || best.less(k)) {
			best, haveTier = k, true
		}
		if ok {
			x.PickerSize++
		}
	}
	if haveTier {
		x.Tier = &TierView{Priority: best.priority, LocalityRank: int(best.rank)}
	}
	for i := range s.Endpoints {
		x.Endpoints = append(x.Endpoints, b.explainEndpoint(g, i, s.Endpoints[i], best, haveTier))
	}
	x.WouldPick, x.PickRule = wouldPick(g)
	if x.WouldPick == nil {
		x.WouldPick = []string{}
	}
	return x
}

// explainEndpoint gives the reasons endpoint i of g is out of the picker
// (best is the picker's tier when any).
func (b *Balancer) explainEndpoint(g *generation, i int, st EndpointStatus, best tierKey, haveTier bool) EndpointExplanation {
	ep := &g.snap.Endpoints[i]
	e := EndpointExplanation{EndpointStatus: st}
	add := func(reason, detail string, until *time.Time) {
		e.Excluded = append(e.Excluded, Exclusion{Reason: reason, Detail: detail, Until: until})
	}
	switch ep.State {
	case discovery.StateNotReady:
		add(ReasonNotReady, fmt.Sprintf("source %s reports it not ready", ep.Source), nil)
	case discovery.StateDraining:
		add(ReasonDraining, fmt.Sprintf("source %s reports it draining: open connections finish, new ones go elsewhere", ep.Source), nil)
	}
	if st.Health != nil && !st.Health.Healthy {
		add(ReasonUnhealthy, "failing its active health checks", nil)
	}
	if br := st.Breaker; br != nil && br.State == resilience.BreakerOpen {
		add(ReasonBreakerOpen, fmt.Sprintf("circuit breaker open (trips since last closed: %d); it takes probes after until", br.Trips), br.OpenUntil)
	}
	if o := st.Outlier; o != nil && o.Ejected {
		if st.Eligible {
			e.Note = fmt.Sprintf("ejected by outlier detection (%s) but kept in the picker: the max ejection share is reached", o.Reason)
		} else {
			add(ReasonEjected, fmt.Sprintf("ejected by outlier detection after %s (ejection %d in a row)", o.Reason, o.Ejections), o.EjectedUntil)
		}
	}
	if st.Eligible {
		if st.Breaker != nil && st.Breaker.State == resilience.BreakerHalfOpen {
			e.Note = "circuit breaker half-open: it takes only its probes, other picks go elsewhere"
		}
		if len(e.Excluded) > 0 {
			// Live state moved since the picker was built.
			e.Note = "in the current picker, but its state changed since it was built; the next rebuild takes it out"
			e.Excluded = nil
		}
		return e
	}
	if len(e.Excluded) > 0 {
		return e
	}
	k := tierKey{ep.Priority, g.ranks[i]}
	switch {
	case !haveTier || !best.less(k):
		add(ReasonPending, "usable, but its state changed since the picker was built; the next rebuild takes it in", nil)
	case k.priority > best.priority:
		add(ReasonLowerPriority, fmt.Sprintf("source %s has priority %d; endpoints of priority %d are usable and preferred", ep.Source, k.priority, best.priority), nil)
	case k.rank == rankSameCluster:
		add(ReasonOtherZone, fmt.Sprintf("zone %q, not this node's zone %q, which has usable endpoints", ep.Locality.Zone, b.cfg.Locality.Zone), nil)
	default:
		add(ReasonOtherCluster, fmt.Sprintf("cluster %q, not this node's cluster %q, which has usable endpoints", ep.Locality.Cluster, b.cfg.Locality.Cluster), nil)
	}
	return e
}

// wouldPick says which endpoint the built-in policies would choose next,
// reading their state without changing it.
func wouldPick(g *generation) (ids []string, rule string) {
	switch p := g.picker.(type) {
	case nil:
		return nil, "no endpoint is eligible: a pick fails at once (no_endpoints)"
	case *roundRobinPicker:
		if len(p.sched) == 0 {
			return nil, "round_robin: empty schedule"
		}
		n := p.next.Load() % uint64(len(p.sched))
		c := p.cands[p.sched[n]]
		rule = fmt.Sprintf("round_robin: the next slot (%d of %d) of the weighted rotation", n+1, len(p.sched))
		if c.State.breaker != nil && !c.State.breaker.Closed() {
			rule += "; its breaker is half-open, so unless it admits a probe the pick goes to another endpoint, drawn by weight"
		}
		return []string{c.Endpoint.ID}, rule
	case *leastConnPicker:
		var best []string
		var bestLoad, bestWeight int64
		for _, c := range p.cands {
			load, w := c.State.inFlight.Load(), c.weight()
			switch {
			case best == nil || load*bestWeight < bestLoad*w:
				best, bestLoad, bestWeight = []string{c.Endpoint.ID}, load, w
			case load*bestWeight == bestLoad*w:
				best = append(best, c.Endpoint.ID)
			}
		}
		rule = "least_conn: the fewest in-flight requests relative to weight"
		if len(best) > 1 {
			rule += "; a tie is broken at random in proportion to weight"
		}
		if len(p.cands) > fullScanMax {
			rule = fmt.Sprintf("least_conn over %d endpoints: the less loaded of two random draws; the least loaded now are listed", len(p.cands))
		}
		return best, rule
	}
	return nil, fmt.Sprintf("policy %T: cannot be told without a real pick", g.picker)
}
