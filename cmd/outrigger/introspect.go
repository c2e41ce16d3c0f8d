package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"slices"

	"github.com/outrigger-mesh/outrigger/balancer"
	"github.com/outrigger-mesh/outrigger/discovery"
	"github.com/outrigger-mesh/outrigger/proxy/route"
)

// Admin introspection: /upstreams, /routes and /why (introspect_why.go)
// are JSON views of the running config and the balancers' live state;
// /debug/pprof/ serves net/http/pprof to loopback clients only. They run on
// admin handler goroutines and read the process under p.mu (the config
// and the balancer set), then the balancers' lock-free Explain.

// introspectViews are the admin JSON routes of this file and /why.
func (p *process) introspectViews() map[string]func(*http.Request) (int, any) {
	return map[string]func(*http.Request) (int, any){
		"/upstreams": func(*http.Request) (int, any) { return http.StatusOK, p.upstreamsView() },
		"/routes":    func(*http.Request) (int, any) { return p.routesView() },
		"/why":       p.why,
	}
}

// introspectHandlers are the raw admin routes: pprof, loopback only.
// adminHandlers are the admin server's raw routes: /metrics and pprof.
func (p *process) adminHandlers() map[string]http.Handler {
	h := introspectHandlers()
	h["/metrics"] = p.metrics.handler()
	return h
}

func introspectHandlers() map[string]http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index) // named profiles too
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return map[string]http.Handler{"/debug/pprof/": loopbackOnly(mux)}
}

