package main

import (
	"github.com/outrigger-mesh/outrigger/proxy/route"
)

// RouteConfig is one HTTP route of an http outbound listener. Its fields
// mirror route.RouteConfig so that the route package's field paths name the
// YAML fields exactly.
type RouteConfig struct {
	Name            string         `yaml:"name" json:"name,omitempty"`
	Match           RouteMatch     `yaml:"match" json:"match"`
	Backends        []RouteBackend `yaml:"backends" json:"backends,omitempty"`
	Redirect        *RouteRedirect `yaml:"redirect" json:"redirect,omitempty"`
	Fixed           *RouteFixed    `yaml:"fixed" json:"fixed,omitempty"`
	RequestHeaders  RouteHeaderOps `yaml:"request_headers" json:"request_headers,omitempty"`
	ResponseHeaders RouteHeaderOps `yaml:"response_headers" json:"response_headers,omitempty"`
	RewritePrefix   string         `yaml:"rewrite_prefix" json:"rewrite_prefix,omitempty"`
	RewriteHost     string         `yaml:"rewrite_host" json:"rewrite_host,omitempty"`
	Idempotent      bool           `yaml:"idempotent" json:"idempotent,omitempty"`
	// Timeout bounds the wait for the response head over all attempts
	// (timeoutcfg.go); 0: none.
	Timeout Duration `yaml:"timeout" json:"timeout,omitzero"`

	// Admission control (limitscfg.go); all off unless set.
	CircuitBreaker     *CircuitBreakerConfig `yaml:"circuit_breaker" json:"circuit_breaker,omitempty"`
	RateLimit          *RateLimitConfig      `yaml:"rate_limit" json:"rate_limit,omitempty"`
	RateLimitPerClient *RateLimitConfig      `yaml:"rate_limit_per_client" json:"rate_limit_per_client,omitempty"`
	MaxRequests        int                   `yaml:"max_requests" json:"max_requests,omitempty"`
	Retry              *RetryConfig          `yaml:"retry" json:"retry,omitempty"` // replaces the service's policy; see retrycfg.go
}

// RouteMatch is what a request must look like; every condition must hold.
type RouteMatch struct {
	Hosts   []string          `yaml:"hosts" json:"hosts,omitempty"`
	Path    RoutePath         `yaml:"path" json:"path"`
	Headers []RouteValueMatch `yaml:"headers" json:"headers,omitempty"`
	Methods []string          `yaml:"methods" json:"methods,omitempty"`
	Query   []RouteValueMatch `yaml:"query" json:"query,omitempty"`
}

// RoutePath is a path condition: type Exact, Prefix (default) or Regex.
type RoutePath struct {
	Type  string `yaml:"type" json:"type,omitempty"`
	Value string `yaml:"value" json:"value,omitempty"`
}

// RouteValueMatch matches a header or query parameter by value or regex.
type RouteValueMatch struct {
	Name  string `yaml:"name" json:"name"`
	Value string `yaml:"value" json:"value"`
	Regex bool   `yaml:"regex" json:"regex,omitempty"`
}

// RouteBackend is one service of a weighted split.
type RouteBackend struct {
	Service string `yaml:"service" json:"service"`
	Weight  uint32 `yaml:"weight" json:"weight,omitempty"`
}

// RouteRedirect answers with a redirect.
type RouteRedirect struct {
	Scheme string `yaml:"scheme" json:"scheme,omitempty"`
	Host   string `yaml:"host" json:"host,omitempty"`
	Path   string `yaml:"path" json:"path,omitempty"`
	Port   int    `yaml:"port" json:"port,omitempty"`
	Code   int    `yaml:"code" json:"code,omitempty"`
}

// RouteFixed answers with a fixed response.
type RouteFixed struct {
	Status      int    `yaml:"status" json:"status"`
	Body        string `yaml:"body" json:"body,omitempty"`
	ContentType string `yaml:"content_type" json:"content_type,omitempty"`
}

// RouteHeaderOps edits headers: remove first, then set, then add.
type RouteHeaderOps struct {
	Set    []RouteHeader `yaml:"set" json:"set,omitempty"`
	Add    []RouteHeader `yaml:"add" json:"add,omitempty"`
	Remove []string      `yaml:"remove" json:"remove,omitempty"`
}

// RouteHeader is one header name and value.
type RouteHeader struct {
	Name  string `yaml:"name" json:"name"`
	Value string `yaml:"value" json:"value"`
}

// routeConfig converts an http listener's routes (or its single service)
// into the route package's config and validates it.
func (o *OutboundConfig) routeConfig() (route.Config, error) {
	var rc route.Config
	if len(o.Routes) == 0 && o.Service != "" {
		rc.Routes = []route.RouteConfig{{Name: o.Name, Backends: []route.Backend{{Service: o.Service}}}}
		return rc, rc.Validate()
	}
	for _, r := range o.Routes {
		out := route.RouteConfig{
			Name: r.Name,
			Match: route.MatchConfig{
				Hosts:   r.Match.Hosts,
				Path:    route.PathMatch{Type: route.PathType(r.Match.Path.Type), Value: r.Match.Path.Value},
				Methods: r.Match.Methods,
			},
			RequestHeaders:  r.RequestHeaders.ops(),
			ResponseHeaders: r.ResponseHeaders.ops(),
			RewritePrefix:   r.RewritePrefix,
			RewriteHost:     r.RewriteHost,
			Idempotent:      r.Idempotent,
			Timeout:         max(r.Timeout.d, 0), // a negative one is reported by validateRouteTimeouts
		}
		for _, h := range r.Match.Headers {
			out.Match.Headers = append(out.Match.Headers, route.HeaderMatch{Name: h.Name, Value: h.Value, Regex: h.Regex})
		}
		for _, q := range r.Match.Query {
			out.Match.Query = append(out.Match.Query, route.QueryMatch{Name: q.Name, Value: q.Value, Regex: q.Regex})
		}
		for _, b := range r.Backends {
			out.Backends = append(out.Backends, route.Backend{Service: b.Service, Weight: b.Weight})
		}
		if r.Redirect != nil {
			out.Redirect = &route.Redirect{Scheme: r.Redirect.Scheme, Host: r.Redirect.Host,
				Path: r.Redirect.Path, Port: r.Redirect.Port, Code: r.Redirect.Code}
		}
		if r.Fixed != nil {
			out.Fixed = &route.FixedResponse{Status: r.Fixed.Status, Body: r.Fixed.Body, ContentType: r.Fixed.ContentType}
		}
		rc.Routes = append(rc.Routes, out)
	}
	return rc, rc.Validate()
}

func (h RouteHeaderOps) ops() route.HeaderOps {
	var ops route.HeaderOps
	for _, kv := range h.Set {
		ops.Set = append(ops.Set, [2]string{kv.Name, kv.Value})
	}
	for _, kv := range h.Add {
		ops.Add = append(ops.Add, [2]string{kv.Name, kv.Value})
	}
	ops.Remove = h.Remove
	return ops
}

// services lists the upstream services the listener can send to; for auto
// its service (where connections that are not HTTP go) comes first.
func (o *OutboundConfig) services() []string {
	if !o.isHTTP() || len(o.Routes) == 0 {
		return []string{o.Service}
	}
	var out []string
	seen := map[string]bool{}
	if o.Protocol == "auto" && o.Service != "" {
		seen[o.Service] = true
		out = append(out, o.Service)
	}
	for _, r := range o.Routes {
		for _, b := range r.Backends {
			if !seen[b.Service] {
				seen[b.Service] = true
				out = append(out, b.Service)
			}
		}
	}
	return out
}
