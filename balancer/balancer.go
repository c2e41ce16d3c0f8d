package balancer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/outrigger-mesh/outrigger/discovery"
	"github.com/outrigger-mesh/outrigger/resilience"
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

	// Breaker gives every endpoint a circuit breaker: an open breaker takes
	// the endpoint out of the picker; half-open, it is back in, and the
	// breaker admits its probes. nil, or a config that enables nothing,
	// means off.
	Breaker *resilience.BreakerConfig
	// Outlier ejects endpoints after runs of failures, never more than
	// its MaxEjectionShare of the ready endpoints. nil or empty: off.
	Outlier *resilience.OutlierConfig
	// Health checks every ready endpoint actively while Run runs; an
	// unhealthy endpoint leaves the picker. nil or empty: off.
	Health *resilience.HealthConfig
}

func (c Config) breakerOn() bool { return c.Breaker != nil && c.Breaker.Enabled() }
func (c Config) outlierOn() bool { return c.Outlier != nil && c.Outlier.Enabled() }
func (c Config) healthOn() bool  { return c.Health != nil && c.Health.Enabled() }

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
	if c.Breaker != nil {
		errs = append(errs, prefixed(c.Breaker.Validate())...)
	}
	if c.Outlier != nil {
		errs = append(errs, prefixed(c.Outlier.Validate())...)
	}
	if c.Health != nil {
		errs = append(errs, prefixed(c.Health.Validate())...)
	}
	return errors.Join(errs...)
}

// prefixed returns each problem of a joined error with "balancer: " in
// front, so that every line of Validate's answer names its component.
func prefixed(err error) []error {
	if err == nil {
		return nil
	}
	list := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	}
	out := make([]error, len(list))
	for i, e := range list {
		out[i] = fmt.Errorf("balancer: %w", e)
	}
	return out
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
	// wake has capacity 1: Done, breakers and health checkers signal
	// that endpoint state changed; Run rebuilds the picker. Coalesced.
	wake chan struct{}

	// Published by Run; read by Pick, Status and Ready from any goroutine.
	cur     atomic.Pointer[generation]
	ready   atomic.Bool
	running atomic.Bool

	// Atomic, never reset, over every endpoint the balancer ever had (for
	// Status, and so metrics): outlier ejections started (by Run) and
	// breaker openings (by a breaker's state-change callback).
	ejectionsTotal    atomic.Uint64
	breakerOpensTotal atomic.Uint64

	// Owned by the goroutine in Run.
	states   map[string]*EndpointState // by endpoint ID, every endpoint of the snapshot
	snap     *discovery.Snapshot       // the last applied
	tier     tierKey                   // of the last published picker, for logging
	deadline time.Time                 // next breaker or ejection expiry; zero: none
	health   *resilience.HealthMonitor // while Run runs with health checks on

	// published, when set (by tests, before Run), is called on the
	// control goroutine after every picker it publishes.
	published func()
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
		wake:    make(chan struct{}, 1),
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
// the Watcher delivers, runs the endpoints' health checks, and rebuilds the
// picker when a breaker, an ejection or a health check changes an
// endpoint's eligibility, until ctx ends; then it stops the health checks
// and returns nil. The last picker stays published after Run returns, so
// picks keep working while the data plane drains. Only one Run may be
// active at a time.
func (b *Balancer) Run(ctx context.Context) error {
	if !b.running.CompareAndSwap(false, true) {
		return fmt.Errorf("balancer: service %q: Run is already running", b.cfg.Service)
	}
	defer b.running.Store(false)
	if b.cfg.healthOn() {
		hm, err := resilience.NewHealthMonitor(*b.cfg.Health)
		if err != nil {
			return fmt.Errorf("balancer: service %q: %w", b.cfg.Service, err)
		}
		b.health = hm
		defer func() {
			hm.Close()
			b.health = nil
			b.forgetHealth()
		}()
		if b.snap != nil {
			b.syncHealth(ctx)
		}
	}
	ch := b.watcher.Watch(ctx, b.cfg.Service)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		var expiry <-chan time.Time
		if !b.deadline.IsZero() {
			timer.Reset(time.Until(b.deadline))
			expiry = timer.C
		}
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
				b.syncHealth(ctx)
			}
		case <-b.wake:
			b.refresh()
		case <-expiry:
			b.refresh()
		}
	}
}

