package main

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outrigger-mesh/outrigger/balancer"
	"github.com/outrigger-mesh/outrigger/discovery"
	"github.com/outrigger-mesh/outrigger/resilience"
)

// stateCollector reads the proxy's control state when Prometheus scrapes:
// balancer status (picks, in-flight, breakers, ejections, health), the
// catalog's endpoints per source and service, source health, config
// reloads and build info. It keeps nothing between scrapes and adds
// nothing to the data path; each callback must be safe from the admin
// server's goroutines.
type stateCollector struct {
	upstreams func() []balancer.Status
	catalog   catalogView // nil: no discovery metrics
	sources   func() []discovery.SourceStatus
	reload    func() reloadStatus
	version   string
}

// catalogView is the part of *catalog.Catalog the collector reads.
type catalogView interface {
	Services() []string
	Snapshot(service string) *discovery.Snapshot
}

var (
	epLabels = []string{lService, "endpoint", "address"}

	descUpEndpoints = prometheus.NewDesc("outrigger_upstream_endpoints",
		"Endpoints of the upstream service's current snapshot, eligible or not.", []string{lService}, nil)
	descUpEligible = prometheus.NewDesc("outrigger_upstream_endpoints_eligible",
		"Endpoints the upstream's balancer picks from now (ready, healthy, breaker not open, not ejected, best tier).",
		[]string{lService}, nil)
	descUpReady = prometheus.NewDesc("outrigger_upstream_ready",
		"1 once the upstream had its first discovery answer, else 0.", []string{lService}, nil)
	descUpEjectionsTotal = prometheus.NewDesc("outrigger_upstream_outlier_ejections_total",
		"Outlier ejections of the upstream's endpoints since the balancer started.", []string{lService}, nil)
	descUpEjectionsActive = prometheus.NewDesc("outrigger_upstream_outlier_ejections_active",
		"Endpoints of the upstream ejected now.", []string{lService}, nil)
	descUpBreakerOpens = prometheus.NewDesc("outrigger_upstream_breaker_opens_total",
		"Circuit breaker openings of the upstream's endpoints since the balancer started.", []string{lService}, nil)

	descEpPicks = prometheus.NewDesc("outrigger_upstream_endpoint_picks_total",
		"Picks of the endpoint by the balancer (connections and request attempts) since it appeared.", epLabels, nil)
	descEpInFlight = prometheus.NewDesc("outrigger_upstream_endpoint_in_flight",
		"Connections and requests to the endpoint in progress.", epLabels, nil)
	descEpEligible = prometheus.NewDesc("outrigger_upstream_endpoint_eligible",
		"1 when the balancer picks the endpoint now, else 0.", epLabels, nil)
	descEpBreaker = prometheus.NewDesc("outrigger_upstream_endpoint_breaker_state",
		"1 for the endpoint's circuit breaker state (closed, open, half-open), 0 for the others; absent without breakers.",
		append(epLabels[:len(epLabels):len(epLabels)], "state"), nil)
	descEpEjected = prometheus.NewDesc("outrigger_upstream_endpoint_ejected",
		"1 when outlier detection ejected the endpoint now, else 0; absent without outlier detection.", epLabels, nil)
	descEpHealthy = prometheus.NewDesc("outrigger_upstream_endpoint_healthy",
		"1 when the endpoint passes active health checks, else 0; absent without health checks.", epLabels, nil)

	descDiscEndpoints = prometheus.NewDesc("outrigger_discovery_endpoints",
		"Endpoints in the catalog, by source, service and state (ready, draining, not_ready).",
		[]string{"source", "service", "state"}, nil)
	descSourceHealthy = prometheus.NewDesc("outrigger_discovery_source_healthy",
		"1 while the discovery source delivers, 0 from a failure until it delivers again.", []string{"source"}, nil)
	descSourceFailures = prometheus.NewDesc("outrigger_discovery_source_consecutive_failures",
		"Failures of the discovery source since it last delivered.", []string{"source"}, nil)

	descReloads = prometheus.NewDesc("outrigger_config_reloads_total",
		"Config reloads since the start, by result (success, failure); a failed reload keeps the running config.",
		[]string{"result"}, nil)
	descGeneration = prometheus.NewDesc("outrigger_config_generation",
		"Generation of the running config: 1 at the start, one more for each reload that changed something.", nil, nil)
	descLastReloadOK = prometheus.NewDesc("outrigger_config_last_reload_successful",
		"1 when the latest reload (or the start) succeeded, 0 when it was rejected.", nil, nil)
	descApplied = prometheus.NewDesc("outrigger_config_last_applied_timestamp_seconds",
		"Unix time the running config was applied.", nil, nil)

	descBuild = prometheus.NewDesc("outrigger_build_info",
		"Always 1; the labels name the build.", []string{"version", "go_version"}, nil)
)

