package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/outrigger-mesh/outrigger/balancer"
	"github.com/outrigger-mesh/outrigger/discovery"
	"github.com/outrigger-mesh/outrigger/discovery/file"
	"github.com/outrigger-mesh/outrigger/proxy"
	"github.com/outrigger-mesh/outrigger/proxy/route"
)

// sourceRun is one running discovery source.
type sourceRun struct {
	cfg    DiscoveryConfig
	file   *file.Source
	cancel context.CancelFunc
	done   chan struct{}
}

// balancerRun is one upstream service's running balancer.
type balancerRun struct {
	b      *balancer.Balancer
	cancel context.CancelFunc
	done   chan struct{}
}

// listenerRun is one listener the server owns, and the config it came from.
type listenerRun struct {
	spec  listenerSpec
	l     proxy.Listener
	tcp   *proxy.TCPListener   // set when l is one, or
	http  *proxy.HTTPListener  // this, or
	front *proxy.FrontListener // this (auto, or http/grpc with tls)

	// certs is the TLS certificate source of a listener with tls; its
	// watch runs from the listener's start until its removal.
	certs        *proxy.CertFiles
	stopCerts    context.CancelFunc
	certsStopped chan struct{}
}

// reloadStatus is shown under "reload" on the admin /config.
type reloadStatus struct {
	// Generation is 1 for the config the process started with and grows
	// by one with each reload that changed something.
	Generation int       `json:"generation"`
	Applied    time.Time `json:"applied"`
	// Reloads counts accepted reloads since the start (changed or not),
	// Failures rejected ones.
	Reloads  int `json:"reloads"`
	Failures int `json:"failures"`
	// LastError lists the problems of the latest reload if it was
	// rejected (file:line: field: what); empty once one succeeds.
	LastError []string `json:"last_error,omitempty"`
	// RestartNeeded names settings changed in the file that only a
	// restart applies; the running values are shown above.
	RestartNeeded []string `json:"restart_needed,omitempty"`
}

// configView is what the admin /config renders: the active config, with
// the reload status next to its fields.
type configView struct {
	*Config
	Reload reloadStatus `json:"reload"`
}

// firstSnapshotWait bounds how long a reload waits for a new balancer to
// apply a snapshot the catalog already has, so that a new listener does not
// answer its first requests with "no endpoints".
const firstSnapshotWait = time.Second

// listenerUpdate is an in-place change of a listener, prepared before
// anything is committed.
type listenerUpdate struct {
	run   *listenerRun
	spec  listenerSpec
	tcp   proxy.TCPConfig
	up    proxy.Upstream
	table *route.Table
	ups   proxy.Upstreams
	adm   *proxy.Admission
}

// plan is one apply's diff with everything it needs built, nothing started.
type plan struct {
	d       configDiff
	next    *Config
	started map[string]*balancerRun // new balancers, by service
	added   map[string]*listenerRun // new listeners, by name
	adds    []proxy.Listener        // the same, in diff order, for Server.Apply
	updates []listenerUpdate
	retries map[string]*retryRun // the retry settings of next, by service
	access  accessOut            // a new access log output, opened; zero: none
}

