package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const goodConfig = `node: {name: web-1, namespace: shop, cluster: east, zone: east-1a}
admin: {listen: 127.0.0.1:15001}
drain: {timeout: 3s}
discovery:
  - name: local
    priority: 1
    file: {path: services.yaml}
outbound:
  - name: orders
    listen: 127.0.0.1:9001
    service: orders.shop
    balancer: least_conn
    connect_timeout: 250ms
    connect_attempts: 2
inbound:
  - name: app
    listen: 0.0.0.0:15006
    forward: 127.0.0.1:8080
`

func TestParseConfigGoodFillsDefaults(t *testing.T) {
	cfg, err := ParseConfig("/etc/outrigger/outrigger.yaml", []byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Node:      NodeConfig{Name: "web-1", Namespace: "shop", Cluster: "east", Zone: "east-1a"},
		Admin:     AdminConfig{Listen: "127.0.0.1:15001"},
		Drain:     DrainConfig{Timeout: Dur(3 * time.Second)},
		Discovery: []DiscoveryConfig{{Name: "local", Priority: 1, File: &FileDiscovery{Path: "services.yaml"}}},
		Outbound: []OutboundConfig{{
			Name: "orders", Listen: "127.0.0.1:9001", Service: "orders.shop", Protocol: "tcp",
			Balancer: "least_conn", ConnectTimeout: Dur(250 * time.Millisecond),
			IdleTimeout: Dur(time.Hour), ConnectAttempts: 2,
		}},
		Inbound: []InboundConfig{{
			Name: "app", Listen: "0.0.0.0:15006", Forward: "127.0.0.1:8080", Protocol: "tcp",
			ConnectTimeout: Dur(5 * time.Second), IdleTimeout: Dur(time.Hour),
		}},
	}
	if diff := cmp.Diff(cfg, want, cmp.AllowUnexported(Config{}, Duration{}), cmp.FilterPath(func(p cmp.Path) bool {
		return p.Last().String() == ".path"
	}, cmp.Ignore())); diff != "" {
		t.Errorf("config (-got +want):\n%s", diff)
	}
	if got, want := cfg.resolve(cfg.Discovery[0].File.Path), "/etc/outrigger/services.yaml"; got != want {
		t.Errorf("resolve = %q, want %q", got, want)
	}
}

