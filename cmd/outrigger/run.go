package main

import (
	"context"
	"fmt"
	"log/slog"
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
)

// process is one running Outrigger. The catalog, supervisor, server and
// admin server live as long as the process; the sources, balancers and
// listeners follow the config, which reload replaces while it runs.
type process struct {
	// set at construction
	path    string  // the config file, read again on reload
	initial *Config // applied by run
	log     *slog.Logger

	catalog    *catalog.Catalog
	supervisor *discovery.Supervisor
	server     *proxy.Server
	admin      *proxy.Admin
	access     *accessLog   // nil without access_log
	metrics    *metrics     // /metrics; observes every listener
	tracing    tracingSetup // zero when tracing is off (tracing.go)

	// set by run before the first apply; the control plane's goroutines
	// (sources, balancers) run under ctrlCtx and ctrl waits for them
	ctrlCtx context.Context
	ctrl    sync.WaitGroup

	// Written only by run's goroutine (apply, reload); mu guards them for
	// the admin callbacks, which read from other goroutines.
	mu        sync.Mutex
	cfg       *Config // the running config; nil until the first apply
	sources   map[string]*sourceRun
	balancers map[string]*balancerRun // one per upstream service
	listeners map[string]*listenerRun
	retries   map[string]*retryRun // per upstream service with retries; see retrycfg.go
	status    reloadStatus
	limits    limitsState // run's goroutine only (limitscfg.go)
}

// build makes the process's lasting parts from the config; it binds and
// starts nothing (run does, and applies cfg).
func build(cfg *Config, log *slog.Logger) (*process, error) {
	p := &process{path: cfg.path, initial: cfg, log: log}
	tr, err := setupTracing(context.Background(), cfg.Tracing, cfg.Node, os.Getenv, log.With("component", "tracing"))
	if err != nil {
		return nil, err
	}
	p.tracing = tr
	if p.access, err = newAccessLog(cfg, log); err != nil {
		return nil, err
	}
	p.catalog = catalog.New(catalog.Options{Logger: log.With("component", "catalog")})
	p.supervisor = discovery.NewSupervisor(p.catalog, discovery.SupervisorOptions{Logger: log.With("component", "discovery")})
	p.server = proxy.NewServer[proxy.Listener](proxy.ServerConfig{DrainTimeout: cfg.Drain.Timeout.D()},
		proxy.Options{Logger: log.With("component", "proxy")})
	p.metrics = newMetrics(p.newStateCollector())
	p.admin = proxy.NewAdmin(cfg.Admin.Listen, proxy.AdminOptions{
		Logger:    log.With("component", "admin"),
		Ready:     p.ready,
		Config:    p.configView,
		Endpoints: p.endpoints,
		Views:     p.introspectViews(),
		Handlers:  p.adminHandlers(),
	})
	return p, nil
}

// ready is the admin /ready check: the config applied, every listener
// bound and every upstream has had its first discovery answer.
func (p *process) ready() (bool, []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cfg == nil {
		return false, []string{"starting"}
	}
	var reasons []string
	if !p.server.Bound() {
		reasons = append(reasons, "listeners are not bound yet")
	}
	for _, r := range p.sortedBalancers() {
		if !r.b.Ready() {
			reasons = append(reasons, fmt.Sprintf("upstream %s: waiting for its first discovery answer", r.b.Service()))
		}
	}
	return len(reasons) == 0, reasons
}

// sortedBalancers returns the balancers in the order the running config
// names their services; mu is held.
func (p *process) sortedBalancers() []*balancerRun {
	_, order := serviceBalancers(p.cfg)
	out := make([]*balancerRun, 0, len(p.balancers))
	for _, svc := range order {
		if r := p.balancers[svc]; r != nil {
			out = append(out, r)
		}
	}
	return out
}

func (p *process) configView() any {
	p.mu.Lock()
	defer p.mu.Unlock()
	return configView{Config: p.cfg, Reload: p.status}
}

