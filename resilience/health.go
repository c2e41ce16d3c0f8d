package resilience

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"
)

// Health-check protocols, as written in HealthConfig.Protocol.
const (
	HealthTCP  = "tcp"
	HealthHTTP = "http"
	HealthGRPC = "grpc"
)

// Defaults of HealthConfig.
const (
	DefaultHealthInterval  = 10 * time.Second
	DefaultHealthTimeout   = time.Second
	DefaultHealthJitter    = 0.1
	DefaultHealthyCount    = 2
	DefaultUnhealthyCount  = 3
	DefaultHealthPath      = "/"
	DefaultHealthStatusMin = 200
	DefaultHealthStatusMax = 399
)

// HealthConfig is the active health checking of one upstream's endpoints.
// The zero value (Protocol "") means off.
type HealthConfig struct {
	// Protocol is "tcp" (connect), "http" (a GET answered within
	// [StatusMin, StatusMax]) or "grpc" (grpc.health.v1 Check answering
	// SERVING); "" turns checks off.
	Protocol string
	// Interval between checks of one endpoint (default 10s), varied by
	// ±Jitter × Interval (default 0.1; negative: none) so that checkers
	// do not beat in step.
	Interval time.Duration
	Jitter   float64
	// Timeout bounds one check (default 1s).
	Timeout time.Duration
	// HealthyThreshold checks in a row must pass to mark an unhealthy
	// endpoint healthy (default 2); UnhealthyThreshold must fail to mark a
	// healthy one unhealthy (default 3). Endpoints start healthy: discovery
	// said they are ready, and the first check runs at once.
	HealthyThreshold   int
	UnhealthyThreshold int
	// HTTP: the request path (default "/"), Host header ("" means the
	// endpoint's address) and the accepted status range (default 200-399).
	Path      string
	Host      string
	StatusMin int
	StatusMax int
	// GRPCService is the service name asked of grpc.health.v1 ("" asks
	// about the server as a whole).
	GRPCService string
}

// Enabled reports whether c turns checks on.
func (c HealthConfig) Enabled() bool { return c.Protocol != "" }

// Validate reports every problem of c, joined.
func (c HealthConfig) Validate() error {
	var errs []error
	switch c.Protocol {
	case "", HealthTCP, HealthHTTP, HealthGRPC:
	default:
		errs = append(errs, fmt.Errorf("health_check: protocol: unknown %q (want tcp, http or grpc)", c.Protocol))
	}
	if c.Interval < 0 {
		errs = append(errs, fmt.Errorf("health_check: interval: %v is negative", c.Interval))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("health_check: timeout: %v is negative", c.Timeout))
	}
	if c.Jitter >= 1 {
		errs = append(errs, fmt.Errorf("health_check: jitter: %v is not less than 1", c.Jitter))
	}
	if c.HealthyThreshold < 0 {
		errs = append(errs, fmt.Errorf("health_check: healthy_threshold: %d is negative", c.HealthyThreshold))
	}
	if c.UnhealthyThreshold < 0 {
		errs = append(errs, fmt.Errorf("health_check: unhealthy_threshold: %d is negative", c.UnhealthyThreshold))
	}
	if c.Path != "" && c.Path[0] != '/' {
		errs = append(errs, fmt.Errorf("health_check: path: %q does not start with /", c.Path))
	}
	d := c.WithDefaults()
	if d.StatusMin < 100 || d.StatusMax > 599 || d.StatusMin > d.StatusMax {
		errs = append(errs, fmt.Errorf("health_check: status: range %d-%d is not within 100-599", d.StatusMin, d.StatusMax))
	}
	return errors.Join(errs...)
}

// WithDefaults returns c with every zero field at its default.
func (c HealthConfig) WithDefaults() HealthConfig {
	if c.Interval == 0 {
		c.Interval = DefaultHealthInterval
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultHealthTimeout
	}
	switch {
	case c.Jitter == 0:
		c.Jitter = DefaultHealthJitter
	case c.Jitter < 0:
		c.Jitter = 0
	}
	if c.HealthyThreshold == 0 {
		c.HealthyThreshold = DefaultHealthyCount
	}
	if c.UnhealthyThreshold == 0 {
		c.UnhealthyThreshold = DefaultUnhealthyCount
	}
	if c.Path == "" {
		c.Path = DefaultHealthPath
	}
	if c.StatusMin == 0 {
		c.StatusMin = DefaultHealthStatusMin
	}
	if c.StatusMax == 0 {
		c.StatusMax = DefaultHealthStatusMax
	}
	return c
}

// healthCounter turns check results into a health state with thresholds.
// It is pure and owned by one checker goroutine.
type healthCounter struct {
	healthyThreshold, unhealthyThreshold int
	healthy                              bool
	run                                  int // checks in a row that disagree with healthy
}

// observe records one check and reports whether the state changed.
func (h *healthCounter) observe(pass bool) bool {
	if pass == h.healthy {
		h.run = 0
		return false
	}
	h.run++
	need := h.unhealthyThreshold
	if pass {
		need = h.healthyThreshold
	}
	if h.run < need {
		return false
	}
	h.healthy, h.run = pass, 0
	return true
}

