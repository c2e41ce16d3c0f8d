package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/outrigger-mesh/outrigger/balancer"
	"github.com/outrigger-mesh/outrigger/discovery"
	"github.com/outrigger-mesh/outrigger/discovery/catalog"
	"github.com/outrigger-mesh/outrigger/discovery/file"
	"github.com/outrigger-mesh/outrigger/proxy"
	"github.com/outrigger-mesh/outrigger/proxy/route"
)

// process is one running Outrigger, built from a Config.
type process struct {
	cfg *Config
	log *slog.Logger

	catalog    *catalog.Catalog
	supervisor *discovery.Supervisor
	sources    []discovery.Source
	files      []*file.Source
	balancers  []*balancer.Balancer // one per upstream service, in config order
	server     *proxy.Server
	admin      *proxy.Admin
}

// build turns the config into components; it starts nothing.
func build(cfg *Config, log *slog.Logger) (*process, error) {
	p := &process{cfg: cfg, log: log}
	p.catalog = catalog.New(catalog.Options{Logger: log.With("component", "catalog")})
	p.supervisor = discovery.NewSupervisor(p.catalog, discovery.SupervisorOptions{Logger: log.With("component", "discovery")})
	for _, d := range cfg.Discovery {
		if err := p.catalog.RegisterSource(d.Name, d.Priority); err != nil {
			return nil, err
		}
		switch {
		case d.File != nil:
			src, err := file.New(d.Name, file.Config{Path: cfg.resolve(d.File.Path)},
				file.Options{Logger: log.With("component", "file")})
			if err != nil {
				return nil, err
			}
			p.sources = append(p.sources, src)
			p.files = append(p.files, src)
		}
	}

	locality := discovery.Locality{Cluster: cfg.Node.Cluster, Zone: cfg.Node.Zone}
	byService := map[string]*balancer.Balancer{}
	upstream := func(service, policy string) (*balancer.Balancer, error) {
		if b := byService[service]; b != nil {
			return b, nil
		}
		b, err := balancer.New(balancer.Config{Service: service, Policy: policy, Locality: locality},
			balancer.Options{Logger: log.With("component", "balancer", "service", service), Watcher: p.catalog})
		if err != nil {
			return nil, err
		}
		byService[service] = b
		p.balancers = append(p.balancers, b)
		return b, nil
	}
	var listeners []proxy.Listener
	popts := proxy.Options{Logger: log.With("component", "proxy")}
	for _, o := range cfg.Outbound {
		if o.isHTTP() {
			l, err := p.httpListener(o, upstream, popts)
			if err != nil {
				return nil, fmt.Errorf("outbound %q: %w", o.Name, err)
			}
			listeners = append(listeners, l)
			continue
		}
		b, err := upstream(o.Service, o.Balancer)
		if err != nil {
			return nil, fmt.Errorf("outbound %q: %w", o.Name, err)
		}
		listeners = append(listeners, proxy.NewTCPListener(proxy.TCPConfig{
			Name:            o.Name,
			Listen:          o.Listen,
			ConnectTimeout:  o.ConnectTimeout.D(),
			IdleTimeout:     o.IdleTimeout.D(),
			ConnectAttempts: o.ConnectAttempts,
		}, b, popts))
	}
	for _, in := range cfg.Inbound {
		addr := netip.MustParseAddrPort(in.Forward) // validated
		listeners = append(listeners, proxy.NewTCPListener(proxy.TCPConfig{
			Name:            in.Name,
			Listen:          in.Listen,
			ConnectTimeout:  in.ConnectTimeout.D(),
			IdleTimeout:     in.IdleTimeout.D(),
			ConnectAttempts: 1,
		}, proxy.StaticUpstream(in.Name, addr), popts))
	}
	p.server = proxy.NewServer(proxy.ServerConfig{DrainTimeout: cfg.Drain.Timeout.D()}, popts, listeners...)
	p.admin = proxy.NewAdmin(cfg.Admin.Listen, proxy.AdminOptions{
		Logger:    log.With("component", "admin"),
		Ready:     p.ready,
		Config:    func() any { return p.cfg },
		Endpoints: p.endpoints,
	})
	return p, nil
}

