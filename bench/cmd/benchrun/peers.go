package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/outrigger-mesh/outrigger/bench/internal/otlpsink"
)

// route is what a proxy under test forwards: its front protocol and the
// backends it balances over (round robin).
//
//	tcp   L4; the backend is a pure TCP echo or an iperf3 server
//	http  HTTP/1.1 in front, pooled keep-alive HTTP/1.1 to the backends
//	h2    HTTP/2 with prior knowledge (h2c) in front, HTTP/1.1 keep-alive upstream
//	grpc  h2c in front, h2c upstream
type route struct {
	proto    string
	backends []string
}

// Ports: everything lives in 18000-18999, away from the demo and test ports.
const (
	portIperf   = 18101
	portTCPEcho = 18111 // +i
	portHTTP    = 18121 // +i
	portGRPC    = 18131 // +i
)

var proxyPort = map[string]int{
	"outrigger": 18200,
	// B9: Outrigger with features on but not firing (see outriggerFeatures)
	"outrigger-res": 18210,
	// B9: Outrigger tracing every request to an OTLP sink, at 0% and 100%
	// sampling (see outriggerFeatures, otlpsink.go)
	"outrigger-trace0":   18220,
	"outrigger-trace100": 18230,
	"haproxy":            18300,
	"nginx":              18400,
	"caddy":              18500,
	"go-rp":              18700, // Go's stock httputil.ReverseProxy (bench/cmd/rpbaseline), B6 only
	"consul":             18600, // the client-side connect proxy's upstream listener
}

// supports reports whether a peer can run a route at all.
func supports(target, proto string) bool {
	switch target {
	case "caddy":
		return proto != "tcp" // no L4 without plugins
	case "go-rp":
		return proto == "http" // one HTTP/1.1 backend
	case "consul":
		return proto == "tcp" // the built-in proxy is L4 only
	}
	return true
}

// running is a proxy under test (or none, for direct).
type running struct {
	addr    string
	counted []*proc // whose CPU and memory are the proxy's
	helpers []*proc // started for it but not measured (Consul's agent)
}

func (r *running) stop() {
	for _, p := range r.counted {
		p.stop()
	}
	for _, p := range r.helpers {
		p.stop()
	}
}

// startProxy starts target in front of rt. pinned gives it CPU 1 and one
// worker; unpinned it gets every core and one worker per core.
func (h *harness) startProxy(ctx context.Context, target string, rt route, pinned bool, dir string) (*running, error) {
	if target == "direct" {
		return &running{addr: rt.backends[0]}, nil
	}
	cpu, workers := "", h.cores
	if pinned {
		cpu, workers = "1", 1
	}
	listen := fmt.Sprintf("127.0.0.1:%d", proxyPort[target])
	var (
		r   *running
		err error
	)
	switch target {
	case "outrigger", "outrigger-res":
		r, err = h.startOutrigger(dir, listen, rt, cpu, workers, outriggerFeatures[target])
	case "outrigger-trace0", "outrigger-trace100":
		var sink *otlpsink.Sink
		if sink, err = h.otlp(); err == nil {
			fmt.Fprintf(os.Stderr, "benchrun: otlp sink has %d spans so far\n", sink.Spans())
			r, err = h.startOutrigger(dir, listen, rt, cpu, workers, outriggerFeatures[target])
		}
	case "haproxy":
		r, err = h.startHAProxy(dir, listen, rt, cpu, workers)
	case "nginx":
		r, err = h.startNginx(dir, listen, rt, cpu, workers)
	case "caddy":
		r, err = h.startCaddy(dir, listen, rt, cpu, workers)
	case "go-rp":
		env := []string{fmt.Sprintf("GOMAXPROCS=%d", workers)}
		var p *proc
		if p, err = start(dir, "go-rp", cpu, env, filepath.Join(h.bin, "rpbaseline"), "-listen", listen, "-backend", rt.backends[0]); err == nil {
			r = &running{addr: listen, counted: []*proc{p}}
		}
	case "consul":
		r, err = h.startConsul(ctx, dir, listen, rt, cpu, workers)
	default:
		err = fmt.Errorf("unknown target %q", target)
	}
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := waitPort(wctx, r.addr, append(r.counted, r.helpers...)...); err != nil {
		r.stop()
		return nil, fmt.Errorf("%s: %w", target, err)
	}
	return r, nil
}

func write(path, content string) error { return os.WriteFile(path, []byte(content), 0o644) }