// apply makes next the running config, all or nothing: on an error nothing
// changed. It runs on run's goroutine only. See docs/configuration.md,
// "Reloading", for what changes how.
func (p *process) apply(next *Config) (configDiff, error) {
	pl, err := p.prepare(next)
	if err != nil {
		return pl.d, err
	}
	// New balancers run before their listeners accept.
	for _, r := range pl.started {
		p.startBalancer(r)
	}
	p.awaitFirstSnapshots(pl.started)

	// The one step that may fail on the outside world: binding.
	if err := p.server.Apply(proxy.Change{Remove: pl.d.listenersRemove, Add: pl.adds}); err != nil {
		for _, r := range pl.started {
			r.cancel()
			<-r.done
		}
		if pl.access.out != nil {
			pl.access.out.Close()
		}
		return pl.d, err
	}

	// Commit; nothing below fails.
	p.commitListeners(pl)
	p.limits.commit(next)
	balancers := p.commitBalancers(pl)
	sources := p.commitSources(pl)
	listeners := make(map[string]*listenerRun, len(p.listeners))
	for name, r := range p.listeners {
		listeners[name] = r
	}
	for _, name := range pl.d.listenersRemove {
		delete(listeners, name)
	}
	for name, r := range pl.added {
		listeners[name] = r
	}
	if pl.d.drain {
		p.server.SetDrainTimeout(next.Drain.Timeout.D())
	}
	if pl.d.accessLog {
		p.access.setSample(*next.AccessLog.Sample)
		p.access.retarget(pl.access)
	}

	active := *next
	if p.cfg != nil {
		active.Node, active.Admin, active.Tracing = p.cfg.Node, p.cfg.Admin, p.cfg.Tracing
		if !pl.d.accessLog {
			active.AccessLog = p.cfg.AccessLog // unchanged, or a change that needs a restart
		}
	}
	p.mu.Lock()
	if p.cfg == nil {
		p.status = reloadStatus{Generation: 1, Applied: time.Now()}
	}
	p.cfg = &active
	p.sources, p.balancers, p.listeners = sources, balancers, listeners
	p.retries = pl.retries
	p.mu.Unlock()
	return pl.d, nil
}

// prepare diffs next against the running config and builds the new
// balancers, listeners and in-place updates; it starts nothing, so an
// error leaves everything as it was.
func (p *process) prepare(next *Config) (*plan, error) {
	p.limits.begin()
	pl := &plan{d: diffConfig(p.cfg, next), next: next,
		started: map[string]*balancerRun{}, added: map[string]*listenerRun{}}
	node := next.Node
	if p.cfg != nil {
		node = p.cfg.Node // a node change needs a restart
	}
	locality := discovery.Locality{Cluster: node.Cluster, Zone: node.Zone}
	for svc, bc := range pl.d.servicesStart {
		bc.Locality = locality
		b, err := balancer.New(bc, balancer.Options{Logger: p.log.With("component", "balancer", "service", svc), Watcher: p.catalog})
		if err != nil {
			return pl, err
		}
		pl.started[svc] = &balancerRun{b: b}
	}
	upstream := func(svc string) *balancer.Balancer {
		if r := pl.started[svc]; r != nil {
			return r.b
		}
		return p.balancers[svc].b
	}
	var err error
	if pl.retries, err = retryRuns(p.retries, next); err != nil {
		return pl, err
	}
	specs, _ := listenerSpecs(next)
	for _, name := range pl.d.listenersAdd {
		lr, err := p.newListener(next, specs[name], upstream, pl.retries)
		if err != nil {
			return pl, fmt.Errorf("%s %q: %w", specs[name].kind, name, err)
		}
		pl.added[name] = lr
		pl.adds = append(pl.adds, lr.l)
	}
	for _, name := range pl.d.listenersUpdate {
		u := listenerUpdate{run: p.listeners[name], spec: specs[name]}
		var err error
		switch s := u.spec; {
		case s.isHTTP():
			u.table, u.ups, err = p.routing(*s.out, upstream, pl.retries)
			u.adm = p.limits.admission(next, *s.out, p.log.With("component", "proxy"))
		case s.out != nil:
			u.tcp, u.up = outboundTCP(*s.out), upstream(s.out.Service)
		default:
			u.tcp, u.up = inboundTCP(*s.in)
		}
		if err != nil {
			return pl, fmt.Errorf("%s %q: %w", u.spec.kind, name, err)
		}
		pl.updates = append(pl.updates, u)
	}
	if pl.d.accessLog {
		// Last: nothing after it fails before the bind, which closes it
		// if it fails.
		if pl.access, err = p.access.prepareRetarget(next); err != nil {
			return pl, err
		}
	}
	return pl, nil
}

