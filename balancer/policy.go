package balancer

import (
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/outrigger-mesh/outrigger/discovery"
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
// so that counters and Done stay paired.
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
// result carrying c's prebuilt Done. It does not allocate.
func (c Candidate) Take() PickResult {
	c.State.inFlight.Add(1)
	c.State.picks.Add(1)
	return PickResult{Endpoint: c.Endpoint, Done: c.State.done}
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

	// Set at construction.
	done func(DoneInfo) // prebuilt so that Pick and Done never allocate
}

func newEndpointState() *EndpointState {
	s := &EndpointState{}
	// Done must be called exactly once per pick: a second call would
	// undercount in-flight connections and skew least_conn.
	s.done = func(DoneInfo) { s.inFlight.Add(-1) }
	return s
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
