package balancer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/outrigger-mesh/outrigger/discovery"
)

// Watcher is what the balancer consumes from the catalog;
// discovery/catalog.*Catalog implements it.
//
// Watch returns a channel with capacity 1 that at once holds the current
// snapshot of service and later the latest one after each change (a slow
// reader sees only the newest). The channel is closed when ctx ends. Watch
// does not block.
type Watcher interface {
	Watch(ctx context.Context, service string) <-chan *discovery.Snapshot
}

// Config is the user's setting of one upstream's balancing.
type Config struct {
	// Service is the upstream service key, "name.namespace".
	Service string
	// Policy is "round_robin" (the default when "") or "least_conn".
	Policy string
	// Locality is this node's own locality; endpoints in the same zone, then
	// the same cluster, are preferred. Empty means no preference.
	Locality discovery.Locality
}

// Validate reports every problem of c, joined; each message names its field.
func (c Config) Validate() error {
	var errs []error
	if c.Service == "" {
		errs = append(errs, errors.New("balancer: service: must be set (name.namespace)"))
	} else if err := discovery.ValidateService(c.Service); err != nil {
		errs = append(errs, fmt.Errorf("balancer: service: %w", err))
	}
	if _, err := PolicyByName(c.Policy); err != nil {
		errs = append(errs, fmt.Errorf("balancer: policy: %w", err))
	}
	return errors.Join(errs...)
}

// Options are a Balancer's dependencies.
type Options struct {
	// Logger receives control-side events (tier changes, no ready
	// endpoints); nil discards them. Pick never logs.
	Logger *slog.Logger
	// Watcher supplies the service's snapshots; required.
	Watcher Watcher
}

// Balancer picks endpoints of one upstream service. It implements Picker.
// Create it with New, run Run in one goroutine, and call Pick from any.
type Balancer struct {
	// Set by New, read-only afterwards.
	cfg     Config
	policy  Policy
	log     *slog.Logger
	watcher Watcher

	// Published by Run; read by Pick, Status and Ready from any goroutine.
	cur     atomic.Pointer[generation]
	ready   atomic.Bool
	running atomic.Bool

	// Owned by the goroutine in Run.
	states map[string]*EndpointState // by endpoint ID, every endpoint of the snapshot
	tier   tierKey                   // of the last published picker, for logging
}

// generation is everything one snapshot produced. Immutable once stored.
type generation struct {
	snap     *discovery.Snapshot
	states   []*EndpointState // parallel to snap.Endpoints
	ranks    []uint8          // locality rank, parallel to snap.Endpoints
	eligible []bool           // in picker, parallel to snap.Endpoints
	picker   Picker           // nil when no endpoint is eligible
}

// New checks cfg and returns a Balancer that has no endpoints until Run
// applies the first snapshot.
func New(cfg Config, opts Options) (*Balancer, error) {
	err := cfg.Validate()
	if opts.Watcher == nil {
		err = errors.Join(err, errors.New("balancer: options: Watcher is nil"))
	}
	if err != nil {
		return nil, err
	}
	policy, _ := PolicyByName(cfg.Policy) // validated
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Balancer{
		cfg:     cfg,
		policy:  policy,
		log:     log,
		watcher: opts.Watcher,
		states:  map[string]*EndpointState{},
		tier:    noTier,
	}, nil
}

// Service returns the upstream service key.
func (b *Balancer) Service() string { return b.cfg.Service }

// Ready reports whether a snapshot with Answered set has been applied: the
// service's first discovery answer is in (it may have had no endpoints).
func (b *Balancer) Ready() bool { return b.ready.Load() }

// Run is the control goroutine of this upstream: it applies every snapshot
// the Watcher delivers until ctx ends, then returns nil. The last picker
// stays published after Run returns, so picks keep working while the data
// plane drains. Only one Run may be active at a time.
func (b *Balancer) Run(ctx context.Context) error {
	if !b.running.CompareAndSwap(false, true) {
		return fmt.Errorf("balancer: service %q: Run is already running", b.cfg.Service)
	}
	defer b.running.Store(false)
	ch := b.watcher.Watch(ctx, b.cfg.Service)
	for {
		select {
		case <-ctx.Done():
			return nil
		case snap, ok := <-ch:
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("balancer: service %q: watch channel closed before the context ended", b.cfg.Service)
			}
			if snap != nil {
				b.apply(snap)
			}
		}
	}
}