// httpListener builds an http outbound listener: its route table and a
// balancer for every service its routes send to.
func (p *process) httpListener(o OutboundConfig, upstream func(service, policy string) (*balancer.Balancer, error),
	popts proxy.Options) (*proxy.HTTPListener, error) {
	rc, err := o.routeConfig() // validated with the config
	if err != nil {
		return nil, err
	}
	table, err := route.New(rc)
	if err != nil {
		return nil, err
	}
	for _, w := range table.Warnings() {
		p.log.Warn("route table: "+w, "listener", o.Name)
	}
	ups := proxy.Upstreams{}
	for _, svc := range o.services() {
		b, err := upstream(svc, o.Balancer)
		if err != nil {
			return nil, err
		}
		ups[svc] = b
	}
	var trusted []netip.Prefix
	for _, t := range o.TrustedProxies {
		pfx, _ := parsePrefix(t) // validated
		trusted = append(trusted, pfx)
	}
	return proxy.NewHTTPListener(proxy.HTTPConfig{
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
	}, table, ups, popts), nil
}

// ready is the admin /ready check: every listener bound and every upstream
// has had its first discovery answer.
func (p *process) ready() (bool, []string) {
	var reasons []string
	if !p.server.Bound() {
		reasons = append(reasons, "listeners are not bound yet")
	}
	for _, b := range p.balancers {
		if !b.Ready() {
			reasons = append(reasons, fmt.Sprintf("upstream %s: waiting for its first discovery answer", b.Service()))
		}
	}
	return len(reasons) == 0, reasons
}

type endpointsView struct {
	Upstreams []balancer.Status        `json:"upstreams"`
	Sources   []discovery.SourceStatus `json:"sources"`
}

func (p *process) endpoints() any {
	v := endpointsView{Sources: p.supervisor.Status(), Upstreams: make([]balancer.Status, 0, len(p.balancers))}
	for _, b := range p.balancers {
		v.Upstreams = append(v.Upstreams, b.Status())
	}
	return v
}

// runProxy builds and runs the proxy until ctx ends or SIGTERM/SIGINT, then
// drains: readiness fails first, listeners stop accepting, open connections
// get drain.timeout to finish, and only then do discovery and admin stop.
func runProxy(ctx context.Context, cfg *Config, log *slog.Logger) error {
	p, err := build(cfg, log)
	if err != nil {
		return err
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	return p.run(ctx, sigs)
}

func (p *process) run(ctx context.Context, sigs <-chan os.Signal) error {
	if err := p.admin.Listen(); err != nil {
		return fmt.Errorf("admin: %w (set admin.listen to a free address)", err)
	}
	if err := p.server.Listen(); err != nil {
		return err
	}

	// Control plane: discovery, balancers and admin stop only after the
	// data plane has drained, so /endpoints and picks keep working during
	// the drain.
	ctrlCtx, stopCtrl := context.WithCancel(context.Background())
	defer stopCtrl()
	var wg sync.WaitGroup
	goRun := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctrlCtx); err != nil && !errors.Is(err, context.Canceled) {
				p.log.Error(name+" stopped", "err", err)
			}
		}()
	}
	goRun("discovery", func(ctx context.Context) error { return p.supervisor.Run(ctx, p.sources...) })
	for _, b := range p.balancers {
		goRun("balancer", b.Run)
	}
	goRun("admin", p.admin.Serve)

	serveCtx, stopServe := context.WithCancel(context.Background())
	defer stopServe()
	served := make(chan error, 1)
	go func() { served <- p.server.Serve(serveCtx) }()

	for name, addr := range p.server.Addrs() {
		p.log.Info("listening", "listener", name, "addr", addr.String())
	}
	p.log.Info("outrigger started", "version", buildVersion(), "admin", p.admin.Addr().String())

	// Drain: readiness fails first; after drain.delay the listeners close
	// and open connections get drain.timeout.
	draining := false
	var closeListeners <-chan time.Time
	drain := func(why string) {
		draining = true
		p.log.Info("draining", "why", why, "delay", p.cfg.Drain.Delay.D().String(), "timeout", p.cfg.Drain.Timeout.D().String())
		p.admin.SetDraining()
		if d := p.cfg.Drain.Delay.D(); d > 0 {
			closeListeners = time.After(d)
			return
		}
		stopServe()
	}
	done := ctx.Done()
	var serveErr error
loop:
	for {
		select {
		case sig := <-sigs:
			switch {
			case sig == syscall.SIGHUP:
				p.log.Info("SIGHUP: re-reading discovery files", "files", len(p.files))
				for _, f := range p.files {
					f.Reload()
				}
			case draining:
				p.log.Warn("second signal during drain: exiting at once", "signal", sig.String())
				return fmt.Errorf("drain interrupted by %s", sig)
			default:
				drain(sig.String())
			}
		case <-done:
			done = nil
			if !draining {
				drain("context ended")
			}
		case <-closeListeners:
			closeListeners = nil
			stopServe()
		case serveErr = <-served:
			break loop
		}
	}
	stopCtrl()
	wg.Wait()
	if serveErr != nil {
		return serveErr
	}
	p.log.Info("drained, exiting")
	return nil
}
