package main

import (
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/outrigger-mesh/outrigger/balancer"
)

// configDiff is what it takes to go from one config to the next. It is pure
// data, computed by diffConfig from the two configs alone; apply carries it
// out.
type configDiff struct {
	// restart lists changed settings that only a restart applies (node
	// identity, admin.listen); the running values stay.
	restart []string
	// sourcesStop are discovery sources removed or changed; sourcesStart
	// those added or changed (a changed source is in both: it restarts).
	sourcesStop  []string
	sourcesStart []DiscoveryConfig
	// servicesStop are upstream services whose balancer stops: no longer
	// referenced, or its policy or resilience settings changed;
	// servicesStart those whose balancer starts (new, or changed), with
	// their settings. A changed balancer is rebuilt, not updated: its
	// endpoints' breakers, ejections and health start afresh.
	servicesStop  []string
	servicesStart map[string]balancer.Config
	// listenersRemove are listeners to stop and drain, listenersAdd those
	// to bind and start (names in the next config). A listener whose
	// identity (kind, name, listen, protocol) changed is in both, and so is
	// an HTTP listener whose connection-level settings changed: it is
	// replaced on its own socket.
	listenersRemove []string
	listenersAdd    []string
	// listenersUpdate keep their socket and connections and take new
	// settings (TCP) or routes and upstreams (HTTP) for new connections
	// and requests.
	listenersUpdate []string
	// drain says drain.delay or drain.timeout changed.
	drain bool
	// accessLog says access_log's path or sample changed, the block there
	// before and after: applied in place. Adding or removing the block
	// needs a restart (it is in restart then).
	accessLog bool
}

// empty reports whether the diff changes nothing (restart-only changes
// count as nothing: they are not applied).
func (d *configDiff) empty() bool {
	return len(d.sourcesStop) == 0 && len(d.sourcesStart) == 0 && len(d.servicesStop) == 0 &&
		len(d.servicesStart) == 0 && len(d.listenersRemove) == 0 && len(d.listenersAdd) == 0 &&
		len(d.listenersUpdate) == 0 && !d.drain && !d.accessLog
}

// summary is one line naming every change, for the reload log.
func (d *configDiff) summary() string {
	var parts []string
	list := func(what string, names []string) {
		if len(names) > 0 {
			parts = append(parts, what+" "+strings.Join(names, ","))
		}
	}
	var srcStart []string
	for _, s := range d.sourcesStart {
		srcStart = append(srcStart, s.Name)
	}
	list("sources stopped:", d.sourcesStop)
	list("sources started:", srcStart)
	list("balancers stopped:", d.servicesStop)
	list("balancers started:", slices.Sorted(maps.Keys(d.servicesStart)))
	list("listeners removed:", d.listenersRemove)
	list("listeners added:", d.listenersAdd)
	list("listeners updated in place:", d.listenersUpdate)
	if d.drain {
		parts = append(parts, "drain settings")
	}
	if d.accessLog {
		parts = append(parts, "access_log")
	}
	if len(parts) == 0 {
		return "no changes"
	}
	return strings.Join(parts, "; ")
}

// listenerSpec is one outbound or inbound listener of a config.
type listenerSpec struct {
	kind string // "outbound" or "inbound"
	out  *OutboundConfig
	in   *InboundConfig
}

func (s listenerSpec) name() string {
	if s.out != nil {
		return s.out.Name
	}
	return s.in.Name
}

// identity is what a listener keeps its socket and connections across a
// reload by: kind, name, address and protocol.
func (s listenerSpec) identity() string {
	if s.out != nil {
		return strings.Join([]string{s.kind, s.out.Name, s.out.Listen, s.out.Protocol}, "\x00")
	}
	return strings.Join([]string{s.kind, s.in.Name, s.in.Listen, s.in.Protocol}, "\x00")
}

func (s listenerSpec) isHTTP() bool { return s.out != nil && s.out.isHTTP() }

// services lists the upstream services the listener sends to.
func (s listenerSpec) services() []string {
	if s.out == nil {
		return nil
	}
	return s.out.services()
}

// listenerSpecs returns cfg's listeners by name, and their names in config
// order (outbound first).
func listenerSpecs(cfg *Config) (map[string]listenerSpec, []string) {
	m := map[string]listenerSpec{}
	var order []string
	for i := range cfg.Outbound {
		s := listenerSpec{kind: "outbound", out: &cfg.Outbound[i]}
		m[s.name()] = s
		order = append(order, s.name())
	}
	for i := range cfg.Inbound {
		s := listenerSpec{kind: "inbound", in: &cfg.Inbound[i]}
		m[s.name()] = s
		order = append(order, s.name())
	}
	return m, order
}

// serviceBalancers maps every upstream service of cfg to the settings of
// its balancer: policy (validation makes it one per service) and its
// upstreams entry's resilience. order is the services in config order.
func serviceBalancers(cfg *Config) (m map[string]balancer.Config, order []string) {
	m = map[string]balancer.Config{}
	for _, o := range cfg.Outbound {
		for _, svc := range o.services() {
			if _, ok := m[svc]; !ok {
				m[svc] = balancerConfig(svc, o.Balancer, cfg.Upstreams[svc])
				order = append(order, svc)
			}
		}
	}
	return m, order
}