type endpointsView struct {
	Upstreams []balancer.Status        `json:"upstreams"`
	Sources   []discovery.SourceStatus `json:"sources"`
}

func (p *process) endpoints() any {
	p.mu.Lock()
	runs := p.sortedBalancers()
	p.mu.Unlock()
	v := endpointsView{Sources: p.supervisor.Status(), Upstreams: make([]balancer.Status, 0, len(runs))}
	for _, r := range runs {
		v.Upstreams = append(v.Upstreams, r.b.Status())
	}
	return v
}

// sighup reloads the config file, then re-reads every discovery file and
// TLS certificate of the running config. It runs on run's goroutine, which
// owns p.sources and p.listeners.
func (p *process) sighup() {
	p.reload("SIGHUP")
	p.access.Reopen()
	var files []*file.Source
	for _, r := range p.sources {
		if r.file != nil {
			files = append(files, r.file)
		}
	}
	p.log.Info("SIGHUP: re-reading discovery files", "files", len(files))
	for _, f := range files {
		f.Reload()
	}
	for _, r := range p.listeners {
		if r.certs == nil {
			continue
		}
		if err := r.certs.Reload(); err != nil {
			p.log.Warn("SIGHUP: certificate not reloaded; the one in use stays", "listener", r.spec.name(), "err", err)
		}
	}
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
	defer p.flushTracing() // the drain's last step: after every other defer
	if err := p.admin.Listen(); err != nil {
		return fmt.Errorf("admin: %w (set admin.listen to a free address)", err)
	}
	if err := p.server.Listen(); err != nil { // no listener yet: apply adds them
		return err
	}

	// Control plane: discovery, balancers and admin stop only after the
	// data plane has drained, so /endpoints and picks keep working during
	// the drain.
	ctrlCtx, stopCtrl := context.WithCancel(context.Background())
	p.ctrlCtx = ctrlCtx
	p.startAccessLog()
	defer p.ctrl.Wait()
	defer stopCtrl()
	if _, err := p.apply(p.initial); err != nil {
		return err
	}

	configChanged := make(chan struct{}, 1)
	p.ctrl.Go(func() {
		if err := watchConfig(ctrlCtx, p.path, configChanged); err != nil {
			p.log.Warn("not watching the config file; SIGHUP still reloads it", "path", p.path, "err", err)
		}
	})
	p.ctrl.Go(func() {
		if err := p.admin.Serve(ctrlCtx); err != nil {
			p.log.Error("admin stopped", "err", err)
		}
	})

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
		delay, timeout := p.cfg.Drain.Delay.D(), p.cfg.Drain.Timeout.D()
		p.log.Info("draining", "why", why, "delay", delay.String(), "timeout", timeout.String())
		p.admin.SetDraining()
		if delay > 0 {
			closeListeners = time.After(delay)
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
			case sig == syscall.SIGHUP && draining:
				p.log.Info("SIGHUP during the drain: ignored")
			case sig == syscall.SIGHUP:
				p.sighup()
			case draining:
				p.log.Warn("second signal during drain: exiting at once", "signal", sig.String())
				return fmt.Errorf("drain interrupted by %s", sig)
			default:
				drain(sig.String())
			}
		case <-configChanged:
			if !draining {
				p.reload("file changed")
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
	p.ctrl.Wait()
	if serveErr != nil {
		return serveErr
	}
	p.log.Info("drained, exiting")
	return nil
}

// flushTracing sends the spans still queued and stops the exporter,
// bounded by tracingFlushTimeout.
func (p *process) flushTracing() {
	ctx, cancel := context.WithTimeout(context.Background(), tracingFlushTimeout)
	defer cancel()
	if err := p.tracing.shutdown(ctx); err != nil {
		p.log.Warn("tracing: spans not flushed at exit", "err", err)
	}
}

// tracingFlushTimeout bounds the last export at exit.
const tracingFlushTimeout = 5 * time.Second