// outriggerFeatures is the config a B9 target adds to Outrigger's: every
// feature on, tuned so that none fires on a healthy backend (the breakers
// and outlier detection count, the health check probes, the retry budget
// and rate limits count, nothing trips). A "routes:" block first replaces
// the listener's catch-all "service:" with the same one route, carrying the
// route's settings.
var outriggerFeatures = map[string]string{
	"outrigger-res": `    routes:
      - name: all
        backends: [{service: b.bench}]
        rate_limit: {rate: 1000000, burst: 1000000}
        rate_limit_per_client: {rate: 1000000, burst: 1000000}
        max_requests: 100000
        circuit_breaker: {consecutive_failures: 5, open: 30s}
upstreams:
  b.bench:
    max_requests: 100000
    max_connections: 100000
    retry: {attempts: 3, per_try_timeout: 5s, on: [connect-failure, reset, gateway-error]}
    circuit_breaker: {consecutive_failures: 5, open: 30s}
    outlier_detection: {consecutive_5xx: 5, consecutive_local_origin_failures: 5, base_ejection_time: 30s}
    health_check: {type: http, interval: 1s, timeout: 1s, http: {path: /}}
`,
	// A server and a client span per request, batched and sent over OTLP
	// gRPC to benchrun's sink; at 0% nothing is sent, but every request
	// still starts its server span and carries a traceparent upstream.
	"outrigger-trace0":   fmt.Sprintf("tracing: {endpoint: \"http://127.0.0.1:%d\", protocol: grpc, sampler_ratio: 0}\n", portOTLP),
	"outrigger-trace100": fmt.Sprintf("tracing: {endpoint: \"http://127.0.0.1:%d\", protocol: grpc, sampler_ratio: 1}\n", portOTLP),
}

func (h *harness) startOutrigger(dir, listen string, rt route, cpu string, workers int, features string) (*running, error) {
	var svc strings.Builder
	svc.WriteString("services:\n  - name: b.bench\n    endpoints:\n")
	for i, b := range rt.backends {
		fmt.Fprintf(&svc, "      - {id: b%d, address: %q}\n", i+1, b)
	}
	proto := map[string]string{"tcp": "tcp", "http": "http", "h2": "http", "grpc": "grpc"}[rt.proto]
	idle := "5m"
	service := "\n    service: b.bench"
	if strings.HasPrefix(features, "    routes:") {
		service = ""
	}
	// the admin port is the listener's + 9, so that two Outriggers can
	// run side by side (runBeside)
	ap, err := netip.ParseAddrPort(listen)
	if err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(`# generated by bench/cmd/benchrun
node: {name: bench, namespace: bench}
admin: {listen: 127.0.0.1:%d}
discovery:
  - {name: local, file: {path: services.yaml}}
outbound:
  - name: b
    listen: %s%s
    protocol: %s
    balancer: round_robin
    idle_timeout: %s
`, ap.Port()+9, listen, service, proto, idle) + features
	if err := write(filepath.Join(dir, "services.yaml"), svc.String()); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "outrigger.yaml")
	if err := write(path, cfg); err != nil {
		return nil, err
	}
	env := []string{"OUTRIGGER_LOG_LEVEL=warn", fmt.Sprintf("GOMAXPROCS=%d", workers)}
	p, err := start(dir, "outrigger", cpu, env, filepath.Join(h.bin, "outrigger"), "run", "-c", path)
	if err != nil {
		return nil, err
	}
	return &running{addr: listen, counted: []*proc{p}}, nil
}

func (h *harness) startHAProxy(dir, listen string, rt route, cpu string, workers int) (*running, error) {
	var b strings.Builder
	fmt.Fprintf(&b, `# generated by bench/cmd/benchrun
global
    nbthread %d
    # 10k idle client connections (B10) need ~10k descriptors; where the
    # hard limit is lower than HAProxy's 2 per connection estimate, run
    # with what there is instead of refusing to start.
    maxconn 12000
    no strict-limits
    pidfile %s/haproxy.pid
defaults
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    maxconn 12000
`, workers, dir)
	mode, bindProto, srvProto := "http", "", ""
	switch rt.proto {
	case "tcp":
		mode = "tcp"
	case "h2":
		bindProto = " proto h2"
	case "grpc":
		bindProto, srvProto = " proto h2", " proto h2"
	}
	fmt.Fprintf(&b, "frontend f\n    mode %s\n    bind %s%s\n    default_backend b\n", mode, listen, bindProto)
	fmt.Fprintf(&b, "backend b\n    mode %s\n    balance roundrobin\n", mode)
	if mode == "http" {
		b.WriteString("    http-reuse always\n")
	}
	for i, be := range rt.backends {
		fmt.Fprintf(&b, "    server s%d %s%s\n", i+1, be, srvProto)
	}
	path := filepath.Join(dir, "haproxy.cfg")
	if err := write(path, b.String()); err != nil {
		return nil, err
	}
	p, err := start(dir, "haproxy", cpu, nil, "haproxy", "-db", "-f", path)
	if err != nil {
		return nil, err
	}
	return &running{addr: listen, counted: []*proc{p}}, nil
}

