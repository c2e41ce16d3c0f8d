package main

import (
	"fmt"
	"net/http"
	"net/textproto"
	"strings"

	"github.com/outrigger-mesh/outrigger/balancer"
	"github.com/outrigger-mesh/outrigger/proxy"
	"github.com/outrigger-mesh/outrigger/proxy/route"
	"github.com/outrigger-mesh/outrigger/resilience"
)

// GET /why?listener=…&host=…&path=…&method=…&header=Name:value explains,
// for a request of that shape, what the proxy would do with it now: the
// listener, the route (and the candidates before it that failed, each with
// the condition it failed), the services of the route's split, and per
// service the sources, the endpoints out of the picker with the reason,
// and what the balancer would pick. It takes no pick and changes nothing.
// The same trail for a real request, with the attempts taken, is the
// x-outrigger-debug: why request header, built by the engines
// (proxy/debugwhy.go).

// whyPage is /why's answer.
type whyPage struct {
	Request  whyRequest  `json:"request"`
	Listener whyListener `json:"listener"`
	// Verdict is the outcome in one line.
	Verdict string `json:"verdict"`
	// Route is absent for a tcp listener (no routing).
	Route *whyRoute `json:"route,omitempty"`
	// Services are the services the request may go to: a route's weighted
	// split (each with its share), or a tcp listener's service.
	Services []whyService `json:"services,omitempty"`
}

type whyRequest struct {
	Host    string              `json:"host"`
	Path    string              `json:"path"`
	Query   string              `json:"query,omitempty"`
	Method  string              `json:"method"`
	Headers map[string][]string `json:"headers,omitempty"`
}

type whyListener struct {
	Name     string `json:"name"`
	Listen   string `json:"listen"`
	Protocol string `json:"protocol"`
	// Chosen says why this listener: named in the query, or the only
	// HTTP listener.
	Chosen string `json:"chosen"`
}

type whyRoute struct {
	// Chain is which candidates the host selects (see route.Explanation).
	Chain string `json:"chain"`
	// Matched is the route that takes the request; nil when none does.
	Matched *whyTrial `json:"matched"`
	// FailedBefore are the candidates tried before it (all of them when
	// none matched), in precedence order, each with the failed condition.
	FailedBefore []whyTrial `json:"failed_before"`
	// NotConsidered counts routes whose hosts do not cover the request's.
	NotConsidered int `json:"not_considered"`
	// Action is what the matched route does: "backends", "redirect",
	// "fixed"; "no_route" when none matched (the proxy answers 404).
	Action   string         `json:"action"`
	Redirect *RouteRedirect `json:"redirect,omitempty"`
	Fixed    *RouteFixed    `json:"fixed,omitempty"`
	// RewrittenPath is the path sent upstream when the route rewrites it.
	RewrittenPath string `json:"rewritten_path,omitempty"`
	// Admission is the route's limits and breaker now, when it has any.
	Admission *proxy.RouteAdmissionView `json:"admission,omitempty"`
}

type whyTrial struct {
	Name       string   `json:"name,omitempty"`
	Index      int      `json:"index"`
	Via        string   `json:"via,omitempty"`
	Conditions []string `json:"conditions"`
	Failed     string   `json:"failed,omitempty"`
}

type whyService struct {
	Service string  `json:"service"`
	Weight  uint32  `json:"weight"`
	Percent float64 `json:"percent"`
	// Upstream is absent for a backend of weight 0, which takes no
	// requests, and when the service has no balancer yet.
	Upstream *upstreamView `json:"upstream,omitempty"`
	// Limits are the service's in-flight and connection limits and
	// counts, when it has any.
	Limits *proxy.ServiceAdmissionView `json:"limits,omitempty"`
}