// breakerStates are the values of descEpBreaker's state label.
var breakerStates = []resilience.BreakerState{resilience.BreakerClosed, resilience.BreakerOpen, resilience.BreakerHalfOpen}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUpEndpoints, descUpEligible, descUpReady, descUpEjectionsTotal,
		descUpEjectionsActive, descUpBreakerOpens, descEpPicks, descEpInFlight, descEpEligible, descEpBreaker,
		descEpEjected, descEpHealthy, descDiscEndpoints, descSourceHealthy, descSourceFailures, descReloads,
		descGeneration, descLastReloadOK, descApplied, descBuild} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	if c.upstreams != nil {
		for _, s := range c.upstreams() {
			c.collectUpstream(s, gauge, counter)
		}
	}
	if c.catalog != nil {
		for _, svc := range c.catalog.Services() {
			type key struct {
				source string
				state  discovery.State
			}
			n := map[key]int{}
			var order []key
			for _, e := range c.catalog.Snapshot(svc).Endpoints {
				k := key{e.Source, e.State}
				if n[k] == 0 {
					order = append(order, k)
				}
				n[k]++
			}
			for _, k := range order {
				gauge(descDiscEndpoints, float64(n[k]), k.source, svc, stateLabel(k.state))
			}
		}
	}
	if c.sources != nil {
		for _, s := range c.sources() {
			gauge(descSourceHealthy, boolValue(s.Healthy), s.Name)
			gauge(descSourceFailures, float64(s.ConsecutiveFailures), s.Name)
		}
	}
	if c.reload != nil {
		r := c.reload()
		counter(descReloads, float64(r.Reloads), "success")
		counter(descReloads, float64(r.Failures), "failure")
		gauge(descGeneration, float64(r.Generation))
		gauge(descLastReloadOK, boolValue(len(r.LastError) == 0))
		if !r.Applied.IsZero() {
			gauge(descApplied, float64(r.Applied.UnixNano())/1e9)
		}
	}
	gauge(descBuild, 1, c.version, runtime.Version())
}

func (c *stateCollector) collectUpstream(s balancer.Status, gauge, counter func(*prometheus.Desc, float64, ...string)) {
	svc := s.Service
	eligible, ejected := 0, 0
	for i := range s.Endpoints {
		e := &s.Endpoints[i]
		id, addr := e.ID, e.Addr.String()
		counter(descEpPicks, float64(e.Picks), svc, id, addr)
		gauge(descEpInFlight, float64(e.InFlight), svc, id, addr)
		gauge(descEpEligible, boolValue(e.Eligible), svc, id, addr)
		if e.Eligible {
			eligible++
		}
		if e.Breaker != nil {
			for _, st := range breakerStates {
				gauge(descEpBreaker, boolValue(e.Breaker.State == st), svc, id, addr, st.String())
			}
		}
		if e.Outlier != nil {
			gauge(descEpEjected, boolValue(e.Outlier.Ejected), svc, id, addr)
			if e.Outlier.Ejected {
				ejected++
			}
		}
		if e.Health != nil {
			gauge(descEpHealthy, boolValue(e.Health.Healthy), svc, id, addr)
		}
	}
	gauge(descUpEndpoints, float64(len(s.Endpoints)), svc)
	gauge(descUpEligible, float64(eligible), svc)
	gauge(descUpReady, boolValue(s.Ready), svc)
	counter(descUpEjectionsTotal, float64(s.EjectionsTotal), svc)
	gauge(descUpEjectionsActive, float64(ejected), svc)
	counter(descUpBreakerOpens, float64(s.BreakerOpensTotal), svc)
}

// stateLabel names a discovery state for a label: "ready", "draining",
// "not_ready".
func stateLabel(s discovery.State) string {
	switch s {
	case discovery.StateReady:
		return "ready"
	case discovery.StateDraining:
		return "draining"
	}
	return "not_ready"
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// newStateCollector reads p's balancers, catalog, sources and reload
// status.
func (p *process) newStateCollector() *stateCollector {
	return &stateCollector{
		upstreams: p.upstreamStatuses,
		catalog:   p.catalog,
		sources:   p.supervisor.Status,
		reload: func() reloadStatus {
			p.mu.Lock()
			defer p.mu.Unlock()
			return p.status
		},
		version: buildVersion(),
	}
}

// upstreamStatuses returns the status of every running balancer, in the
// order the config names their services.
func (p *process) upstreamStatuses() []balancer.Status {
	p.mu.Lock()
	if p.cfg == nil {
		p.mu.Unlock()
		return nil
	}
	runs := p.sortedBalancers()
	p.mu.Unlock()
	out := make([]balancer.Status, 0, len(runs))
	for _, r := range runs {
		out = append(out, r.b.Status())
	}
	return out
}
