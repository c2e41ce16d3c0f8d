package balancer

import (
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/outrigger-mesh/outrigger/discovery"
	"github.com/outrigger-mesh/outrigger/resilience"
)

// Policy names, as written in the config file and shown by Status.
const (
	PolicyRoundRobin = "round_robin"
	PolicyLeastConn  = "least_conn"
)

// PolicyNames returns the names PolicyByName accepts, default first.
func PolicyNames() []string { return []string{PolicyRoundRobin, PolicyLeastConn} }

// Policy turns the eligible endpoints of the best tier into a Picker.
//
// Build is called only from the Balancer's Run goroutine, with a tier that is
// never empty. The Picker may keep tier; the Balancer never modifies it
// afterwards. The Picker must obtain every PickResult through Candidate.Take
// so that counters, breakers and Done stay paired, and must try another
// candidate when Take refuses.
type Policy interface {
	Name() string
	Build(tier []Candidate) Picker
}

// PolicyByName returns the policy called name; "" means round_robin.
func PolicyByName(name string) (Policy, error) {
	switch name {
	case PolicyRoundRobin, "":
		return roundRobin{}, nil
	case PolicyLeastConn:
		return leastConn{}, nil
	}
	return nil, fmt.Errorf("unknown balancer policy %q (want %s)", name, strings.Join(PolicyNames(), " or "))
}

// Candidate is one eligible endpoint as a Policy sees it: the snapshot's
// endpoint and the live state that survives snapshots.
type Candidate struct {
	Endpoint *discovery.Endpoint
	State    *EndpointState
}

// Take records a pick of c (in-flight and pick counters) and returns the
// result carrying c's prebuilt Done. It answers false, recording nothing,
// when c's circuit breaker does not admit the pick (half-open with its
// probes out, or opened since the picker was built); the picker then tries
// another candidate. It takes no lock and does not allocate, except to
// admit a half-open probe.
func (c Candidate) Take() (PickResult, bool) {
	if r, ok := c.takeClosed(); ok {
		return r, true
	}
	s := c.State
	t, ok := s.breaker.Admit()
	if !ok {
		return PickResult{}, false
	}
	done := s.done
	if t > 0 {
		// A probe's Done carries its ticket; admitting a probe
		// allocates anyway (gobreaker's callback), and probes are rare.
		done = func(d DoneInfo) { s.finish(t, d) }
	}
	s.inFlight.Add(1)
	s.picks.Add(1)
	return PickResult{Endpoint: c.Endpoint, Done: done}, true
}

// takeClosed is Take when c has no breaker or a closed one (it answers
// false otherwise, recording nothing). Small enough to inline into Pick:
// two atomic adds and, with breakers on, one atomic load.
func (c Candidate) takeClosed() (PickResult, bool) {
	s := c.State
	if s.breaker != nil && !s.breaker.Closed() {
		return PickResult{}, false
	}
	s.inFlight.Add(1)
	s.picks.Add(1)
	return PickResult{Endpoint: c.Endpoint, Done: s.done}, true
}

// admittable reports whether c's breaker would admit a pick now (always,
// without a breaker). Lock-free; pickers use it on their slow path only, to
// choose again among candidates that can take the pick.
func (c Candidate) admittable() bool {
	return c.State.breaker == nil || c.State.breaker.Admittable()
}

// redraws bounds how many times a picker's slow path chooses again before
// it falls back to takeSlow's walk.
const redraws = 4

// takeSlow returns c[i].Take(), or when c[i] refuses, the first of the
// other candidates after i that accepts, preferring those info does not
// name as tried; ErrNoEndpoints when none accepts. It is the pickers' last
// resort: walking to the next candidate gives that neighbour the refused
// endpoint's whole share, so pickers first choose again by their own rule
// among admittable candidates, and call takeSlow only when that fails.
func takeSlow(c []Candidate, i int, info *PickInfo) (PickResult, error) {
	if r, ok := c[i].Take(); ok {
		return r, nil
	}
	n := len(c)
	hasTried := info != nil && info.NTried > 0
	for pass := range 2 {
		for k := 1; k < n; k++ {
			j := i + k
			if j >= n {
				j -= n
			}
			if hasTried && info.WasTried(c[j].Endpoint.Addr) != (pass == 1) {
				continue
			}
			if r, ok := c[j].Take(); ok {
				return r, nil
			}
		}
		if !hasTried {
			break
		}
	}
	return PickResult{}, ErrNoEndpoints
}