// why is the /why view.
func (p *process) why(r *http.Request) (int, any) {
	q := r.URL.Query()
	cfg, bals := p.snapshotState()
	if cfg == nil {
		return http.StatusServiceUnavailable, errorView{Error: "no config applied yet"}
	}
	req := whyRequest{Host: q.Get("host"), Path: q.Get("path"), Method: q.Get("method")}
	if req.Path == "" {
		req.Path = "/"
	}
	req.Path, req.Query, _ = strings.Cut(req.Path, "?")
	if req.Method == "" {
		req.Method = http.MethodGet
	}
	h := http.Header{}
	for _, hv := range q["header"] {
		name, value, ok := strings.Cut(hv, ":")
		if !ok || strings.TrimSpace(name) == "" {
			return http.StatusBadRequest, errorView{Error: fmt.Sprintf("header=%q: want header=Name:value", hv)}
		}
		h.Add(textproto.TrimString(name), textproto.TrimString(value))
	}
	if len(h) > 0 {
		req.Headers = h
	}
	o, chosen, err := whyListenerOf(cfg, q.Get("listener"))
	if err != nil {
		return http.StatusBadRequest, errorView{Error: err.Error()}
	}
	page := whyPage{Request: req, Listener: whyListener{Name: o.Name, Listen: o.Listen, Protocol: o.Protocol, Chosen: chosen}}
	srcs := p.supervisor.Status()
	upstream := func(svc string) *upstreamView {
		b := bals[svc]
		if b == nil {
			return nil
		}
		v := upstreamOf(cfg, b, srcs)
		return &v
	}
	if !o.isHTTP() {
		up := upstream(o.Service)
		page.Services = []whyService{{Service: o.Service, Weight: 1, Percent: 100, Upstream: up}}
		page.Verdict = fmt.Sprintf("tcp listener %s: every connection goes to %s; %s", o.Name, o.Service, pickVerdict(up))
		return http.StatusOK, page
	}
	table, err := tableOf(o)
	if err != nil {
		return http.StatusInternalServerError, errorView{Error: err.Error()}
	}
	x := table.Explain(req.Host, req.Path, req.Method, h, req.Query)
	wr := &whyRoute{Chain: x.Chain, NotConsidered: x.NotConsidered, FailedBefore: []whyTrial{}}
	for _, tr := range x.Tried {
		t := whyTrial{Name: tr.Route.Name, Index: tr.Route.Index, Via: tr.Via, Conditions: tr.Route.Conditions(), Failed: tr.Failed}
		if tr.Route == x.Match {
			wr.Matched = &t
		} else {
			wr.FailedBefore = append(wr.FailedBefore, t)
		}
	}
	page.Route = wr
	if x.Match == nil {
		wr.Action = "no_route"
		page.Verdict = fmt.Sprintf("no route of listener %s matches (%d tried, %d for other hosts): the proxy answers 404 no_route",
			o.Name, len(x.Tried), x.NotConsidered)
		return http.StatusOK, page
	}
	rv := viewRoute(0, x.Match)
	wr.Action, wr.Redirect, wr.Fixed = rv.Action, rv.Redirect, rv.Fixed
	name := routeName(x.Match)
	switch rv.Action {
	case "redirect":
		page.Verdict = fmt.Sprintf("route %s answers with a %d redirect; nothing goes upstream", name, rv.Redirect.Code)
		return http.StatusOK, page
	case "fixed":
		page.Verdict = fmt.Sprintf("route %s answers %d itself; nothing goes upstream", name, rv.Fixed.Status)
		return http.StatusOK, page
	}
	if rp := x.Match.RewritePath(req.Path); rp != req.Path {
		wr.RewrittenPath = rp
	}
	adm := p.admissionOf(o.Name)
	var refused string // what admission control answers now, if it refuses
	if rl := adm.RouteLimitsAt(x.Match.Index); rl != nil {
		v := rl.View()
		wr.Admission = &v
		refused = routeRefusal(v)
	}
	var parts []string
	for _, s := range rv.Backends {
		ws := whyService{Service: s.Service, Weight: s.Weight, Percent: s.Percent}
		if s.Weight > 0 {
			ws.Upstream = upstream(s.Service)
			verdict := pickVerdict(ws.Upstream)
			if sl := adm.ServiceLimitsOf(s.Service); sl != nil {
				v := sl.View()
				ws.Limits = &v
				if r := serviceRefusal(v); r != "" {
					verdict = r
				}
			}
			parts = append(parts, fmt.Sprintf("%s (%g%%): %s", s.Service, s.Percent, verdict))
		}
		page.Services = append(page.Services, ws)
	}
	page.Verdict = fmt.Sprintf("route %s → %s", name, strings.Join(parts, "; "))
	if refused != "" {
		page.Verdict = fmt.Sprintf("route %s: %s (before any pick)", name, refused)
	}
	return http.StatusOK, page
}

// routeRefusal says what a route's admission control answers now, or ""
// when it admits; in the engine's order: rate limit, in-flight, breaker.
func routeRefusal(v proxy.RouteAdmissionView) string {
	switch {
	case v.RateLimited:
		return fmt.Sprintf("its rate limit has no token: the proxy answers 429 rate_limited, Retry-After %d", v.RetryAfter)
	case v.MaxRequests > 0 && v.InFlight >= v.MaxRequests:
		return fmt.Sprintf("%d requests in flight of max_requests %d: the proxy answers 503 overflow", v.InFlight, v.MaxRequests)
	case v.Breaker == resilience.BreakerOpen.String():
		return "its circuit breaker is open: the proxy answers 503 circuit_open"
	}
	return ""
}