// signal tells Run that some endpoint's state changed. It never blocks:
// one pending signal stands for any number.
func (b *Balancer) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
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
	// Reconcile by ID: an endpoint that stays keeps its state object (and so
	// its in-flight count, breaker and ejection); a new one starts afresh; a
	// removed one is dropped here, while its open connections' Done still
	// hold it.
	states := make(map[string]*EndpointState, len(snap.Endpoints))
	for i := range snap.Endpoints {
		id := snap.Endpoints[i].ID
		st := b.states[id]
		if st == nil {
			st = b.newState(id)
		}
		states[id] = st
	}
	b.states = states
	b.snap = snap
	if snap.Answered {
		b.ready.Store(true)
	}
	b.publish(true)
}

// refresh rebuilds the picker of the current snapshot after endpoint state
// changed (a breaker, an ejection, a health check), publishing it only
// when the eligible endpoints differ.
func (b *Balancer) refresh() {
	if b.snap != nil {
		b.publish(false)
	}
}

// publish builds the generation of b.snap with the endpoints' current
// resilience state and stores it; unless force, only when eligibility
// changed.
func (b *Balancer) publish(force bool) {
	snap := b.snap
	n := len(snap.Endpoints)
	g := &generation{
		snap:     snap,
		states:   make([]*EndpointState, n),
		ranks:    make([]uint8, n),
		eligible: make([]bool, n),
	}
	for i := range snap.Endpoints {
		g.states[i] = b.states[snap.Endpoints[i].ID]
		g.ranks[i] = localityRank(b.cfg.Locality, snap.Endpoints[i].Locality)
	}
	now := time.Now()
	usable, halfOpen := b.usable(g, now)
	best := bestTier(g, usable, halfOpen)
	var tier []Candidate
	for i := range snap.Endpoints {
		ep := &snap.Endpoints[i]
		k := tierKey{ep.Priority, g.ranks[i]}
		// A half-open endpoint of a nearer tier joins to take its
		// probes; the picker skips it while it admits none.
		if usable[i] && (k == best || halfOpen[i] && k.less(best)) {
			g.eligible[i] = true
			tier = append(tier, Candidate{Endpoint: ep, State: g.states[i]})
		}
	}
	if old := b.cur.Load(); !force && old != nil && old.snap == snap && slices.Equal(old.eligible, g.eligible) {
		return
	}
	if len(tier) > 0 {
		g.picker = b.policy.Build(tier)
	}
	b.cur.Store(g)
	if b.published != nil {
		b.published()
	}

	b.log.Debug("picker built", "version", snap.Version, "endpoints", n, "eligible", len(tier))
	switch {
	case best == b.tier:
	case len(tier) == 0:
		b.log.Warn("no usable endpoints", "version", snap.Version, "endpoints", n)
	default:
		b.log.Info("using endpoint tier", "version", snap.Version,
			"priority", best.priority, "locality_rank", best.rank, "eligible", len(tier))
	}
	b.tier = best
}

// bestTier is the tier picks come from: the best one among usable
// endpoints whose breaker is closed, or when there is none, among the
// half-open ones. A half-open endpoint admits only its few probes, so a tier
// chosen for it alone would refuse every other pick while healthy endpoints
// of the next tier wait (failover must not depend on probes).
func bestTier(g *generation, usable, halfOpen []bool) tierKey {
	best, bestHalf := noTier, noTier
	for i := range g.snap.Endpoints {
		k := tierKey{g.snap.Endpoints[i].Priority, g.ranks[i]}
		switch {
		case !usable[i]:
		case halfOpen[i]:
			if k.less(bestHalf) {
				bestHalf = k
			}
		case k.less(best):
			best = k
		}
	}
	if best == noTier {
		return bestHalf
	}
	return best
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
