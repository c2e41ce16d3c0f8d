package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"

	"github.com/outrigger-mesh/outrigger/balancer"
	"github.com/outrigger-mesh/outrigger/discovery"
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
// upstream service.
type OutboundConfig struct {
	Name            string   `yaml:"name" json:"name"`
	Listen          string   `yaml:"listen" json:"listen"`
	Service         string   `yaml:"service" json:"service"`
	Protocol        string   `yaml:"protocol" json:"protocol"`
	Balancer        string   `yaml:"balancer" json:"balancer"`
	ConnectTimeout  Duration `yaml:"connect_timeout" json:"connect_timeout"`
	IdleTimeout     Duration `yaml:"idle_timeout" json:"idle_timeout"`
	ConnectAttempts int      `yaml:"connect_attempts" json:"connect_attempts"`
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
)

// Duration is a time.Duration written as "5s", "250ms" or "1h30m".
type Duration time.Duration

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return &valueError{value: string(b), msg: fmt.Sprintf("invalid duration %q: write it like 500ms, 5s or 1m", b)}
	}
	*d = Duration(v)
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// valueError is a decoding error of one scalar that go-yaml returns without
// its position; positioned finds the scalar again by its text.
type valueError struct{ value, msg string }

func (e *valueError) Error() string { return e.msg }

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
	var cfg Config
	if err := yaml.UnmarshalWithOptions(data, &cfg, yaml.DisallowUnknownField()); err != nil {
		return nil, positioned(path, file, err)
	}
	cfg.path = path
	cfg.setDefaults()
	if errs := cfg.validate(); len(errs) > 0 {
		out := make([]error, 0, len(errs))
		for _, fe := range errs {
			out = append(out, fmt.Errorf("%s:%d: %s: %s", path, lineOf(file, fe.path), fe.path, fe.msg))
		}
		return nil, errors.Join(out...)
	}
	return &cfg, nil
}

// positioned turns a go-yaml error into "path:line: field: message".
func positioned(path string, file *ast.File, err error) error {
	var verr *valueError
	if errors.As(err, &verr) {
		if field, line := findValue(file, verr.value); field != "" {
			return fmt.Errorf("%s:%d: %s: %s", path, line, field, verr.msg)
		}
	}
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
	if field == "" {
		return fmt.Errorf("%s:%d: %s", path, tk.Position.Line, msg)
	}
	return fmt.Errorf("%s:%d: %s: %s", path, tk.Position.Line, field, msg)
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
	if c.Drain.Timeout == 0 {
		c.Drain.Timeout = Duration(defaultDrainTimeout)
	}
	for i := range c.Outbound {
		o := &c.Outbound[i]
		o.Protocol = cmpOr(o.Protocol, defaultProtocol)
		o.Balancer = cmpOr(o.Balancer, defaultBalancer)
		o.ConnectTimeout = cmpOr(o.ConnectTimeout, Duration(defaultConnectTimeout))
		o.IdleTimeout = cmpOr(o.IdleTimeout, Duration(defaultIdleTimeout))
		o.ConnectAttempts = cmpOr(o.ConnectAttempts, defaultConnectAttempts)
	}
	for i := range c.Inbound {
		in := &c.Inbound[i]
		in.Protocol = cmpOr(in.Protocol, defaultProtocol)
		in.ConnectTimeout = cmpOr(in.ConnectTimeout, Duration(defaultConnectTimeout))
		in.IdleTimeout = cmpOr(in.IdleTimeout, Duration(defaultIdleTimeout))
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
}

func (c *Config) validate() []fieldError {
	var errs []fieldError
	add := func(path, format string, args ...any) {
		errs = append(errs, fieldError{path, fmt.Sprintf(format, args...)})
	}
	if c.Node.Namespace != "" && !isLabel(c.Node.Namespace) {
		add("node.namespace", "%q is not a DNS label (lower-case letters, digits and '-')", c.Node.Namespace)
	}
	if err := checkHostPort(c.Admin.Listen); err != nil {
		add("admin.listen", "%v", err)
	}
	if c.Drain.Timeout < 0 {
		add("drain.timeout", "must not be negative")
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
		if connect < 0 {
			add(p+".connect_timeout", "must not be negative")
		}
		if idle < 0 {
			add(p+".idle_timeout", "must not be negative")
		}
	}
	for i, o := range c.Outbound {
		p := fmt.Sprintf("outbound[%d]", i)
		checkListener(p, o.Name, o.Listen)
		if o.Service == "" {
			add(p+".service", "required: the upstream service key, like orders.shop")
		} else if err := discovery.ValidateService(o.Service); err != nil {
			add(p+".service", "%v", err)
		}
		checkProtocol(add, p, o.Protocol)
		if !slices.Contains(balancerNames, o.Balancer) {
			add(p+".balancer", "unknown balancer %q (want %s)", o.Balancer, strings.Join(balancerNames, " or "))
		}
		checkTimeouts(p, o.ConnectTimeout, o.IdleTimeout)
		if o.ConnectAttempts < 1 || o.ConnectAttempts > maxConnectAttempts {
			add(p+".connect_attempts", "%d is out of range 1..%d", o.ConnectAttempts, maxConnectAttempts)
		}
	}
	for i, in := range c.Inbound {
		p := fmt.Sprintf("inbound[%d]", i)
		checkListener(p, in.Name, in.Listen)
		if in.Forward == "" {
			add(p+".forward", "required: the local application's address, like 127.0.0.1:8080")
		} else if _, err := netip.ParseAddrPort(in.Forward); err != nil {
			add(p+".forward", "%q is not an ip:port address, like 127.0.0.1:8080", in.Forward)
		}
		checkProtocol(add, p, in.Protocol)
		checkTimeouts(p, in.ConnectTimeout, in.IdleTimeout)
	}
	if len(c.Outbound) == 0 && len(c.Inbound) == 0 {
		add("outbound", "no listeners: add an outbound or inbound listener, or there is nothing to proxy")
	}
	return errs
}

var balancerNames = balancer.PolicyNames()

func checkProtocol(add func(string, string, ...any), p, proto string) {
	switch proto {
	case "tcp":
	case "http", "http2", "grpc", "auto":
		add(p+".protocol", "%q is not available yet: this build proxies tcp only", proto)
	default:
		add(p+".protocol", "unknown protocol %q (want tcp)", proto)
	}
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