// serviceRefusal says what a service's limits answer now, or "" when
// they admit. A service at max_connections still takes requests onto its
// idle pooled connections; only one that needs a new connection is
// refused.
func serviceRefusal(v proxy.ServiceAdmissionView) string {
	switch {
	case v.MaxRequests > 0 && v.InFlight >= v.MaxRequests:
		return fmt.Sprintf("%d requests in flight of max_requests %d: the proxy answers 503 overflow", v.InFlight, v.MaxRequests)
	case v.MaxConnections > 0 && v.Connections >= v.MaxConnections:
		return fmt.Sprintf("%d connections open of max_connections %d: a request that finds no idle pooled connection is answered 503 overflow",
			v.Connections, v.MaxConnections)
	}
	return ""
}

// admissionOf is the admission control of HTTP listener name now (nil:
// none, or not an HTTP listener).
func (p *process) admissionOf(name string) *proxy.Admission {
	p.mu.Lock()
	r := p.listeners[name]
	p.mu.Unlock()
	switch {
	case r == nil:
		return nil
	case r.http != nil:
		return r.http.Admission()
	case r.front != nil:
		return r.front.Admission()
	}
	return nil
}

func routeName(r *route.Route) string {
	if r.Name != "" {
		return r.Name
	}
	return fmt.Sprintf("routes[%d]", r.Index)
}

// whyListenerOf finds the listener a /why asks about: the one named, or
// the only HTTP listener.
func whyListenerOf(cfg *Config, name string) (*OutboundConfig, string, error) {
	var httpNames, all []string
	for i := range cfg.Outbound {
		o := &cfg.Outbound[i]
		if name != "" && o.Name == name {
			return o, "named in the query", nil
		}
		all = append(all, o.Name)
		if o.isHTTP() {
			httpNames = append(httpNames, o.Name)
		}
	}
	switch {
	case name != "":
		for _, in := range cfg.Inbound {
			if in.Name == name {
				return nil, "", fmt.Errorf("listener %q is inbound: it forwards every connection to %s, nothing to explain", name, in.Forward)
			}
		}
		return nil, "", fmt.Errorf("no outbound listener %q (have %s)", name, strings.Join(all, ", "))
	case len(httpNames) == 1:
		for i := range cfg.Outbound {
			if cfg.Outbound[i].Name == httpNames[0] {
				return &cfg.Outbound[i], "the only HTTP listener", nil
			}
		}
	case len(httpNames) == 0:
		return nil, "", fmt.Errorf("no HTTP listener: name one with listener= (have %s)", strings.Join(all, ", "))
	}
	return nil, "", fmt.Errorf("listener= is required with several HTTP listeners (%s)", strings.Join(httpNames, ", "))
}

// pickVerdict says in a few words what the balancer would do.
func pickVerdict(up *upstreamView) string {
	if up == nil {
		return "no balancer runs for it"
	}
	if len(up.WouldPick) == 0 {
		counts := map[string]int{}
		var order []string
		for _, e := range up.Endpoints {
			for _, ex := range e.Excluded {
				if counts[ex.Reason] == 0 {
					order = append(order, ex.Reason)
				}
				counts[ex.Reason]++
			}
		}
		var why []string
		for _, r := range order {
			why = append(why, fmt.Sprintf("%d %s", counts[r], r))
		}
		if len(up.Endpoints) == 0 {
			why = append(why, "discovery reports no endpoints")
		}
		return fmt.Sprintf("no eligible endpoint (%s): the proxy answers 503 no_endpoints", strings.Join(why, ", "))
	}
	var picks []string
	for _, id := range up.WouldPick {
		for _, e := range up.Endpoints {
			if e.ID == id {
				picks = append(picks, fmt.Sprintf("%s (%s)", id, e.Addr))
			}
		}
	}
	out := "would pick " + strings.Join(picks, " or ")
	if n := excludedCount(up.Endpoints); n > 0 {
		out += fmt.Sprintf(" of %d eligible; %d excluded", up.PickerSize, n)
	}
	return out
}

func excludedCount(eps []balancer.EndpointExplanation) int {
	n := 0
	for _, e := range eps {
		if len(e.Excluded) > 0 {
			n++
		}
	}
	return n
}