func (h *harness) startNginx(dir, listen string, rt route, cpu string, workers int) (*running, error) {
	var b strings.Builder
	if rt.proto == "tcp" {
		b.WriteString("load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n")
	}
	fmt.Fprintf(&b, `# generated by bench/cmd/benchrun
worker_processes %d;
daemon off;
pid %s/nginx.pid;
error_log %s/error.log warn;
worker_rlimit_nofile 65536;
events { worker_connections 30000; }
`, workers, dir, dir)
	var ups strings.Builder
	for _, be := range rt.backends {
		fmt.Fprintf(&ups, "    server %s;\n", be)
	}
	if rt.proto == "tcp" {
		fmt.Fprintf(&b, `stream {
  upstream b {
%s  }
  server {
    listen %s;
    proxy_pass b;
    proxy_connect_timeout 5s;
    proxy_timeout 300s;
  }
}
`, ups.String(), listen)
	} else {
		http2, pass := "", "proxy_pass http://b;\n      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";"
		if rt.proto == "h2" || rt.proto == "grpc" {
			http2 = " http2"
		}
		if rt.proto == "grpc" {
			pass = "grpc_pass grpc://b;"
		}
		fmt.Fprintf(&b, `http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  http2_max_requests 10000000;
  upstream b {
%[2]s    keepalive 512;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
  }
  server {
    listen %[3]s%[4]s;
    location / {
      %[5]s
    }
  }
}
`, dir, ups.String(), listen, http2, pass)
	}
	path := filepath.Join(dir, "nginx.conf")
	if err := write(path, b.String()); err != nil {
		return nil, err
	}
	p, err := start(dir, "nginx", cpu, nil, "nginx", "-p", dir+"/", "-e", dir+"/error.log", "-c", path)
	if err != nil {
		return nil, err
	}
	return &running{addr: listen, counted: []*proc{p}}, nil
}

func (h *harness) startCaddy(dir, listen string, rt route, cpu string, workers int) (*running, error) {
	scheme, versions := "", ""
	if rt.proto == "grpc" {
		scheme, versions = "h2c://", "\n      versions h2c"
	}
	var ups []string
	for _, be := range rt.backends {
		ups = append(ups, scheme+be)
	}
	cfg := fmt.Sprintf(`# generated by bench/cmd/benchrun
{
  admin off
  auto_https off
  servers {
    protocols h1 h2c
  }
}
http://%s {
  bind 127.0.0.1
  reverse_proxy %s {
    lb_policy round_robin
    transport http {
      keepalive 300s
      keepalive_idle_conns 512%s
    }
  }
}
`, listen, strings.Join(ups, " "), versions)
	path := filepath.Join(dir, "Caddyfile")
	if err := write(path, cfg); err != nil {
		return nil, err
	}
	env := []string{fmt.Sprintf("GOMAXPROCS=%d", workers), "XDG_DATA_HOME=" + dir, "XDG_CONFIG_HOME=" + dir, "HOME=" + dir}
	p, err := start(dir, "caddy", cpu, env, "caddy", "run", "--adapter", "caddyfile", "--config", path)
	if err != nil {
		return nil, err
	}
	return &running{addr: listen, counted: []*proc{p}}, nil
}