func TestParseConfigDefaultsWhenAbsent(t *testing.T) {
	cfg, err := ParseConfig("c.yaml", []byte("discovery: [{name: a, file: {path: s.yaml}}]\noutbound: [{name: o, listen: '127.0.0.1:1', service: a.b}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Admin.Listen != "127.0.0.1:15000" || cfg.Drain.Timeout.D() != 20*time.Second ||
		cfg.Outbound[0].Balancer != "round_robin" || cfg.Outbound[0].ConnectAttempts != 3 ||
		cfg.Outbound[0].ConnectTimeout.D() != 5*time.Second {
		t.Errorf("defaults not applied: %+v", cfg)
	}
}

func TestParseConfigErrorsNameFileLineAndField(t *testing.T) {
	const head = "discovery:\n  - {name: local, file: {path: s.yaml}}\n"
	tests := []struct {
		name string
		yaml string
		want []string // every line of the error, in order
	}{{
		name: "unknown field",
		yaml: head + "outbound:\n  - name: a\n    lisen: 127.0.0.1:9000\n",
		want: []string{`c.yaml:5: outbound[0].lisen: unknown field "lisen"`},
	}, {
		name: "wrong type",
		yaml: head + "outbound:\n  - name: a\n    listen: 127.0.0.1:9000\n    service: a.b\n    connect_attempts: many\n",
		want: []string{`c.yaml:7: outbound[0].connect_attempts: cannot use "many" as int`},
	}, {
		name: "bad duration",
		yaml: head + "outbound:\n  - name: a\n    listen: 127.0.0.1:9000\n    service: a.b\n    idle_timeout: 5 minutes\n",
		want: []string{`c.yaml:7: outbound[0].idle_timeout: invalid duration "5 minutes": write it like 500ms, 5s or 1m`},
	}, {
		name: "bad duration named at its own field even when the text repeats",
		yaml: "node: {name: 5x}\n" + head + "outbound:\n  - name: a\n    listen: 127.0.0.1:9000\n    service: a.b\n    idle_timeout: 5x\n",
		want: []string{`c.yaml:8: outbound[0].idle_timeout: invalid duration "5x": write it like 500ms, 5s or 1m`},
	}, {
		name: "yaml tags are refused, not a crash",
		yaml: "outbound: !x 1\n",
		want: []string{`c.yaml:1: outbound: YAML tag !x is not supported; remove it`},
	}, {
		name: "tag in a list",
		yaml: "discovery:\n  - !!str x\n",
		want: []string{`c.yaml:2: discovery[0]: YAML tag !!str is not supported; remove it`},
	}, {
		name: "several documents",
		yaml: head + "---\noutbound: []\n",
		want: []string{`c.yaml:3: the file holds 2 YAML documents; outrigger reads one (remove the --- separator)`},
	}, {
		name: "yaml syntax",
		yaml: head + "outbound: [\n",
		want: []string{`c.yaml:3: sequence end token ']' not found`},
	}, {
		name: "duplicate key",
		yaml: "node: {name: a}\nnode: {name: b}\n",
		want: []string{`c.yaml:2: mapping key "node" already defined at [1:1]`},
	}, {
		name: "every validation problem at once",
		yaml: `admin: {listen: "localhost"}
discovery:
  - {name: Local, file: {path: s.yaml}}
  - {name: b, priority: -1}
outbound:
  - name: a
    listen: 127.0.0.1:99999
    service: Orders
    balancer: rr
    connect_attempts: 9
  - name: a
    listen: 127.0.0.1:9000
    service: orders.shop
    protocol: http2
inbound:
  - name: app
    listen: 127.0.0.1:9000
    forward: localhost:8080
    protocol: udp
`,
		want: []string{
			`c.yaml:1: admin.listen: "localhost" is not host:port, like 127.0.0.1:9000`,
			`c.yaml:3: discovery[0].name: "Local" is not a DNS label (lower-case letters, digits and '-')`,
			`c.yaml:4: discovery[1].priority: must be 0 or more (0 is preferred)`,
			`c.yaml:4: discovery[1]: no backend set: add file: {path: services.yaml}`,
			`c.yaml:7: outbound[0].listen: "127.0.0.1:99999": port "99999" is not a number in 0..65535`,
			`c.yaml:8: outbound[0].service: invalid service key "Orders": want name.namespace, like orders.shop`,
			`c.yaml:9: outbound[0].balancer: unknown balancer "rr" (want round_robin or least_conn)`,
			`c.yaml:10: outbound[0].connect_attempts: 9 is out of range 1..5`,
			`c.yaml:11: outbound[1].name: duplicate listener name "a" (also outbound[0].name)`,
			`c.yaml:14: outbound[1].protocol: "http2" is not a protocol here: use http (HTTP/1.1, h2c, and h2 over tls), grpc, auto or tcp`,
			`c.yaml:17: inbound[0].listen: 127.0.0.1:9000 is already used by outbound[1].listen`,
			`c.yaml:18: inbound[0].forward: "localhost:8080" is not an ip:port address with a non-zero port, like 127.0.0.1:8080`,
			`c.yaml:19: inbound[0].protocol: unknown protocol "udp" (want tcp, http, grpc or auto)`,
		},
	}, {
		name: "missing required fields point at their block",
		yaml: "outbound:\n  - name: a\n    listen: 127.0.0.1:9000\n",
		want: []string{
			`c.yaml:1: discovery: outbound listeners need at least one discovery source; add one like {name: local, file: {path: services.yaml}}`,
			`c.yaml:2: outbound[0].service: required: the upstream service key, like orders.shop`,
		},
	}, {
		name: "http routes: problems named at their YAML lines",
		yaml: head + `outbound:
  - name: web
    listen: 127.0.0.1:9080
    protocol: http
    routes:
      - name: api
        match:
          path: {type: Prefix, value: api}
        backends: [{service: api.demo}]
      - name: bad
        match:
          path: {type: Regex, value: "(("}
          methods: [get]
        backends: [{service: Web}]
        rewrite_prefix: /x
  - name: tcp
    listen: 127.0.0.1:9000
    service: api.demo
    balancer: least_conn
    max_body_bytes: 10
`,
		want: []string{
			`c.yaml:10: outbound[0].routes[0].match.path.value: "api" must start with "/"`,
			"c.yaml:14: outbound[0].routes[1].match.path.value: error parsing regexp: missing closing ): `((`",
			`c.yaml:15: outbound[0].routes[1].match.methods[0]: "get" never matches: methods are case-sensitive (RFC 9110 §9.1); want "GET"`,
			`c.yaml:16: outbound[0].routes[1].backends[0].service: invalid service key "Web": want name.namespace, like orders.shop`,
			`c.yaml:17: outbound[0].routes[1].rewrite_prefix: needs a Prefix path match, not Regex`,
			`c.yaml:21: outbound[1].balancer: service api.demo already uses balancer round_robin (outbound[0].balancer); one service has one balancer`,
			`c.yaml:22: outbound[1].max_body_bytes: applies only to protocol: http, grpc or auto`,
		},
	}, {
		name: "http listener needs routes or a service",
		yaml: head + "outbound:\n  - {name: web, listen: '127.0.0.1:9080', protocol: http}\n",
		want: []string{`c.yaml:4: outbound[0].routes: required: an http listener needs routes, or a service for all requests`},
	}, {
		name: "nothing to proxy",
		yaml: "node: {name: a}\n",
		want: []string{`c.yaml:1: outbound: no listeners: add an outbound or inbound listener, or there is nothing to proxy`},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ParseConfig("c.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatalf("ParseConfig succeeded with %+v, want an error", cfg)
			}
			if diff := cmp.Diff(strings.Split(err.Error(), "\n"), tt.want); diff != "" {
				t.Errorf("errors (-got +want):\n%s", diff)
			}
		})
	}
}

func TestLoadConfigMissingFile(t *testing.T) {
	_, err := LoadConfig(filepath.Join(t.TempDir(), "nope.yaml"))
	if err == nil || !strings.Contains(err.Error(), "nope.yaml: no such file or directory") {
		t.Errorf("err = %v, want one naming the missing file", err)
	}
}

// The demo config must stay valid: make run and the docs depend on it.
func TestExamplesLocalConfigIsValid(t *testing.T) {
	path := filepath.Join("..", "..", "examples", "local", "outrigger.yaml")
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Outbound[0].Listen != "127.0.0.1:9000" || cfg.Admin.Listen != "127.0.0.1:15000" {
		t.Errorf("demo ports moved: outbound %s admin %s; docs and checks rely on 9000 and 15000",
			cfg.Outbound[0].Listen, cfg.Admin.Listen)
	}
}
