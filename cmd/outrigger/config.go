package main

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"

	"github.com/outrigger-mesh/outrigger/balancer"
	"github.com/outrigger-mesh/outrigger/discovery"
	"github.com/outrigger-mesh/outrigger/proxy"
	"github.com/outrigger-mesh/outrigger/proxy/route"
)

// Config is the whole of outrigger.yaml. It is the only place with yaml and
// json tags; packages below cmd get plain Config structs built from it.
// docs/configuration.md is its reference and must match it.
type Config struct {
	Node      NodeConfig        `yaml:"node" json:"node"`
	Admin     AdminConfig       `yaml:"admin" json:"admin"`
	Drain     DrainConfig       `yaml:"drain" json:"drain"`
	Discovery []DiscoveryConfig `yaml:"discovery" json:"discovery"`
	Outbound  []OutboundConfig  `yaml:"outbound" json:"outbound"`
	Inbound   []InboundConfig   `yaml:"inbound" json:"inbound"`
	// Upstreams holds per upstream service (the key, name.namespace) its
	// circuit breakers, outlier detection and health checks.
	Upstreams map[string]*UpstreamConfig `yaml:"upstreams" json:"upstreams,omitempty"`
	// AccessLog turns on JSON access logs of HTTP requests (accesslog.go).
	AccessLog *AccessLogConfig `yaml:"access_log" json:"access_log,omitempty"`
	// Tracing sends spans over OTLP (tracing.go); nil leaves it to the
	// OTEL_* environment, and off without an endpoint there.
	Tracing *TracingConfig `yaml:"tracing" json:"tracing,omitempty"`

	// path is the file the config came from; relative paths inside it are
	// resolved against its directory.
	path string
}

// NodeConfig names this proxy and says where it runs.
type NodeConfig struct {
	Name      string `yaml:"name" json:"name"`
	Namespace string `yaml:"namespace" json:"namespace"`
	Cluster   string `yaml:"cluster" json:"cluster,omitempty"`
	Zone      string `yaml:"zone" json:"zone,omitempty"`
}

// AdminConfig is the admin HTTP server.
type AdminConfig struct {
	Listen string `yaml:"listen" json:"listen"`
}

// DrainConfig says how shutdown lets connections finish.
type DrainConfig struct {
	// Delay is how long /ready answers 503 before the listeners close, so
	// load balancers and kubelet see the drain before connections are
	// refused.
	Delay Duration `yaml:"delay" json:"delay"`
	// Timeout is how long open connections may run after the listeners
	// close.
	Timeout Duration `yaml:"timeout" json:"timeout"`
}

// DiscoveryConfig is one source; exactly one backend block is set.
type DiscoveryConfig struct {
	Name     string         `yaml:"name" json:"name"`
	Priority int            `yaml:"priority" json:"priority"`
	File     *FileDiscovery `yaml:"file" json:"file,omitempty"`
}

// FileDiscovery is a static services file, watched for changes.
type FileDiscovery struct {
	Path string `yaml:"path" json:"path"`
}

