package balancer

import (
	"errors"
	"net/netip"
	"time"

	"github.com/outrigger-mesh/outrigger/discovery"
	"github.com/outrigger-mesh/outrigger/resilience"
)

// ErrNoEndpoints is returned by Pick when the service has no endpoint that
// may take new traffic. Callers fail fast on it (close the connection, answer
// 503); they never queue.
var ErrNoEndpoints = errors.New("no ready endpoints")

// MaxTried is how many already-tried endpoints a PickInfo can name.
const MaxTried = 4

// PickInfo describes one pick. The caller owns it; Pick only reads it and
// does not retain it.
type PickInfo struct {
	// Tried lists endpoints this connection or request already failed on
	// (Tried[:NTried]). Pick avoids them while an untried endpoint remains,
	// so a retry goes to a different endpoint when one exists.
	Tried  [MaxTried]netip.AddrPort
	NTried int
}

// AddTried records addr as tried; past MaxTried the oldest entries are kept.
func (p *PickInfo) AddTried(addr netip.AddrPort) {
	if p.NTried < MaxTried {
		p.Tried[p.NTried] = addr
		p.NTried++
	}
}

// WasTried reports whether addr is listed in p.Tried.
func (p *PickInfo) WasTried(addr netip.AddrPort) bool {
	for i := 0; i < p.NTried; i++ {
		if p.Tried[i] == addr {
			return true
		}
	}
	return false
}

// DoneInfo is the outcome of the connection or request a pick was used for.
type DoneInfo struct {
	// Err is nil on success. A *net.OpError from dial means nothing reached
	// the endpoint.
	Err error
	// Duration is how long the connection or request lasted.
	Duration time.Duration
	// Outcome classifies the attempt for circuit breakers and outlier
	// detection: the response status (a 5xx counts against the endpoint,
	// a 4xx does not), the gRPC status, a reset, a refused stream, a
	// timeout. The zero value means "derive it from Err"
	// (resilience.KindOf): nil is a success, a failed dial a connect
	// failure, context.Canceled neutral (the client left; it counts
	// neither way), any other error a failure.
	Outcome resilience.Outcome
}

// PickResult is what Pick chose.
type PickResult struct {
	// Endpoint points into the immutable snapshot the picker was built from.
	Endpoint *discovery.Endpoint
	// Done must be called exactly once, when the connection or request ends,
	// from any goroutine. It feeds least-connection counts, the endpoint's
	// circuit breaker and outlier detection. It is never nil.
	Done func(DoneInfo)
}

// Picker chooses an endpoint for one connection or request.
//
// A Picker is immutable once built. Pick is called concurrently from every
// connection's goroutine; it must not block, take a lock, or allocate.
type Picker interface {
	Pick(info *PickInfo) (PickResult, error)
}