// loopbackOnly answers 403 to clients that are not on a loopback address:
// profiles expose memory contents and cost CPU, and the admin port may be
// bound wider than loopback for probes.
func loopbackOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		ip, perr := netip.ParseAddr(host)
		if err != nil || perr != nil || !ip.Unmap().IsLoopback() {
			http.Error(w, "403 forbidden: /debug/pprof/ answers loopback clients only", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// snapshotState returns the running config and a copy of the balancer
// set, taken under p.mu; cfg is nil before the first apply.
func (p *process) snapshotState() (*Config, map[string]*balancer.Balancer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	bals := make(map[string]*balancer.Balancer, len(p.balancers))
	for svc, r := range p.balancers {
		bals[svc] = r.b
	}
	return p.cfg, bals
}

// upstreamView is one upstream service for /upstreams and /why: the
// balancer's explanation (policy, picker size, every endpoint with its
// live state and why it is out of the picker, the next pick), the
// listeners that send to it, and the sources that supply its endpoints.
type upstreamView struct {
	balancer.Explanation
	UsedBy  []string       `json:"used_by"`
	Sources []upstreamFrom `json:"sources"`
}

// upstreamFrom is one discovery source's share of an upstream's endpoints.
type upstreamFrom struct {
	Name      string `json:"name"`
	Priority  int    `json:"priority"`
	Endpoints int    `json:"endpoints"`
	Ready     int    `json:"ready"`
	// Healthy and LastError are the source's own state (all services).
	Healthy   bool   `json:"healthy"`
	LastError string `json:"last_error,omitempty"`
}

type upstreamsPage struct {
	Upstreams []upstreamView `json:"upstreams"`
}

func (p *process) upstreamsView() upstreamsPage {
	cfg, bals := p.snapshotState()
	page := upstreamsPage{Upstreams: []upstreamView{}}
	if cfg == nil {
		return page
	}
	_, order := serviceBalancers(cfg)
	srcs := p.supervisor.Status()
	for _, svc := range order {
		if b := bals[svc]; b != nil {
			page.Upstreams = append(page.Upstreams, upstreamOf(cfg, b, srcs))
		}
	}
	return page
}

// upstreamOf builds the view of b's service.
func upstreamOf(cfg *Config, b *balancer.Balancer, srcs []discovery.SourceStatus) upstreamView {
	v := upstreamView{Explanation: b.Explain(), UsedBy: []string{}, Sources: []upstreamFrom{}}
	for _, o := range cfg.Outbound {
		if slices.Contains(o.services(), v.Service) {
			v.UsedBy = append(v.UsedBy, o.Name)
		}
	}
	for _, e := range v.Endpoints {
		i := slices.IndexFunc(v.Sources, func(s upstreamFrom) bool { return s.Name == e.Source })
		if i < 0 {
			v.Sources = append(v.Sources, upstreamFrom{Name: e.Source, Priority: e.Priority})
			i = len(v.Sources) - 1
			if j := slices.IndexFunc(srcs, func(s discovery.SourceStatus) bool { return s.Name == e.Source }); j >= 0 {
				v.Sources[i].Healthy, v.Sources[i].LastError = srcs[j].Healthy, srcs[j].LastError
			}
		}
		v.Sources[i].Endpoints++
		if e.State == discovery.StateReady {
			v.Sources[i].Ready++
		}
	}
	return v
}

// routesPage is /routes: every HTTP listener's route table.
type routesPage struct {
	Listeners []listenerRoutes `json:"listeners"`
}

type listenerRoutes struct {
	Listener string `json:"listener"`
	Listen   string `json:"listen"`
	Protocol string `json:"protocol"`
	// Routes are in precedence order: the order Match tries them.
	Routes   []routeView `json:"routes"`
	Warnings []string    `json:"warnings,omitempty"`
}

// routeView is one compiled route: as configured, with defaults applied
// (path type, redirect code, equal weights), and its position both in
// precedence order and in the config.
type routeView struct {
	Precedence int      `json:"precedence"` // 1 is tried first
	Name       string   `json:"name,omitempty"`
	Index      int      `json:"index"` // in the listener's routes list
	Conditions []string `json:"conditions"`
	// Action is "backends", "redirect" or "fixed".
	Action          string         `json:"action"`
	Backends        []backendShare `json:"backends,omitempty"`
	Redirect        *RouteRedirect `json:"redirect,omitempty"`
	Fixed           *RouteFixed    `json:"fixed,omitempty"`
	RewritePrefix   string         `json:"rewrite_prefix,omitempty"`
	RewriteHost     string         `json:"rewrite_host,omitempty"`
	RequestHeaders  RouteHeaderOps `json:"request_headers,omitzero"`
	ResponseHeaders RouteHeaderOps `json:"response_headers,omitzero"`
	Idempotent      bool           `json:"idempotent,omitempty"`
}

// backendShare is one service of a route's weighted split, with its share
// of the route's requests in percent.
type backendShare struct {
	Service string  `json:"service"`
	Weight  uint32  `json:"weight"`
	Percent float64 `json:"percent"`
}

func (p *process) routesView() (int, any) {
	cfg, _ := p.snapshotState()
	page := routesPage{Listeners: []listenerRoutes{}}
	if cfg == nil {
		return http.StatusOK, page
	}
	for i := range cfg.Outbound {
		o := &cfg.Outbound[i]
		if !o.isHTTP() {
			continue
		}
		table, err := tableOf(o)
		if err != nil {
			return http.StatusInternalServerError, errorView{Error: err.Error()}
		}
		lr := listenerRoutes{Listener: o.Name, Listen: o.Listen, Protocol: o.Protocol, Routes: []routeView{}, Warnings: table.Warnings()}
		for k, r := range table.Routes() {
			lr.Routes = append(lr.Routes, viewRoute(k+1, r))
		}
		page.Listeners = append(page.Listeners, lr)
	}
	return http.StatusOK, page
}

type errorView struct {
	Error string `json:"error"`
}

// tableOf compiles an http listener's routes as the running listener did
// (the config was validated, so this does not fail in practice).
func tableOf(o *OutboundConfig) (*route.Table, error) {
	rc, err := o.routeConfig()
	if err != nil {
		return nil, fmt.Errorf("listener %s: %w", o.Name, err)
	}
	return route.New(rc)
}

func viewRoute(precedence int, r *route.Route) routeView {
	c := r.Config
	v := routeView{Precedence: precedence, Name: r.Name, Index: r.Index, Conditions: r.Conditions(),
		RewritePrefix: c.RewritePrefix, RewriteHost: c.RewriteHost, Idempotent: c.Idempotent,
		RequestHeaders: headerOpsView(c.RequestHeaders), ResponseHeaders: headerOpsView(c.ResponseHeaders)}
	switch {
	case c.Redirect != nil:
		v.Action = "redirect"
		v.Redirect = &RouteRedirect{Scheme: c.Redirect.Scheme, Host: c.Redirect.Host, Path: c.Redirect.Path,
			Port: c.Redirect.Port, Code: c.Redirect.Code}
	case c.Fixed != nil:
		v.Action = "fixed"
		v.Fixed = &RouteFixed{Status: c.Fixed.Status, Body: c.Fixed.Body, ContentType: c.Fixed.ContentType}
	default:
		v.Action = "backends"
		v.Backends = shares(c.Backends)
	}
	return v
}

// shares gives each backend its percentage of the route's requests.
func shares(bs []route.Backend) []backendShare {
	var total uint64
	for _, b := range bs {
		total += uint64(b.Weight)
	}
	out := make([]backendShare, 0, len(bs))
	for _, b := range bs {
		s := backendShare{Service: b.Service, Weight: b.Weight}
		if total > 0 {
			s.Percent = float64(b.Weight) * 100 / float64(total)
		}
		out = append(out, s)
	}
	return out
}

func headerOpsView(ops route.HeaderOps) RouteHeaderOps {
	var v RouteHeaderOps
	for _, kv := range ops.Set {
		v.Set = append(v.Set, RouteHeader{Name: kv[0], Value: kv[1]})
	}
	for _, kv := range ops.Add {
		v.Add = append(v.Add, RouteHeader{Name: kv[0], Value: kv[1]})
	}
	v.Remove = ops.Remove
	return v
}