// OutboundConfig is an explicit listener the application dials to reach an
// upstream service. With protocol tcp it is bound to Service; with protocol
// http each request is routed by Routes (Service alone means one catch-all
// route to it); with protocol auto each connection is sniffed: HTTP goes to
// Routes (or Service), anything else to Service as TCP.
type OutboundConfig struct {
	Name            string   `yaml:"name" json:"name"`
	Listen          string   `yaml:"listen" json:"listen"`
	Service         string   `yaml:"service" json:"service,omitempty"`
	Protocol        string   `yaml:"protocol" json:"protocol"`
	Balancer        string   `yaml:"balancer" json:"balancer"`
	ConnectTimeout  Duration `yaml:"connect_timeout" json:"connect_timeout"`
	IdleTimeout     Duration `yaml:"idle_timeout" json:"idle_timeout"`
	ConnectAttempts int      `yaml:"connect_attempts" json:"connect_attempts"`

	// HTTP and gRPC only.
	Routes           []RouteConfig `yaml:"routes" json:"routes,omitempty"`
	UpstreamProtocol string        `yaml:"upstream_protocol" json:"upstream_protocol,omitempty"`
	ResponseTimeout  Duration      `yaml:"response_timeout" json:"response_timeout,omitempty"`
	HeaderTimeout    Duration      `yaml:"header_timeout" json:"header_timeout,omitempty"`
	MaxHeaderBytes   int           `yaml:"max_header_bytes" json:"max_header_bytes,omitempty"`
	MaxBodyBytes     int64         `yaml:"max_body_bytes" json:"max_body_bytes,omitempty"`
	TrustedProxies   []string      `yaml:"trusted_proxies" json:"trusted_proxies,omitempty"`
	// TLS terminates TLS from the application (http, grpc, auto).
	TLS *ListenerTLS `yaml:"tls" json:"tls,omitempty"`

	// auto only.
	SniffTimeout Duration `yaml:"sniff_timeout" json:"sniff_timeout,omitempty"`
}

// ListenerTLS is a listener's server certificate and key, PEM files;
// relative paths are taken from the config file's directory. The files are
// watched and a new pair is served once both are written.
type ListenerTLS struct {
	CertFile string `yaml:"cert_file" json:"cert_file"`
	KeyFile  string `yaml:"key_file" json:"key_file"`
}

// InboundConfig is a listener in front of the local application.
type InboundConfig struct {
	Name           string   `yaml:"name" json:"name"`
	Listen         string   `yaml:"listen" json:"listen"`
	Forward        string   `yaml:"forward" json:"forward"`
	Protocol       string   `yaml:"protocol" json:"protocol"`
	ConnectTimeout Duration `yaml:"connect_timeout" json:"connect_timeout"`
	IdleTimeout    Duration `yaml:"idle_timeout" json:"idle_timeout"`
}

// Defaults, documented in docs/configuration.md.
const (
	defaultAdminListen     = "127.0.0.1:15000"
	defaultDrainTimeout    = 20 * time.Second
	defaultProtocol        = "tcp"
	defaultBalancer        = "round_robin"
	defaultConnectTimeout  = 5 * time.Second
	defaultIdleTimeout     = time.Hour
	defaultConnectAttempts = 3
	maxConnectAttempts     = 5

	defaultResponseTimeout = 15 * time.Second
	defaultHeaderTimeout   = 10 * time.Second
	defaultHTTPIdleTimeout = 60 * time.Second
	defaultMaxHeaderBytes  = 64 << 10

	defaultSniffTimeout = time.Second // proxy.DefaultSniffTimeout, whose comment says why
)

// Duration is a time.Duration written as "5s", "250ms" or "1h30m".
//
// A value that does not parse is kept as text and reported by validation at
// its field path: go-yaml returns unmarshaler errors without a position.
type Duration struct {
	d       time.Duration
	invalid string
}

// Dur makes a Duration.
func Dur(d time.Duration) Duration { return Duration{d: d} }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		*d = Duration{invalid: string(b)}
		return nil
	}
	*d = Duration{d: v}
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.d.String()), nil }

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return d.d }

// LoadConfig reads, decodes strictly, defaults and validates the file at
// path. Every problem is reported, each as "path:line: field: what".
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return ParseConfig(path, data)
}