// commitListeners applies the in-place updates and moves certificate
// watches from removed listeners to added ones.
func (p *process) commitListeners(pl *plan) {
	for _, u := range pl.updates {
		switch r := u.run; {
		case r.http != nil:
			r.http.SetRouting(u.table, u.ups, u.adm)
		case r.front != nil:
			r.front.SetRouting(u.table, u.ups, u.adm)
		default:
			if err := r.tcp.Update(u.tcp, u.up); err != nil {
				// The config was validated as a whole; a listener refusing
				// it is a bug, and the listener keeps its old settings.
				p.log.Error("listener kept its old settings", "listener", u.spec.name(), "err", err)
			}
		}
		u.run.spec = u.spec
	}
	for _, name := range pl.d.listenersRemove {
		if r := p.listeners[name]; r.certs != nil {
			r.stopCerts()
			<-r.certsStopped
		}
	}
	for _, r := range pl.added {
		if r.certs != nil {
			p.watchCerts(r)
		}
	}
}

// commitBalancers stops the balancers of services no longer used (their
// last picker stays published: connections and requests of removed
// listeners still draining can still pick) and returns the new set.
func (p *process) commitBalancers(pl *plan) map[string]*balancerRun {
	balancers := make(map[string]*balancerRun, len(p.balancers))
	for svc, r := range p.balancers {
		balancers[svc] = r
	}
	for _, svc := range pl.d.servicesStop {
		r := balancers[svc]
		r.cancel()
		<-r.done
		delete(balancers, svc)
	}
	for svc, r := range pl.started {
		balancers[svc] = r
	}
	return balancers
}

// commitSources stops removed and changed sources, starts added and
// changed ones, and returns the new set. A removed source's endpoints leave
// the catalog at once; a changed source's stay until its new run replaces
// them (catalog.ResetSource), so its services never see an empty picker in
// between.
func (p *process) commitSources(pl *plan) map[string]*sourceRun {
	sources := make(map[string]*sourceRun, len(p.sources))
	for name, r := range p.sources {
		sources[name] = r
	}
	restart := map[string]bool{}
	for _, dc := range pl.d.sourcesStart {
		if _, ok := p.sources[dc.Name]; ok {
			restart[dc.Name] = true
		}
	}
	for _, name := range pl.d.sourcesStop {
		// r is nil when an earlier reload failed to start it (logged then);
		// its catalog registration, if any, still goes.
		if r := sources[name]; r != nil {
			r.cancel()
			<-r.done
		}
		if restart[name] {
			delete(sources, name)
			continue // startSource resets its registration
		}
		if err := p.catalog.UnregisterSource(name); err != nil {
			p.log.Error("discovery source not unregistered", "source", name, "err", err)
		}
		delete(sources, name)
	}
	for _, dc := range pl.d.sourcesStart {
		r, err := p.startSource(pl.next, dc, restart[dc.Name])
		if err != nil {
			// Validated config; RegisterSource or file.New failing here
			// is a bug. The rest of the reload stands.
			p.log.Error("discovery source not started", "source", dc.Name, "err", err)
			continue
		}
		sources[dc.Name] = r
	}
	return sources
}

// startBalancer runs r's balancer until the process's control plane stops
// or the balancer is stopped.
func (p *process) startBalancer(r *balancerRun) {
	ctx, cancel := context.WithCancel(p.ctrlCtx)
	r.cancel, r.done = cancel, make(chan struct{})
	p.ctrl.Go(func() {
		defer close(r.done)
		if err := r.b.Run(ctx); err != nil {
			p.log.Error("balancer stopped", "service", r.b.Service(), "err", err)
		}
	})
}