// Pick chooses an endpoint for one connection or request. It takes no lock,
// does not block and does not allocate; before the first snapshot, or with
// no ready endpoint, it returns ErrNoEndpoints. info may be nil.
func (b *Balancer) Pick(info *PickInfo) (PickResult, error) {
	g := b.cur.Load()
	if g == nil || g.picker == nil {
		return PickResult{}, ErrNoEndpoints
	}
	// Call the built-in pickers directly: passing info through the Picker
	// interface would make it escape, so a caller's PickInfo on the stack
	// would move to the heap on every connection.
	switch p := g.picker.(type) {
	case *roundRobinPicker:
		return p.Pick(info)
	case *leastConnPicker:
		return p.Pick(info)
	}
	if info == nil {
		return g.picker.Pick(nil)
	}
	in := *info // escapes only on this path, which built-in policies never take
	return g.picker.Pick(&in)
}

var _ Picker = (*Balancer)(nil)

// apply reconciles live state with snap and publishes a new picker.
func (b *Balancer) apply(snap *discovery.Snapshot) {
	n := len(snap.Endpoints)
	g := &generation{
		snap:     snap,
		states:   make([]*EndpointState, n),
		ranks:    make([]uint8, n),
		eligible: make([]bool, n),
	}
	// Reconcile by ID: an endpoint that stays keeps its state object (and so
	// its in-flight count); a new one starts at zero; a removed one is
	// dropped here, while its open connections' Done still hold it.
	states := make(map[string]*EndpointState, n)
	best := noTier
	for i := range snap.Endpoints {
		ep := &snap.Endpoints[i]
		st := b.states[ep.ID]
		if st == nil {
			st = newEndpointState()
		}
		states[ep.ID] = st
		g.states[i] = st
		g.ranks[i] = localityRank(b.cfg.Locality, ep.Locality)
		if ep.State == discovery.StateReady {
			if k := (tierKey{ep.Priority, g.ranks[i]}); k.less(best) {
				best = k
			}
		}
	}
	b.states = states

	var tier []Candidate
	for i := range snap.Endpoints {
		ep := &snap.Endpoints[i]
		if ep.State == discovery.StateReady && (tierKey{ep.Priority, g.ranks[i]}) == best {
			g.eligible[i] = true
			tier = append(tier, Candidate{Endpoint: ep, State: g.states[i]})
		}
	}
	if len(tier) > 0 {
		g.picker = b.policy.Build(tier)
	}
	b.cur.Store(g)
	if snap.Answered {
		b.ready.Store(true)
	}

	b.log.Debug("snapshot applied", "version", snap.Version, "endpoints", n, "eligible", len(tier))
	switch {
	case best == b.tier:
	case len(tier) == 0:
		b.log.Warn("no ready endpoints", "version", snap.Version, "endpoints", n)
	default:
		b.log.Info("using endpoint tier", "version", snap.Version,
			"priority", best.priority, "locality_rank", best.rank, "eligible", len(tier))
	}
	b.tier = best
}

// tierKey orders eligible endpoints: lower priority first, then nearer.
type tierKey struct {
	priority int
	rank     uint8
}

// noTier sorts after every real tier; it stands for "no eligible endpoint".
var noTier = tierKey{priority: int(^uint(0) >> 1), rank: ^uint8(0)}

func (a tierKey) less(b tierKey) bool {
	return a.priority < b.priority || a.priority == b.priority && a.rank < b.rank
}

// Locality ranks: nearer is smaller.
const (
	rankSameZone    = 0 // same cluster and zone (or this node has no locality)
	rankSameCluster = 1
	rankElsewhere   = 2
)

// localityRank places ep relative to this node. With an empty node locality
// every endpoint is rank 0; with a node zone of "" the whole cluster is.
func localityRank(node, ep discovery.Locality) uint8 {
	switch {
	case node == discovery.Locality{}:
		return rankSameZone
	case ep.Cluster != node.Cluster:
		return rankElsewhere
	case node.Zone == "" || ep.Zone == node.Zone:
		return rankSameZone
	}
	return rankSameCluster
}