// ParseConfig is LoadConfig on bytes already read.
func ParseConfig(path string, data []byte) (*Config, error) {
	file, err := parser.ParseBytes(data, 0)
	if err != nil {
		return nil, positioned(path, nil, err)
	}
	if len(file.Docs) > 1 {
		line := 1
		if d := file.Docs[1]; d.Start != nil {
			line = d.Start.Position.Line
		} else if tk := d.GetToken(); tk != nil {
			line = tk.Position.Line
		}
		return nil, fmt.Errorf("%s:%d: the file holds %d YAML documents; outrigger reads one (remove the --- separator)", path, line, len(file.Docs))
	}
	// go-yaml v1.19 can panic decoding tagged nodes into slices; tags have
	// no use in this file, so refuse them with their position instead.
	if field, line, tag := findTag(file); tag != "" {
		if field == "" {
			return nil, fmt.Errorf("%s:%d: YAML tag %s is not supported; remove it", path, line, tag)
		}
		return nil, fmt.Errorf("%s:%d: %s: YAML tag %s is not supported; remove it", path, line, field, tag)
	}
	var cfg Config
	if err := decodeStrict(data, &cfg); err != nil {
		return nil, positioned(path, file, err)
	}
	cfg.path = path
	cfg.setDefaults()
	if errs := cfg.validate(); len(errs) > 0 {
		for i := range errs {
			errs[i].line = lineOf(file, errs[i].path)
		}
		slices.SortStableFunc(errs, func(a, b fieldError) int { return a.line - b.line })
		out := make([]error, 0, len(errs))
		for _, fe := range errs {
			out = append(out, fmt.Errorf("%s:%d: %s: %s", path, fe.line, fe.path, fe.msg))
		}
		return nil, errors.Join(out...)
	}
	return &cfg, nil
}

// decodeStrict decodes with unknown fields as errors, and turns a panic in
// the YAML library into an error: bad input must never crash the process.
func decodeStrict(data []byte, cfg *Config) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("the YAML decoder failed on this file (%v); check its structure against docs/configuration.md", r)
		}
	}()
	return yaml.UnmarshalWithOptions(data, cfg, yaml.DisallowUnknownField())
}

// positioned turns a go-yaml error into "path:line: field: message".
func positioned(path string, file *ast.File, err error) error {
	var yerr yaml.Error
	if !errors.As(err, &yerr) || yerr.GetToken() == nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	tk := yerr.GetToken()
	msg := yerr.GetMessage()
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msg = fmt.Sprintf("cannot use %s as %s", tokenText(tk.Value), te.DstType)
	}
	field := fieldAt(file, tk.Position.Line, tk.Position.Column)
	msg += misplacedHint(field)
	if field == "" {
		return fmt.Errorf("%s:%d: %s", path, tk.Position.Line, msg)
	}
	return fmt.Errorf("%s:%d: %s: %s", path, tk.Position.Line, field, msg)
}

// misplacedHint explains an unknown resilience field on a listener or
// route: those settings belong to the service, under upstreams.
func misplacedHint(field string) string {
	i := strings.LastIndexByte(field, '.')
	if i < 0 || !strings.HasPrefix(field, "outbound[") && !strings.HasPrefix(field, "inbound[") {
		return ""
	}
	switch name := field[i+1:]; name {
	case "circuit_breaker", "outlier_detection", "health_check":
		return fmt.Sprintf("; %s is set per upstream service, shared by every listener and route that sends to it: "+
			"upstreams: {<name.namespace>: {%s: {...}}}", name, name)
	}
	return ""
}

func tokenText(v string) string {
	if v == "" {
		return "an empty value"
	}
	return strconv.Quote(v)
}

