package main

import (
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"strconv"

	"github.com/outrigger-mesh/outrigger/proxy"
	"github.com/outrigger-mesh/outrigger/resilience"
)

// Limits and rate limits (issue 5, items 2, 5 and 6): per route a circuit
// breaker, a rate limit, a per-client rate limit and an in-flight limit;
// per upstream service an in-flight limit and a connection limit. All off
// unless set; docs/configuration.md, "Limits and rate limits" and "Route
// circuit breakers", is the reference.

// RateLimitConfig is a token bucket as written in the file: rate in
// requests per second, burst the bucket's size (default ⌈rate⌉).
type RateLimitConfig struct {
	Rate  *float64 `yaml:"rate" json:"rate"`
	Burst *int     `yaml:"burst" json:"burst"`
}

// setLimitDefaults fills the defaults of every route's limits, so that
// /config shows the values in effect. A route's circuit_breaker has the
// upstream one's defaults.
func (c *Config) setLimitDefaults() {
	for i := range c.Outbound {
		for j := range c.Outbound[i].Routes {
			r := &c.Outbound[i].Routes[j]
			if r.CircuitBreaker != nil {
				(&UpstreamConfig{CircuitBreaker: r.CircuitBreaker}).setDefaults()
			}
			for _, rl := range []*RateLimitConfig{r.RateLimit, r.RateLimitPerClient} {
				if rl != nil && rl.Burst == nil && rl.Rate != nil && *rl.Rate > 0 && *rl.Rate <= math.MaxInt32 {
					rl.Burst = ptr(max(1, int(math.Ceil(*rl.Rate))))
				}
			}
		}
	}
}

// validateLimits checks every route's limits and every upstream's
// max_requests and max_connections.
func (c *Config) validateLimits(add func(string, string, ...any), checkDur func(string, Duration)) {
	nonNegative := func(path string, v int) {
		if v < 0 {
			add(path, "%d: must be 0 (no limit) or more", v)
		}
	}
	for i, o := range c.Outbound {
		for j, r := range o.Routes {
			p := fmt.Sprintf("outbound[%d].routes[%d]", i, j)
			if !r.hasLimits() {
				continue
			}
			if len(r.Backends) == 0 {
				for _, f := range r.limitFields() {
					add(p+"."+f, "applies only to routes with backends (a redirect or fixed response sends nothing upstream)")
				}
				continue
			}
			if r.CircuitBreaker != nil {
				(&UpstreamConfig{CircuitBreaker: r.CircuitBreaker}).validate(add, checkDur, p)
			}
			checkRate(add, p+".rate_limit", r.RateLimit)
			checkRate(add, p+".rate_limit_per_client", r.RateLimitPerClient)
			nonNegative(p+".max_requests", r.MaxRequests)
		}
	}
	for _, svc := range slices.Sorted(maps.Keys(c.Upstreams)) {
		u := c.Upstreams[svc]
		if u == nil {
			continue
		}
		p := upstreamPath(svc)
		nonNegative(p+".max_requests", u.MaxRequests)
		nonNegative(p+".max_connections", u.MaxConnections)
	}
}

func checkRate(add func(string, string, ...any), p string, rl *RateLimitConfig) {
	if rl == nil {
		return
	}
	switch {
	case rl.Rate == nil:
		add(p+".rate", "required: requests per second, like 100 or 0.5")
	case *rl.Rate <= 0 || math.IsNaN(*rl.Rate) || math.IsInf(*rl.Rate, 0):
		add(p+".rate", "%v: must be more than 0 (to turn the limit off, remove the block)", *rl.Rate)
	}
	if rl.Burst != nil && (*rl.Burst < 1 || *rl.Burst > math.MaxInt32) {
		add(p+".burst", "%d is out of range 1..%d", *rl.Burst, math.MaxInt32)
	}
}

func (r *RouteConfig) hasLimits() bool { return len(r.limitFields()) > 0 }

// limitFields names the limit settings r sets.
func (r *RouteConfig) limitFields() []string {
	var f []string
	if r.CircuitBreaker != nil {
		f = append(f, "circuit_breaker")
	}
	if r.RateLimit != nil {
		f = append(f, "rate_limit")
	}
	if r.RateLimitPerClient != nil {
		f = append(f, "rate_limit_per_client")
	}
	if r.MaxRequests != 0 {
		f = append(f, "max_requests")
	}
	return f
}

// routeLimits is the proxy's config of r's limits (validated).
func (r *RouteConfig) routeLimits() proxy.RouteLimitsConfig {
	var c proxy.RouteLimitsConfig
	if r.CircuitBreaker != nil {
		c.Breaker = *balancerConfig("", defaultBalancer, &UpstreamConfig{CircuitBreaker: r.CircuitBreaker}).Breaker
	}
	c.RateLimit = rateLimit(r.RateLimit)
	c.PerClient = rateLimit(r.RateLimitPerClient)
	c.MaxRequests = int64(r.MaxRequests)
	return c
}

func rateLimit(rl *RateLimitConfig) resilience.RateLimitConfig {
	var c resilience.RateLimitConfig
	if rl == nil || rl.Rate == nil {
		return c
	}
	c.Rate = *rl.Rate
	if rl.Burst != nil {
		c.Burst = *rl.Burst
	}
	return c
}