// startConsul runs a Consul dev agent (not measured) and a pair of its
// built-in connect proxies: the client side listens on addr and dials the
// server side over mTLS, which forwards to the backend. Consul has no
// plaintext single-hop mode, so its L4 numbers are for two proxies with
// mTLS between them; both proxies' CPU and memory count.
func (h *harness) startConsul(ctx context.Context, dir, listen string, rt route, cpu string, workers int) (*running, error) {
	consul := filepath.Join(h.toolsBin, "consul")
	if _, err := os.Stat(consul); err != nil {
		return nil, fmt.Errorf("consul not built (bench/install.sh consul): %w", err)
	}
	const api = "127.0.0.1:18700"
	hcl := `ports { http = 18700, grpc = 18702, grpc_tls = -1, dns = 18703, serf_lan = 18704, serf_wan = 18705, server = 18706 }
bind_addr = "127.0.0.1"
client_addr = "127.0.0.1"
log_level = "warn"
`
	if err := write(filepath.Join(dir, "consul.hcl"), hcl); err != nil {
		return nil, err
	}
	agent, err := start(dir, "consul-agent", "0", nil, consul, "agent", "-dev", "-config-file", filepath.Join(dir, "consul.hcl"), "-data-dir", filepath.Join(dir, "consul-data"))
	if err != nil {
		return nil, err
	}
	r := &running{addr: listen, helpers: []*proc{agent}}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := waitHTTP(wctx, "http://"+api+"/v1/status/leader", agent); err != nil {
		r.stop()
		return nil, fmt.Errorf("consul agent: %w", err)
	}
	env := []string{"CONSUL_HTTP_ADDR=" + api, fmt.Sprintf("GOMAXPROCS=%d", workers)}
	srv, err := start(dir, "consul-proxy-server", cpu, env, consul, "connect", "proxy", "-service", "bench-backend",
		"-service-addr", rt.backends[0], "-listen", "127.0.0.1:18610", "-register", "-log-level", "warn")
	if err != nil {
		r.stop()
		return nil, err
	}
	r.counted = append(r.counted, srv)
	cli, err := start(dir, "consul-proxy-client", cpu, env, consul, "connect", "proxy", "-service", "bench-client",
		"-upstream", fmt.Sprintf("bench-backend:%d", proxyPort["consul"]), "-log-level", "warn")
	if err != nil {
		r.stop()
		return nil, err
	}
	r.counted = append(r.counted, cli)
	// The client proxy accepts before it has certificates and a route;
	// wait until the server side is registered and passing.
	for {
		var entries []json.RawMessage
		resp, err := http.Get("http://" + api + "/v1/health/connect/bench-backend?passing=1")
		if err == nil {
			json.NewDecoder(resp.Body).Decode(&entries)
			resp.Body.Close()
			if len(entries) > 0 {
				break
			}
		}
		select {
		case <-wctx.Done():
			r.stop()
			return nil, fmt.Errorf("consul: bench-backend never became a passing connect service")
		case <-time.After(200 * time.Millisecond):
		}
	}
	return r, nil
}

func waitHTTP(ctx context.Context, url string, p *proc) error {
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		if p.exited() {
			return fmt.Errorf("%s exited: %v\n%s", p.name, p.err, p.tail())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: not ready", url)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// startBackends starts n backends of a kind ("iperf", "tcp", "http",
// "grpc") and waits until they accept.
func (h *harness) startBackends(ctx context.Context, dir, kind string, n int, cpu string) ([]*proc, []string, error) {
	var procs []*proc
	var addrs []string
	stopAll := func() {
		for _, p := range procs {
			p.stop()
		}
	}
	for i := 0; i < n; i++ {
		var argv []string
		var addr string
		name := fmt.Sprintf("backend-%s-%d", kind, i+1)
		echo := filepath.Join(h.bin, "echo")
		switch kind {
		case "iperf":
			addr = fmt.Sprintf("127.0.0.1:%d", portIperf+i)
			argv = []string{"iperf3", "-s", "-B", "127.0.0.1", "-p", fmt.Sprint(portIperf + i)}
		case "tcp":
			addr = fmt.Sprintf("127.0.0.1:%d", portTCPEcho+i)
			argv = []string{echo, "-name", name, "-mode", "tcp", "-greet=false", "-listen", addr}
		case "http":
			addr = fmt.Sprintf("127.0.0.1:%d", portHTTP+i)
			argv = []string{echo, "-name", name, "-mode", "http", "-body", "1024", "-listen", addr}
		case "grpc":
			addr = fmt.Sprintf("127.0.0.1:%d", portGRPC+i)
			argv = []string{echo, "-name", name, "-mode", "grpc", "-listen", addr}
		default:
			return nil, nil, fmt.Errorf("unknown backend kind %q", kind)
		}
		p, err := start(dir, name, cpu, []string{"GOMAXPROCS=" + fmt.Sprint(map[bool]int{true: 1, false: h.cores}[cpu != ""])}, argv...)
		if err != nil {
			stopAll()
			return nil, nil, err
		}
		procs = append(procs, p)
		addrs = append(addrs, addr)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for i, a := range addrs {
		if err := waitPort(wctx, a, procs[i]); err != nil {
			stopAll()
			return nil, nil, err
		}
	}
	return procs, addrs, nil
}