// weight is the candidate's weight clamped to 1..MaxWeight; the catalog
// validates weights, this only keeps a bad value from breaking arithmetic.
func (c Candidate) weight() int64 {
	w := int64(c.Endpoint.Weight)
	switch {
	case w < 1:
		return discovery.DefaultWeight
	case w > discovery.MaxWeight:
		return discovery.MaxWeight
	}
	return w
}

// EndpointState is the live state of one endpoint, kept by the Balancer
// across snapshots for as long as the endpoint's ID stays in them.
type EndpointState struct {
	// Atomic: changed by every Pick and Done, from any goroutine.
	inFlight atomic.Int64
	picks    atomic.Uint64

	// Set at construction. breaker and outlier are nil when the feature is
	// off; wake signals the balancer's control goroutine without blocking.
	done    func(DoneInfo) // prebuilt so that Pick and Done never allocate
	breaker *resilience.Breaker
	outlier *resilience.Outlier
	wake    func()

	// Atomic: set by Done (ejectWanted), a health checker (unhealthy) or
	// the control goroutine (the rest); read by Status from any goroutine.
	ejectWanted  atomic.Uint32 // a resilience.EjectReason
	unhealthy    atomic.Bool
	ejected      atomic.Bool
	ejectedUntil atomic.Int64  // Unix ns, while ejected
	ejectReason  atomic.Uint32 // a resilience.EjectReason, of the current or last ejection
	ejections    atomic.Int32  // in a row; see the control goroutine

	// Owned by the control goroutine.
	ejectedAt   time.Time // start of the current ejection, to honor the earliest
	uneject     time.Time // end of the last ejection
	logged      endpointView
	healthKnown bool // health checks ran for this endpoint
}

// endpointView is what the control goroutine last logged of an endpoint.
type endpointView struct {
	breaker   resilience.BreakerState
	unhealthy bool
	ejected   bool
}

func newEndpointState() *EndpointState {
	s := &EndpointState{}
	// Done must be called exactly once per pick: a second call would
	// undercount in-flight connections and skew least_conn.
	s.done = func(d DoneInfo) {
		s.inFlight.Add(-1)
		if s.breaker != nil || s.outlier != nil {
			s.record(0, d)
		}
	}
	return s
}

// finish is a probe's Done: the pick's in-flight count ends, and its
// outcome feeds the breaker (with the probe's ticket) and outlier detection.
func (s *EndpointState) finish(t resilience.Ticket, d DoneInfo) {
	s.inFlight.Add(-1)
	s.record(t, d)
}

// record feeds a pick's outcome to the breaker and outlier detection.
func (s *EndpointState) record(t resilience.Ticket, d DoneInfo) {
	o := resilience.OutcomeOf(d.Outcome, d.Err)
	if s.breaker != nil {
		s.breaker.Done(t, o)
	}
	if s.outlier != nil {
		if r := s.outlier.Observe(o); r != resilience.NoEjection {
			s.ejectWanted.Store(uint32(r))
			s.wake()
		}
	}
}

// InFlight is the number of picks of this endpoint whose Done has not been
// called yet.
func (s *EndpointState) InFlight() int64 { return s.inFlight.Load() }

// Picks is the total number of picks of this endpoint.
func (s *EndpointState) Picks() uint64 { return s.picks.Load() }

// avoidTried returns i, or when info names c[i] as tried, the first of the
// next endpoints in c that is not tried. Addresses in a snapshot are unique,
// and at most MaxTried are tried, so MaxTried+1 steps always find an untried
// endpoint when one exists; when all are tried it returns i.
func avoidTried(c []Candidate, i int, info *PickInfo) int {
	if info == nil || info.NTried == 0 {
		return i
	}
	n := len(c)
	for k := range min(n, MaxTried+1) {
		j := i + k
		if j >= n {
			j -= n
		}
		if !info.WasTried(c[j].Endpoint.Addr) {
			return j
		}
	}
	return i
}