// serviceLimits is the proxy's config of u's limits (nil: none).
func serviceLimits(u *UpstreamConfig) proxy.ServiceLimitsConfig {
	if u == nil {
		return proxy.ServiceLimitsConfig{}
	}
	return proxy.ServiceLimitsConfig{MaxRequests: int64(u.MaxRequests), MaxConnections: int64(u.MaxConnections)}
}

// limitsState is the process's live admission state, carried across
// reloads. It is used only from run's goroutine (prepare and apply).
//
// A route keeps its state (breaker, rate limit buckets, in-flight count)
// across a reload when its listener, its name (or position, when it has
// none) and its limits are unchanged; otherwise it starts afresh. A
// service's limits object lives as long as the process, and a reload sets
// its limits in place (commitLimits), so its counts stay exact.
type limitsState struct {
	routes   map[string]routeLimitsEntry // by listener and route key: the running config's
	staged   map[string]routeLimitsEntry // made by the reload being prepared; kept by commit
	services map[string]*proxy.ServiceLimits
}

// begin starts preparing a reload: route states staged by an earlier
// reload that failed are dropped, so they never replace running ones.
func (s *limitsState) begin() { clear(s.staged) }

type routeLimitsEntry struct {
	cfg proxy.RouteLimitsConfig
	rl  *proxy.RouteLimits
}

// admission builds the admission control of http listener o (nil when
// nothing in it is limited), reusing the state of unchanged routes.
func (s *limitsState) admission(cfg *Config, o OutboundConfig, log *slog.Logger) *proxy.Admission {
	if s.routes == nil {
		s.routes, s.services = map[string]routeLimitsEntry{}, map[string]*proxy.ServiceLimits{}
		s.staged = map[string]routeLimitsEntry{}
	}
	var adm proxy.Admission
	for j, r := range o.Routes {
		if !r.hasLimits() {
			continue
		}
		name := r.Name
		if name == "" {
			name = "#" + strconv.Itoa(j)
		}
		key := routeLimitsKey(o.Name, r.Name, j)
		rc := r.routeLimits()
		e, ok := s.routes[key]
		if !ok || e.cfg != rc {
			if e, ok = s.staged[key]; !ok || e.cfg != rc {
				e = routeLimitsEntry{cfg: rc, rl: proxy.NewRouteLimits(name, rc, log.With("listener", o.Name))}
				s.staged[key] = e
			}
		}
		if adm.Routes == nil {
			adm.Routes = make([]*proxy.RouteLimits, len(o.Routes))
		}
		adm.Routes[j] = e.rl
	}
	for _, svc := range o.services() {
		sc := serviceLimits(cfg.Upstreams[svc])
		if sc == (proxy.ServiceLimitsConfig{}) {
			continue
		}
		sl := s.services[svc]
		if sl == nil {
			sl = proxy.NewServiceLimits(sc)
			s.services[svc] = sl
		}
		if adm.Services == nil {
			adm.Services = map[string]*proxy.ServiceLimits{}
		}
		adm.Services[svc] = sl
	}
	if adm.Routes == nil && adm.Services == nil {
		return nil
	}
	return &adm
}

// commit sets every service's limits to next's and forgets the route
// states next no longer names. It runs once a reload is applied.
func (s *limitsState) commit(next *Config) {
	for svc, sl := range s.services {
		sl.SetConfig(serviceLimits(next.Upstreams[svc]))
	}
	keep := map[string]bool{}
	for _, o := range next.Outbound {
		for j, r := range o.Routes {
			if r.hasLimits() {
				keep[routeLimitsKey(o.Name, r.Name, j)] = true
			}
		}
	}
	for k, e := range s.staged {
		s.routes[k] = e
	}
	clear(s.staged)
	for k := range s.routes {
		if !keep[k] {
			delete(s.routes, k)
		}
	}
}

// limitUpdates adds to d the http listeners of next, not replaced or
// updated already, that send to a service whose limits changed: a service
// that becomes limited joins their admission control (one whose limits
// only change is updated in place by commit).
func (d *configDiff) limitUpdates(old, next *Config) {
	if old == nil {
		return
	}
	changed := map[string]bool{}
	for svc := range next.Upstreams {
		if serviceLimits(old.Upstreams[svc]) != serviceLimits(next.Upstreams[svc]) {
			changed[svc] = true
		}
	}
	for svc := range old.Upstreams {
		if serviceLimits(old.Upstreams[svc]) != serviceLimits(next.Upstreams[svc]) {
			changed[svc] = true
		}
	}
	if len(changed) == 0 {
		return
	}
	for _, o := range next.Outbound {
		if !o.isHTTP() || slices.Contains(d.listenersAdd, o.Name) || slices.Contains(d.listenersUpdate, o.Name) {
			continue
		}
		if slices.ContainsFunc(o.services(), func(svc string) bool { return changed[svc] }) {
			d.listenersUpdate = append(d.listenersUpdate, o.Name)
		}
	}
}

// routeLimitsKey keys a route's state: its listener and its name, or its
// position when it has none.
func routeLimitsKey(listener, route string, i int) string {
	if route == "" {
		route = "#" + strconv.Itoa(i)
	}
	return listener + "\x00" + route
}
