package discovery

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// State is an endpoint's readiness as its source reports it.
type State uint8

const (
	// StateReady endpoints take new connections and requests.
	StateReady State = iota
	// StateDraining endpoints are going away: they take no new work, but
	// connections already open to them run to completion.
	StateDraining
	// StateNotReady endpoints exist but must not be sent traffic.
	StateNotReady
)

// String returns the lower-case name used in logs, config and the admin API.
func (s State) String() string {
	switch s {
	case StateReady:
		return "ready"
	case StateDraining:
		return "draining"
	case StateNotReady:
		return "not_ready"
	default:
		return fmt.Sprintf("state(%d)", uint8(s))
	}
}

// ParseState is the inverse of State.String.
func ParseState(s string) (State, error) {
	switch s {
	case "ready", "":
		return StateReady, nil
	case "draining":
		return StateDraining, nil
	case "not_ready":
		return StateNotReady, nil
	}
	return 0, fmt.Errorf("unknown state %q (want ready, draining or not_ready)", s)
}

// MarshalText makes State render as its name in JSON.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Locality is where an endpoint runs. Cluster is a Kubernetes cluster or a
// Consul datacenter; Zone is the failure domain inside it.
type Locality struct {
	Cluster string `json:"cluster,omitempty"`
	Zone    string `json:"zone,omitempty"`
}

// DefaultWeight is the weight of an endpoint that does not state one.
const DefaultWeight = 1

// MaxWeight bounds endpoint weights so that weighted schedules stay small.
const MaxWeight = 1000

// Endpoint is one address serving a service.
//
// Endpoint values are compared with ==-free Equal because Metadata is a map;
// a Source builds them, and after it hands them to a Sink nobody mutates them.
type Endpoint struct {
	// ID is stable for the life of the endpoint within its source (a
	// Kubernetes pod UID, a Consul service ID, or the address for a file).
	// In a Snapshot the catalog qualifies it with the source name
	// ("source/id"), so IDs are unique across sources.
	ID string `json:"id"`
	// Addr is where to connect.
	Addr netip.AddrPort `json:"address"`
	// Weight is relative to other endpoints of the same service, 1..MaxWeight.
	Weight uint32 `json:"weight"`
	// Locality is where the endpoint runs.
	Locality Locality `json:"locality"`
	// State says whether the endpoint may be sent new traffic.
	State State `json:"state"`
	// SPIFFEID is the identity the endpoint is expected to present over
	// mTLS ("" when unknown).
	SPIFFEID string `json:"spiffe_id,omitempty"`
	// Metadata holds free-form labels (Kubernetes labels, Consul meta).
	Metadata map[string]string `json:"metadata,omitempty"`

	// Source and Priority are set by the catalog from the reporting source's
	// registration; a Source leaves them empty. Lower Priority is preferred.
	Source   string `json:"source"`
	Priority int    `json:"priority"`
}

// Equal reports whether two endpoints are identical in every field.
func (e *Endpoint) Equal(o *Endpoint) bool {
	if e.ID != o.ID || e.Addr != o.Addr || e.Weight != o.Weight ||
		e.Locality != o.Locality || e.State != o.State || e.SPIFFEID != o.SPIFFEID ||
		e.Source != o.Source || e.Priority != o.Priority || len(e.Metadata) != len(o.Metadata) {
		return false
	}
	for k, v := range e.Metadata {
		if ov, ok := o.Metadata[k]; !ok || ov != v {
			return false
		}
	}
	return true
}

// Validate checks the fields a Source must fill.
func (e *Endpoint) Validate() error {
	var errs []error
	if e.ID == "" {
		errs = append(errs, errors.New("endpoint has no id"))
	}
	if !e.Addr.IsValid() || e.Addr.Port() == 0 {
		errs = append(errs, fmt.Errorf("endpoint %q: invalid address %q", e.ID, e.Addr))
	}
	if e.Weight == 0 || e.Weight > MaxWeight {
		errs = append(errs, fmt.Errorf("endpoint %q: weight %d out of range 1..%d", e.ID, e.Weight, MaxWeight))
	}
	return errors.Join(errs...)
}

// Update is one source's complete view of one service.
//
// A source always reports the whole endpoint list of a service, never a diff.
// Deleted (the service no longer exists in this source) is different from an
// empty Endpoints (the service exists and has no endpoints right now): the
// first removes this source's contribution, the second keeps the service
// known with zero endpoints.
type Update struct {
	Source    string
	Service   string
	Endpoints []Endpoint
	Deleted   bool
}

// Sink receives Updates. It is implemented by discovery/catalog.
//
// Apply and Synced may be called concurrently from several sources' goroutines
// and must not block on anything but the Sink's own short critical section.
// After Apply returns the Sink owns u.Endpoints; the source must not touch
// the slice again.
type Sink interface {
	// Apply records a source's complete view of one service.
	Apply(u Update) error
	// Synced says the source has reported everything it knew at start: a
	// service it has not reported by now does not exist in this source.
	// Calling it again (after a restart) is harmless.
	Synced(source string)
}

// Source is one discovery backend instance.
//
// Run watches the backend and reports to sink until ctx ends (then it returns
// ctx.Err() or nil) or it fails (then it returns the error, and the
// Supervisor calls Run again after a backoff). A Source must tolerate Run
// being called again after it returned; state it keeps across runs, such as
// the set of services it has reported, stays valid.
type Source interface {
	Name() string
	Run(ctx context.Context, sink Sink) error
}

// Snapshot is the merged view of one service across all sources, as the
// catalog publishes it. It is immutable: never modify it or its slices.
type Snapshot struct {
	// Service is the service key, "name.namespace".
	Service string
	// Version increases by at least one on every change of this service.
	Version uint64
	// Endpoints holds every source's endpoints for the service, sorted by
	// (Priority, Source, ID). IDs are qualified and unique.
	Endpoints []Endpoint
	// Known is true when at least one source reports the service (possibly
	// with zero endpoints); false when none does or all deleted it.
	Known bool
	// Answered is true once every registered source has either reported the
	// service or finished its initial sync without it: the service's first
	// discovery answer is in, whatever it was.
	Answered bool
}

// ErrInvalidService is returned for a malformed service key.
var ErrInvalidService = errors.New("invalid service key")

// ValidateService checks that key has the form "name.namespace" with
// DNS-label parts, as Kubernetes names services.
func ValidateService(key string) error {
	name, ns, ok := strings.Cut(key, ".")
	if !ok || strings.Contains(ns, ".") {
		return fmt.Errorf("%w %q: want name.namespace, like orders.shop", ErrInvalidService, key)
	}
	for _, part := range []string{name, ns} {
		if !isDNSLabel(part) {
			return fmt.Errorf("%w %q: %q is not a DNS label (lower-case letters, digits and '-', at most 63, starting and ending with a letter or digit)", ErrInvalidService, key, part)
		}
	}
	return nil
}

func isDNSLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-' && i > 0 && i < len(s)-1:
		default:
			return false
		}
	}
	return true
}