func (c *Config) setDefaults() {
	if c.Admin.Listen == "" {
		c.Admin.Listen = defaultAdminListen
	}
	c.Drain.Timeout = cmpOr(c.Drain.Timeout, Dur(defaultDrainTimeout))
	for i := range c.Outbound {
		o := &c.Outbound[i]
		o.Protocol = cmpOr(o.Protocol, defaultProtocol)
		o.Balancer = cmpOr(o.Balancer, defaultBalancer)
		o.ConnectTimeout = cmpOr(o.ConnectTimeout, Dur(defaultConnectTimeout))
		o.ConnectAttempts = cmpOr(o.ConnectAttempts, defaultConnectAttempts)
		if o.isHTTP() {
			if o.Protocol == "grpc" {
				o.UpstreamProtocol = cmpOr(o.UpstreamProtocol, "h2c")
			}
			o.UpstreamProtocol = cmpOr(o.UpstreamProtocol, "http1")
			if o.Protocol == "auto" {
				// idle_timeout bounds the connections forwarded as TCP, as
				// on a tcp listener; HTTP keep-alive has its own default.
				o.IdleTimeout = cmpOr(o.IdleTimeout, Dur(defaultIdleTimeout))
				o.SniffTimeout = cmpOr(o.SniffTimeout, Dur(defaultSniffTimeout))
			}
			o.IdleTimeout = cmpOr(o.IdleTimeout, Dur(defaultHTTPIdleTimeout))
			o.ResponseTimeout = cmpOr(o.ResponseTimeout, Dur(defaultResponseTimeout))
			o.HeaderTimeout = cmpOr(o.HeaderTimeout, Dur(defaultHeaderTimeout))
			o.MaxHeaderBytes = cmpOr(o.MaxHeaderBytes, defaultMaxHeaderBytes)
		} else {
			o.IdleTimeout = cmpOr(o.IdleTimeout, Dur(defaultIdleTimeout))
		}
	}
	for _, u := range c.Upstreams {
		if u != nil {
			u.setDefaults()
		}
	}
	if c.AccessLog != nil {
		c.AccessLog.setDefaults()
	}
	c.setLimitDefaults()
	c.setRetryDefaults()
	for i := range c.Inbound {
		in := &c.Inbound[i]
		in.Protocol = cmpOr(in.Protocol, defaultProtocol)
		in.ConnectTimeout = cmpOr(in.ConnectTimeout, Dur(defaultConnectTimeout))
		in.IdleTimeout = cmpOr(in.IdleTimeout, Dur(defaultIdleTimeout))
	}
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// fieldError is one validation problem at a field path like
// "outbound[0].listen".
type fieldError struct {
	path string
	msg  string
	line int
}

func (c *Config) validate() []fieldError {
	var errs []fieldError
	add := func(path, format string, args ...any) {
		errs = append(errs, fieldError{path: path, msg: fmt.Sprintf(format, args...)})
	}
	checkFinite(reflect.ValueOf(c).Elem(), "", add)
	if c.Node.Namespace != "" && !isLabel(c.Node.Namespace) {
		add("node.namespace", "%q is not a DNS label (lower-case letters, digits and '-')", c.Node.Namespace)
	}
	if err := checkHostPort(c.Admin.Listen); err != nil {
		add("admin.listen", "%v", err)
	}
	checkDur := func(path string, d Duration) {
		switch {
		case d.invalid != "":
			add(path, "invalid duration %q: write it like 500ms, 5s or 1m", d.invalid)
		case d.d < 0:
			add(path, "must not be negative")
		}
	}
	checkDur("drain.timeout", c.Drain.Timeout)
	checkDur("drain.delay", c.Drain.Delay)
	if c.Tracing != nil {
		c.Tracing.validate(add, "tracing")
	}

	if len(c.Discovery) == 0 && len(c.Outbound) > 0 {
		add("discovery", "outbound listeners need at least one discovery source; add one like {name: local, file: {path: services.yaml}}")
	}
	sources := map[string]bool{}
	for i, d := range c.Discovery {
		p := fmt.Sprintf("discovery[%d]", i)
		switch {
		case d.Name == "":
			add(p+".name", "required: name each source, like local or east")
		case !isLabel(d.Name):
			add(p+".name", "%q is not a DNS label (lower-case letters, digits and '-')", d.Name)
		case sources[d.Name]:
			add(p+".name", "duplicate source name %q", d.Name)
		}
		sources[d.Name] = true
		if d.Priority < 0 {
			add(p+".priority", "must be 0 or more (0 is preferred)")
		}
		switch {
		case d.File == nil:
			add(p, "no backend set: add file: {path: services.yaml}")
		case d.File.Path == "":
			add(p+".file.path", "required: the services file to watch")
		}
	}

	listeners := map[string]string{} // name → field path
	addrs := map[string]string{}
	checkListener := func(p, name, listen string) {
		switch {
		case name == "":
			add(p+".name", "required: name each listener")
		case listeners[name] != "":
			add(p+".name", "duplicate listener name %q (also %s)", name, listeners[name])
		default:
			listeners[name] = p + ".name"
		}
		if err := checkHostPort(listen); err != nil {
			add(p+".listen", "%v", err)
		} else if other := addrs[listen]; other != "" {
			add(p+".listen", "%s is already used by %s", listen, other)
		} else {
			addrs[listen] = p + ".listen"
		}
	}
	checkTimeouts := func(p string, connect, idle Duration) {
		checkDur(p+".connect_timeout", connect)
		checkDur(p+".idle_timeout", idle)
	}
	for i, o := range c.Outbound {
		p := fmt.Sprintf("outbound[%d]", i)
		checkListener(p, o.Name, o.Listen)
		switch {
		case o.Service != "":
			if err := discovery.ValidateService(o.Service); err != nil {
				add(p+".service", "%v", err)
			}
		case !o.isHTTP():
			add(p+".service", "required: the upstream service key, like orders.shop")
		case o.Protocol == "auto":
			add(p+".service", "required: an auto listener forwards connections that are not HTTP to this service (and HTTP requests too, unless routes are set)")
		case len(o.Routes) == 0:
			add(p+".routes", "required: an %s listener needs routes, or a service for all requests", o.Protocol)
		}
		checkProtocol(add, p, o.Protocol, true)
		if o.isHTTP() {
			switch {
			case o.UpstreamProtocol != "http1" && o.UpstreamProtocol != "h2c":
				add(p+".upstream_protocol", "unknown upstream protocol %q (want http1 or h2c)", o.UpstreamProtocol)
			case o.Protocol == "grpc" && o.UpstreamProtocol != "h2c":
				add(p+".upstream_protocol", "gRPC needs HTTP/2 to its upstreams: use h2c (or leave it out)")
			}
			if o.Service != "" && len(o.Routes) > 0 && o.Protocol != "auto" {
				add(p+".service", "set either service (one catch-all route) or routes, not both")
			}
			if _, err := o.routeConfig(); err != nil {
				var fe *route.FieldError
				for _, e := range unjoin(err) {
					if errors.As(e, &fe) {
						add(p+"."+fe.Field, "%s", fe.Msg)
					} else {
						add(p+".routes", "%v", e)
					}
				}
			}
			checkDur(p+".response_timeout", o.ResponseTimeout)
			checkDur(p+".header_timeout", o.HeaderTimeout)
			if o.MaxHeaderBytes < 0 {
				add(p+".max_header_bytes", "must not be negative")
			}
			if o.MaxBodyBytes < 0 {
				add(p+".max_body_bytes", "must not be negative (0 means no limit)")
			}
			for j, tp := range o.TrustedProxies {
				if _, err := parsePrefix(tp); err != nil {
					add(fmt.Sprintf("%s.trusted_proxies[%d]", p, j), "%q is not an IP address or CIDR prefix, like 10.0.0.0/8", tp)
				}
			}
			if o.TLS != nil {
				c.checkTLS(add, p+".tls", o.TLS)
			}
		} else {
			for field, set := range map[string]bool{"routes": len(o.Routes) > 0, "response_timeout": o.ResponseTimeout != (Duration{}),
				"header_timeout": o.HeaderTimeout != (Duration{}), "max_header_bytes": o.MaxHeaderBytes != 0,
				"max_body_bytes": o.MaxBodyBytes != 0, "trusted_proxies": len(o.TrustedProxies) > 0,
				"upstream_protocol": o.UpstreamProtocol != ""} {
				if set {
					add(p+"."+field, "applies only to protocol: http, grpc or auto")
				}
			}
			if o.TLS != nil {
				add(p+".tls", "applies only to protocol: http, grpc or auto (a tcp listener forwards TLS as it is)")
			}
		}
		if o.Protocol == "auto" {
			checkDur(p+".sniff_timeout", o.SniffTimeout)
		} else if o.SniffTimeout != (Duration{}) {
			add(p+".sniff_timeout", "applies only to protocol: auto")
		}
		if !slices.Contains(balancerNames, o.Balancer) {
			add(p+".balancer", "unknown balancer %q (want %s)", o.Balancer, strings.Join(balancerNames, " or "))
		}
		checkTimeouts(p, o.ConnectTimeout, o.IdleTimeout)
		if o.ConnectAttempts < 1 || o.ConnectAttempts > maxConnectAttempts {
			add(p+".connect_attempts", "%d is out of range 1..%d", o.ConnectAttempts, maxConnectAttempts)
		}
	}
	// One balancer serves a service for every listener that sends to it.
	policyOf := map[string]string{}
	for i, o := range c.Outbound {
		for _, svc := range o.services() {
			p := fmt.Sprintf("outbound[%d].balancer", i)
			if prev, ok := policyOf[svc]; ok && c.Outbound[prevIndex(c.Outbound, svc)].Balancer != o.Balancer {
				add(p, "service %s already uses balancer %s (%s); one service has one balancer", svc,
					c.Outbound[prevIndex(c.Outbound, svc)].Balancer, prev)
				continue
			}
			if _, ok := policyOf[svc]; !ok {
				policyOf[svc] = p
			}
		}
	}
	c.validateUpstreams(add, checkDur)
	c.validateAccessLog(add)
	c.validateLimits(add, checkDur)
	c.validateRetries(add, checkDur)
	c.validateRouteTimeouts(add, checkDur)
	for i, in := range c.Inbound {
		p := fmt.Sprintf("inbound[%d]", i)
		checkListener(p, in.Name, in.Listen)
		if in.Forward == "" {
			add(p+".forward", "required: the local application's address, like 127.0.0.1:8080")
		} else if ap, err := netip.ParseAddrPort(in.Forward); err != nil || ap.Port() == 0 {
			add(p+".forward", "%q is not an ip:port address with a non-zero port, like 127.0.0.1:8080", in.Forward)
		}
		checkProtocol(add, p, in.Protocol, false)
		checkTimeouts(p, in.ConnectTimeout, in.IdleTimeout)
	}
	if len(c.Outbound) == 0 && len(c.Inbound) == 0 {
		add("outbound", "no listeners: add an outbound or inbound listener, or there is nothing to proxy")
	}
	return errs
}

var balancerNames = balancer.PolicyNames()

// validateUpstreams checks the upstreams map: each key a service that some
// outbound listener or route sends to (a typo would silently leave a
// service unguarded), each entry's fields.
func (c *Config) validateUpstreams(add func(string, string, ...any), checkDur func(string, Duration)) {
	used, _ := serviceBalancers(c)
	for _, svc := range slices.Sorted(maps.Keys(c.Upstreams)) {
		p := upstreamPath(svc)
		if err := discovery.ValidateService(svc); err != nil {
			add(p, "%v", err)
			continue
		}
		u := c.Upstreams[svc]
		if _, ok := used[svc]; !ok {
			add(p, "no outbound listener or route sends to service %s; remove this entry or fix the name", svc)
		}
		if u == nil {
			continue
		}
		bad := false
		u.validate(func(path, format string, args ...any) { bad = true; add(path, format, args...) },
			func(path string, d Duration) {
				if d.invalid != "" || d.d < 0 {
					bad = true
				}
				checkDur(path, d)
			}, p)
		if bad {
			continue
		}
		// The balancer's own check, in case this file's rules miss one.
		if err := balancerConfig(svc, defaultBalancer, u).Validate(); err != nil {
			for _, e := range unjoin(err) {
				add(p, "%v", e)
			}
		}
	}
}

func checkProtocol(add func(string, string, ...any), p, proto string, httpOK bool) {
	switch proto {
	case "tcp":
	case "http", "grpc":
		if !httpOK {
			add(p+".protocol", "%q is not available on inbound listeners yet (want tcp)", proto)
		}
	case "auto":
		if !httpOK {
			add(p+".protocol", "%q is not available on inbound listeners yet (want tcp)", proto)
		}
	case "http2":
		add(p+".protocol", "%q is not a protocol here: use http (HTTP/1.1, h2c, and h2 over tls), grpc, auto or tcp", proto)
	default:
		add(p+".protocol", "unknown protocol %q (want tcp, http, grpc or auto)", proto)
	}
}

// prevIndex is the first outbound listener that sends to svc.
func prevIndex(outs []OutboundConfig, svc string) int {
	for i := range outs {
		if slices.Contains(outs[i].services(), svc) {
			return i
		}
	}
	return -1
}

// isHTTP reports whether the listener runs the HTTP engine (auto: for the
// connections that turn out to be HTTP).
func (o *OutboundConfig) isHTTP() bool {
	return o.Protocol == "http" || o.Protocol == "grpc" || o.Protocol == "auto"
}

// checkTLS checks a listener's certificate and key: both named, both
// readable, and the key the certificate's. Errors name the file at fault.
func (c *Config) checkTLS(add func(string, string, ...any), p string, t *ListenerTLS) {
	if t.CertFile == "" {
		add(p+".cert_file", "required: the PEM certificate file (the server's certificate first, then intermediates)")
	}
	if t.KeyFile == "" {
		add(p+".key_file", "required: the PEM private key file of the certificate")
	}
	if t.CertFile == "" || t.KeyFile == "" {
		return
	}
	_, err := proxy.LoadKeyPair(c.tlsFiles(t))
	var ce *proxy.CertError
	if !errors.As(err, &ce) {
		if err != nil {
			add(p, "%v", err)
		}
		return
	}
	field, configured := p+".cert_file", t.CertFile
	if ce.Key {
		field, configured = p+".key_file", t.KeyFile
	}
	switch {
	case errors.Is(ce.Err, fs.ErrNotExist):
		add(field, "%s does not exist (relative paths are taken from the config file's directory)", ce.Path)
	case errors.Is(ce.Err, fs.ErrPermission):
		add(field, "%s is not readable by this process: %v", ce.Path, ce.Err)
	default:
		if ce.Path != configured {
			add(field, "%s (%s): %v", configured, ce.Path, ce.Err)
		} else {
			add(field, "%s: %v", configured, ce.Err)
		}
	}
}

// tlsFiles resolves a listener's certificate paths against the config file.
func (c *Config) tlsFiles(t *ListenerTLS) proxy.TLSFiles {
	return proxy.TLSFiles{CertFile: c.resolve(t.CertFile), KeyFile: c.resolve(t.KeyFile)}
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func parsePrefix(s string) (netip.Prefix, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	return p.Masked(), err
}

func checkHostPort(s string) error {
	if s == "" {
		return errors.New("required: an address like 127.0.0.1:9000")
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port, like 127.0.0.1:9000", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: port %q is not a number in 0..65535", s, port)
	}
	if host != "" && host != "localhost" {
		if _, err := netip.ParseAddr(host); err != nil {
			return fmt.Errorf("%q: host %q is not an IP address (or localhost)", s, host)
		}
	}
	return nil
}

func isLabel(s string) bool {
	return discovery.ValidateService(s+".x") == nil
}

// resolve makes a path from the config file relative to its directory.
func (c *Config) resolve(p string) string {
	if filepath.IsAbs(p) || c.path == "" {
		return p
	}
	return filepath.Join(filepath.Dir(c.path), p)
}