// awaitFirstSnapshots waits, up to firstSnapshotWait, for each new balancer
// to apply the snapshot the catalog holds for its service, if any.
func (p *process) awaitFirstSnapshots(runs map[string]*balancerRun) {
	deadline := time.Now().Add(firstSnapshotWait)
	for svc, r := range runs {
		want := p.catalog.Snapshot(svc)
		if !want.Known {
			continue // its source may start later in this reload
		}
		for r.b.Status().Version < want.Version && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
}

// startSource registers and runs one discovery source under the supervisor;
// with restart, the source is registered already (a changed source on
// reload) and its registration is reset instead, keeping its endpoints
// until the new run reports.
func (p *process) startSource(cfg *Config, dc DiscoveryConfig, restart bool) (*sourceRun, error) {
	r := &sourceRun{cfg: dc}
	var src discovery.Source
	switch {
	case dc.File != nil:
		f, err := file.New(dc.Name, file.Config{Path: cfg.resolve(dc.File.Path)},
			file.Options{Logger: p.log.With("component", "file")})
		if err != nil {
			return nil, err
		}
		r.file, src = f, f
	default:
		return nil, errors.New("no backend") // validated
	}
	var err error
	if restart {
		err = p.catalog.ResetSource(dc.Name, dc.Priority)
	}
	if !restart || err != nil {
		// A first start, or a restart of a source an earlier reload
		// failed to register.
		err = p.catalog.RegisterSource(dc.Name, dc.Priority)
	}
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(p.ctrlCtx)
	r.cancel, r.done = cancel, make(chan struct{})
	p.ctrl.Go(func() {
		defer close(r.done)
		if err := p.supervisor.Run(ctx, src); err != nil {
			p.log.Error("discovery source stopped", "source", dc.Name, "err", err)
		}
	})
	return r, nil
}

// newListener builds (does not bind) the listener for s of config cfg.
func (p *process) newListener(cfg *Config, s listenerSpec, upstream func(string) *balancer.Balancer, retries map[string]*retryRun) (*listenerRun, error) {
	popts := p.proxyOptions()
	r := &listenerRun{spec: s}
	switch {
	case s.isHTTP():
		table, ups, err := p.routing(*s.out, upstream, retries)
		if err != nil {
			return nil, err
		}
		adm := p.limits.admission(cfg, *s.out, popts.Logger)
		if s.out.Protocol == "auto" || s.out.TLS != nil {
			if r.front, r.certs, err = frontListener(cfg, *s.out, httpConfig(*s.out), table, ups, popts); err != nil {
				return nil, err
			}
			r.front.SetRouting(table, ups, adm)
			r.l = r.front
			break
		}
		r.http = proxy.NewHTTPListener(httpConfig(*s.out), table, ups, popts)
		r.http.SetRouting(table, ups, adm)
		r.l = r.http
	case s.out != nil:
		r.tcp = proxy.NewTCPListener(outboundTCP(*s.out), upstream(s.out.Service), popts)
		r.l = r.tcp
	default:
		tc, up := inboundTCP(*s.in)
		r.tcp = proxy.NewTCPListener(tc, up, popts)
		r.l = r.tcp
	}
	return r, nil
}

// watchCerts runs the certificate watch of r's listener until it is
// removed or the control plane stops.
func (p *process) watchCerts(r *listenerRun) {
	ctx, cancel := context.WithCancel(p.ctrlCtx)
	r.stopCerts, r.certsStopped = cancel, make(chan struct{})
	p.ctrl.Go(func() {
		defer close(r.certsStopped)
		if err := r.certs.Run(ctx); err != nil {
			p.log.Error("certificate watch stopped; SIGHUP still reloads", "listener", r.spec.name(), "err", err)
		}
	})
}

// routing builds an http listener's route table and the upstream of every
// service its routes send to, with its retry setting.
func (p *process) routing(o OutboundConfig, upstream func(string) *balancer.Balancer, retries map[string]*retryRun) (*route.Table, proxy.Upstreams, error) {
	rc, err := o.routeConfig() // validated with the config
	if err != nil {
		return nil, nil, err
	}
	table, err := route.New(rc)
	if err != nil {
		return nil, nil, err
	}
	for _, w := range table.Warnings() {
		p.log.Warn("route table: "+w, "listener", o.Name)
	}
	routeRetry, err := routeRetries(o)
	if err != nil {
		return nil, nil, err
	}
	ups := proxy.Upstreams{}
	for _, svc := range o.services() {
		ups[svc] = withRetry(upstream(svc), retries[svc], routeRetry)
	}
	return table, ups, nil
}

func outboundTCP(o OutboundConfig) proxy.TCPConfig {
	return proxy.TCPConfig{
		Name:            o.Name,
		Listen:          o.Listen,
		ConnectTimeout:  o.ConnectTimeout.D(),
		IdleTimeout:     o.IdleTimeout.D(),
		ConnectAttempts: o.ConnectAttempts,
	}
}

func inboundTCP(in InboundConfig) (proxy.TCPConfig, proxy.Upstream) {
	addr := netip.MustParseAddrPort(in.Forward) // validated
	return proxy.TCPConfig{
		Name:            in.Name,
		Listen:          in.Listen,
		ConnectTimeout:  in.ConnectTimeout.D(),
		IdleTimeout:     in.IdleTimeout.D(),
		ConnectAttempts: 1,
	}, proxy.StaticUpstream(in.Name, addr)
}

func httpConfig(o OutboundConfig) proxy.HTTPConfig {
	var trusted []netip.Prefix
	for _, t := range o.TrustedProxies {
		pfx, _ := parsePrefix(t) // validated
		trusted = append(trusted, pfx)
	}
	return proxy.HTTPConfig{
		Name:             o.Name,
		Listen:           o.Listen,
		ConnectTimeout:   o.ConnectTimeout.D(),
		ConnectAttempts:  o.ConnectAttempts,
		ResponseTimeout:  o.ResponseTimeout.D(),
		HeaderTimeout:    o.HeaderTimeout.D(),
		IdleTimeout:      o.IdleTimeout.D(),
		MaxHeaderBytes:   o.MaxHeaderBytes,
		MaxBodyBytes:     o.MaxBodyBytes,
		TrustedProxies:   trusted,
		UpstreamProtocol: o.UpstreamProtocol,
		GRPC:             o.Protocol == "grpc",
	}
}

// reload reads the config file again and applies it. A file that fails
// validation, or a reload that cannot bind a new listener, changes
// nothing: every problem is logged at Error as file:line: field: what.
func (p *process) reload(why string) {
	next, err := LoadConfig(p.path)
	var d configDiff
	if err == nil {
		d, err = p.apply(next)
	}
	if err != nil {
		problems := strings.Split(err.Error(), "\n")
		for _, pr := range problems {
			p.log.Error("config problem", "problem", pr)
		}
		p.mu.Lock()
		p.status.Failures++
		p.status.LastError = problems
		gen := p.status.Generation
		p.mu.Unlock()
		p.log.Error("config reload failed; the running config stays", "why", why, "problems", len(problems), "generation", gen)
		return
	}
	p.mu.Lock()
	p.status.Reloads++
	p.status.LastError = nil
	p.status.RestartNeeded = d.restart
	if !d.empty() {
		p.status.Generation++
		p.status.Applied = time.Now()
	}
	gen := p.status.Generation
	p.mu.Unlock()
	for _, f := range d.restart {
		p.log.Warn("config change needs a restart; the running value stays", "field", f)
	}
	if d.empty() && why != "SIGHUP" {
		p.log.Debug("config file event: no changes", "why", why)
		return
	}
	p.log.Info("config reloaded", "why", why, "generation", gen, "changes", d.summary())
	addrs := p.server.Addrs()
	for _, name := range d.listenersAdd {
		if a := addrs[name]; a != nil {
			p.log.Info("listening", "listener", name, "addr", a.String())
		}
	}
}