// httpRoutesOnly reports whether two http, grpc or auto listener configs
// of the same identity differ at most in what SetRoutes changes in place:
// routes, and (not for auto) service and balancer.
func httpRoutesOnly(a, b OutboundConfig) bool {
	a.Routes, b.Routes = nil, nil
	if a.Protocol != "auto" {
		// An auto listener's service is also where its connections that
		// are not HTTP go, which SetRoutes does not change.
		a.Service, a.Balancer = "", ""
		b.Service, b.Balancer = "", ""
	}
	return reflect.DeepEqual(a, b)
}

// diffConfig computes the changes from old to next; old nil means nothing
// runs yet (the start). Both configs are valid.
func diffConfig(old, next *Config) configDiff {
	if old == nil {
		old = &Config{Node: next.Node, Admin: next.Admin, Drain: next.Drain, AccessLog: next.AccessLog, Tracing: next.Tracing}
	}
	var d configDiff
	if old.Node != next.Node {
		d.restart = append(d.restart, "node")
	}
	if old.Admin != next.Admin {
		d.restart = append(d.restart, "admin.listen")
	}
	switch {
	case reflect.DeepEqual(old.AccessLog, next.AccessLog):
	case old.AccessLog != nil && next.AccessLog != nil:
		d.accessLog = true
	default:
		d.restart = append(d.restart, "access_log")
	}
	if !reflect.DeepEqual(old.Tracing, next.Tracing) {
		d.restart = append(d.restart, "tracing")
	}
	d.drain = old.Drain != next.Drain

	// Sources, by name.
	oldSrc := map[string]DiscoveryConfig{}
	for _, s := range old.Discovery {
		oldSrc[s.Name] = s
	}
	nextSrc := map[string]bool{}
	for _, s := range next.Discovery {
		nextSrc[s.Name] = true
		prev, ok := oldSrc[s.Name]
		switch {
		case !ok:
			d.sourcesStart = append(d.sourcesStart, s)
		case !reflect.DeepEqual(prev, s) || (s.File != nil && old.resolve(s.File.Path) != next.resolve(s.File.Path)):
			d.sourcesStop = append(d.sourcesStop, s.Name)
			d.sourcesStart = append(d.sourcesStart, s)
		}
	}
	for _, s := range old.Discovery {
		if !nextSrc[s.Name] {
			d.sourcesStop = append(d.sourcesStop, s.Name)
		}
	}

	// Balancers, by service.
	oldBal, oldOrder := serviceBalancers(old)
	nextBal, nextOrder := serviceBalancers(next)
	d.servicesStart = map[string]balancer.Config{}
	for _, svc := range nextOrder {
		if b, ok := oldBal[svc]; !ok || !reflect.DeepEqual(b, nextBal[svc]) {
			d.servicesStart[svc] = nextBal[svc]
		}
	}
	for _, svc := range oldOrder {
		if b, ok := nextBal[svc]; !ok || !reflect.DeepEqual(b, oldBal[svc]) {
			d.servicesStop = append(d.servicesStop, svc)
		}
	}

	// Listeners, by name.
	oldL, oldNames := listenerSpecs(old)
	nextL, nextNames := listenerSpecs(next)
	for _, name := range oldNames {
		o := oldL[name]
		n, ok := nextL[name]
		if !ok || o.identity() != n.identity() {
			d.listenersRemove = append(d.listenersRemove, name)
			if ok {
				d.listenersAdd = append(d.listenersAdd, name)
			}
			continue
		}
		same := reflect.DeepEqual(o, n)
		rebuilt := slices.ContainsFunc(n.services(), func(svc string) bool {
			_, ok := d.servicesStart[svc]
			// A changed retry block reaches HTTP listeners with their routing state.
			return ok || (n.isHTTP() && retriesChanged(old, next, svc))
		})
		fallbackRebuilt := false
		if n.out != nil && n.out.Protocol == "auto" {
			_, fallbackRebuilt = d.servicesStart[n.out.Service]
		}
		switch {
		case same && !rebuilt:
		case o.isHTTP() && !httpRoutesOnly(*o.out, *n.out), fallbackRebuilt:
			// An auto listener forwards what is not HTTP to its service's
			// balancer, fixed when it is built: a new balancer for that
			// service (its resilience settings changed) needs a new one.
			// Replaced on its own socket (Server.Apply hands it over).
			d.listenersRemove = append(d.listenersRemove, name)
			d.listenersAdd = append(d.listenersAdd, name)
		default:
			d.listenersUpdate = append(d.listenersUpdate, name)
		}
	}
	for _, name := range nextNames {
		if _, ok := oldL[name]; !ok {
			d.listenersAdd = append(d.listenersAdd, name)
		}
	}
	d.limitUpdates(old, next)
	return d
}