// nextDelay is the wait before the next check: Interval ± Jitter ×
// Interval, drawn uniformly by int64n.
func nextDelay(c HealthConfig, int64n func(int64) int64) time.Duration {
	j := int64(c.Jitter * float64(c.Interval))
	if j <= 0 {
		return c.Interval
	}
	return c.Interval - time.Duration(j) + time.Duration(int64n(2*j+1))
}

// prober checks one endpoint once. Close releases what it holds (a gRPC
// connection). Both are called from the endpoint's checker goroutine only.
type prober interface {
	check(ctx context.Context) error
	close()
}

// HealthTarget is one endpoint to check.
type HealthTarget struct {
	ID   string
	Addr netip.AddrPort
	// OnChange is called from the endpoint's checker goroutine whenever
	// the endpoint turns healthy or unhealthy. Sync also calls it, with
	// true, on its own goroutine when it starts a checker for the target
	// (a new ID, a new address) or fails to: a verdict belongs to the
	// checker that reached it, and a new one starts healthy, so a verdict
	// about an old address (or of a monitor closed since) never sticks. It
	// must not block.
	OnChange func(healthy bool)
}

// HealthMonitor runs one checker goroutine per endpoint of an upstream.
//
// Concurrency: Sync and Close are called by one owner goroutine (the
// balancer's Run); the checkers call HealthTarget.OnChange from their own
// goroutines. Close waits for every checker to exit.
type HealthMonitor struct {
	// Set at construction.
	cfg      HealthConfig
	newProbe func(addr netip.AddrPort) (prober, error)
	int64n   func(int64) int64

	// Owned by the owner goroutine.
	checkers map[string]*checker
	wg       sync.WaitGroup
}

type checker struct {
	addr   netip.AddrPort
	cancel context.CancelFunc
	// mu orders OnChange against stop: once stop returns, the checker
	// reports nothing more (a late verdict of a replaced checker could
	// otherwise overwrite its successor's).
	mu      sync.Mutex
	stopped bool
}

// stop cancels the checker; no OnChange of it runs after stop returns.
func (c *checker) stop() {
	c.mu.Lock()
	c.stopped = true
	c.mu.Unlock()
	c.cancel()
}

// report calls onChange unless the checker was stopped.
func (c *checker) report(onChange func(bool), healthy bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.stopped && onChange != nil {
		onChange(healthy)
	}
}

// NewHealthMonitor validates cfg and returns a monitor with no endpoints.
func NewHealthMonitor(cfg HealthConfig) (*HealthMonitor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !cfg.Enabled() {
		return nil, errors.New("health_check: protocol: not set")
	}
	cfg = cfg.WithDefaults()
	m := &HealthMonitor{cfg: cfg, int64n: rand.Int64N, checkers: map[string]*checker{}}
	m.newProbe = func(addr netip.AddrPort) (prober, error) { return newProber(cfg, addr) }
	return m, nil
}

// Sync makes the running checkers match targets: it starts a checker for
// each new ID (or an ID whose address changed), calling its OnChange(true)
// first, and stops the checkers of IDs no longer listed; a stopped checker
// calls no OnChange after Sync returns. Checkers run until ctx ends, Sync
// drops them, or Close. A target whose prober cannot be built is skipped,
// and the error returned (joined); it is reported healthy.
func (m *HealthMonitor) Sync(ctx context.Context, targets []HealthTarget) error {
	keep := make(map[string]bool, len(targets))
	var errs []error
	for _, t := range targets {
		keep[t.ID] = true
		if c := m.checkers[t.ID]; c != nil {
			if c.addr == t.Addr {
				continue
			}
			c.stop()
			delete(m.checkers, t.ID)
		}
		// The old checker is stopped, the new one not started: its
		// verdict cannot race this reset.
		if t.OnChange != nil {
			t.OnChange(true)
		}
		p, err := m.newProbe(t.Addr)
		if err != nil {
			errs = append(errs, fmt.Errorf("health_check: endpoint %q: %w", t.ID, err))
			continue
		}
		cctx, cancel := context.WithCancel(ctx)
		c := &checker{addr: t.Addr, cancel: cancel}
		m.checkers[t.ID] = c
		m.wg.Go(func() { m.run(cctx, c, p, t.OnChange) })
	}
	for id, c := range m.checkers {
		if !keep[id] {
			c.stop()
			delete(m.checkers, id)
		}
	}
	return errors.Join(errs...)
}

// Close stops every checker and waits for them.
func (m *HealthMonitor) Close() {
	for id, c := range m.checkers {
		c.stop()
		delete(m.checkers, id)
	}
	m.wg.Wait()
}

// run is one endpoint's checker: check at once, then every nextDelay.
func (m *HealthMonitor) run(ctx context.Context, c *checker, p prober, onChange func(bool)) {
	defer p.close()
	h := healthCounter{healthyThreshold: m.cfg.HealthyThreshold, unhealthyThreshold: m.cfg.UnhealthyThreshold, healthy: true}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
		err := p.check(cctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if h.observe(err == nil) {
			c.report(onChange, h.healthy)
		}
		t.Reset(nextDelay(m.cfg, m.int64n))
	}
}
