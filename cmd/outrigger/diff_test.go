package main

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// diffBase is the config every diff case edits.
const diffBase = `node: {name: n1, cluster: east, zone: a}
admin: {listen: 127.0.0.1:15001}
drain: {timeout: 3s}
discovery:
  - {name: local, file: {path: services.yaml}}
  - {name: other, priority: 1, file: {path: other.yaml}}
outbound:
  - {name: orders, listen: 127.0.0.1:9001, service: orders.shop, balancer: least_conn}
  - name: web
    listen: 127.0.0.1:9080
    protocol: http
    routes:
      - {match: {path: {value: /api}}, backends: [{service: api.shop}]}
      - {match: {path: {value: /}}, backends: [{service: web.shop}]}
inbound:
  - {name: app, listen: 127.0.0.1:15006, forward: 127.0.0.1:8080}
`

// diffView is configDiff with exported fields, for cmp.
type diffView struct {
	Restart                                []string
	SourcesStop, SourcesStart              []string
	ServicesStop                           []string
	ServicesStart                          map[string]string
	ListenersRemove, ListenersAdd, Updated []string
	Drain                                  bool
}

func view(d configDiff) diffView {
	v := diffView{Restart: d.restart, SourcesStop: d.sourcesStop, ServicesStop: d.servicesStop,
		ServicesStart: map[string]string{}, ListenersRemove: d.listenersRemove, ListenersAdd: d.listenersAdd,
		Updated: d.listenersUpdate, Drain: d.drain}
	for _, s := range d.sourcesStart {
		v.SourcesStart = append(v.SourcesStart, s.Name)
	}
	for svc, bc := range d.servicesStart {
		v.ServicesStart[svc] = bc.Policy
	}
	return v
}

func mustParse(t *testing.T, yaml string) *Config {
	t.Helper()
	cfg, err := ParseConfig("/etc/outrigger/outrigger.yaml", []byte(yaml))
	if err != nil {
		t.Fatalf("%v\n%s", err, yaml)
	}
	return cfg
}

func TestDiffConfig(t *testing.T) {
	edit := func(pairs ...string) string {
		s := diffBase
		for i := 0; i < len(pairs); i += 2 {
			if !strings.Contains(s, pairs[i]) {
				panic("diff case edits text that is not there: " + pairs[i])
			}
			s = strings.Replace(s, pairs[i], pairs[i+1], 1)
		}
		return s
	}
	routesChanged := diffView{Updated: []string{"web"}}
	for _, tc := range []struct {
		name string
		next string
		want diffView
	}{
		{name: "same", next: diffBase},
		{name: "comments and order of keys only", next: edit("{name: local, file: {path: services.yaml}}", "{file: {path: services.yaml}, name: local} # moved")},
		{name: "node and admin need a restart", next: edit("zone: a", "zone: b", "15001", "15002"),
			want: diffView{Restart: []string{"node", "admin.listen"}}},
		{name: "drain", next: edit("timeout: 3s", "timeout: 4s"), want: diffView{Drain: true}},
		{name: "tcp listener timeout updates in place", next: edit("balancer: least_conn}", "balancer: least_conn, connect_timeout: 1s}"),
			want: diffView{Updated: []string{"orders"}}},
		{name: "tcp listener to another service", next: edit("service: orders.shop", "service: orders2.shop"),
			want: diffView{ServicesStop: []string{"orders.shop"}, ServicesStart: map[string]string{"orders2.shop": "least_conn"}, Updated: []string{"orders"}}},
		{name: "balancer policy rebuilds the balancer", next: edit("balancer: least_conn", "balancer: round_robin"),
			want: diffView{ServicesStop: []string{"orders.shop"}, ServicesStart: map[string]string{"orders.shop": "round_robin"}, Updated: []string{"orders"}}},
		{name: "new address is a new listener", next: edit("127.0.0.1:9001", "127.0.0.1:9002"),
			want: diffView{ListenersRemove: []string{"orders"}, ListenersAdd: []string{"orders"}}},
		{name: "new protocol is a new listener", next: edit("balancer: least_conn}", "balancer: least_conn, protocol: http}"),
			want: diffView{ListenersRemove: []string{"orders"}, ListenersAdd: []string{"orders"}}},
		{name: "renamed listener", next: edit("name: orders,", "name: orders2,"),
			want: diffView{ListenersRemove: []string{"orders"}, ListenersAdd: []string{"orders2"}}},
		{name: "listener added", next: diffBase + "  - {name: app2, listen: 127.0.0.1:15007, forward: 127.0.0.1:8081}\n",
			want: diffView{ListenersAdd: []string{"app2"}}},
		{name: "listener and its service removed", next: edit("  - {name: orders, listen: 127.0.0.1:9001, service: orders.shop, balancer: least_conn}\n", ""),
			want: diffView{ServicesStop: []string{"orders.shop"}, ListenersRemove: []string{"orders"}}},
		{name: "inbound forward updates in place", next: edit("forward: 127.0.0.1:8080", "forward: 127.0.0.1:8081"),
			want: diffView{Updated: []string{"app"}}},
		{name: "http routes", next: edit("value: /api}", "value: /v2}"), want: routesChanged},
		{name: "http route timeout updates in place", next: edit("backends: [{service: api.shop}]}", "backends: [{service: api.shop}], timeout: 2s}"), want: routesChanged},
		{name: "http route to a new service", next: edit("service: api.shop", "service: api2.shop"),
			want: func() diffView {
				v := routesChanged
				v.ServicesStop, v.ServicesStart = []string{"api.shop"}, map[string]string{"api2.shop": "round_robin"}
				return v
			}()},
		{name: "http connection settings replace the listener", next: edit("protocol: http\n", "protocol: http\n    header_timeout: 1s\n"),
			want: diffView{ListenersRemove: []string{"web"}, ListenersAdd: []string{"web"}}},
		{name: "source path changed restarts it", next: edit("path: other.yaml", "path: other2.yaml"),
			want: diffView{SourcesStop: []string{"other"}, SourcesStart: []string{"other"}}},
		{name: "source priority changed restarts it", next: edit("priority: 1", "priority: 2"),
			want: diffView{SourcesStop: []string{"other"}, SourcesStart: []string{"other"}}},
		{name: "source added and removed", next: edit("name: other,", "name: third,"),
			want: diffView{SourcesStop: []string{"other"}, SourcesStart: []string{"third"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := diffConfig(mustParse(t, diffBase), mustParse(t, tc.next))
			if diff := cmp.Diff(view(d), tc.want, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("diff (-got +want):\n%s", diff)
			}
			wantEmpty := tc.want.Drain == false && len(tc.want.Updated)+len(tc.want.ListenersAdd)+len(tc.want.ListenersRemove)+
				len(tc.want.ServicesStart)+len(tc.want.ServicesStop)+len(tc.want.SourcesStart)+len(tc.want.SourcesStop) == 0
			if d.empty() != wantEmpty {
				t.Errorf("empty() = %v, want %v", d.empty(), wantEmpty)
			}
		})
	}
}

// From nothing, everything starts.
func TestDiffConfigFromNothing(t *testing.T) {
	d := diffConfig(nil, mustParse(t, diffBase))
	want := diffView{
		SourcesStart:  []string{"local", "other"},
		ServicesStart: map[string]string{"orders.shop": "least_conn", "api.shop": "round_robin", "web.shop": "round_robin"},
		ListenersAdd:  []string{"orders", "web", "app"},
	}
	if diff := cmp.Diff(view(d), want, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("diff (-got +want):\n%s", diff)
	}
	if got := d.summary(); !strings.Contains(got, "listeners added: orders,web,app") || !strings.Contains(got, "sources started: local,other") {
		t.Errorf("summary %q", got)
	}
}

// An auto listener swaps its routes in place, but its service is also where
// its connections that are not HTTP go, so a new service replaces it.
func TestDiffConfigAutoListener(t *testing.T) {
	base := `discovery: [{name: local, file: {path: services.yaml}}]
outbound:
  - name: auto
    listen: 127.0.0.1:9001
    protocol: auto
    service: tcp.shop
    routes: [{match: {path: {value: /}}, backends: [{service: web.shop}]}]
`
	for _, tc := range []struct {
		name, from, to string
		want           diffView
	}{
		{name: "routes", from: "value: /}", to: "value: /v2}", want: diffView{Updated: []string{"auto"}}},
		{name: "service", from: "service: tcp.shop", to: "service: tcp2.shop", want: diffView{
			ServicesStop: []string{"tcp.shop"}, ServicesStart: map[string]string{"tcp2.shop": "round_robin"},
			ListenersRemove: []string{"auto"}, ListenersAdd: []string{"auto"}}},
		{name: "sniff timeout", from: "protocol: auto\n", to: "protocol: auto\n    sniff_timeout: 2s\n", want: diffView{
			ListenersRemove: []string{"auto"}, ListenersAdd: []string{"auto"}}},
		// Its service's balancer is also its fallback for connections that
		// are not HTTP, fixed when the listener is built.
		{name: "resilience of its service", from: "web.shop}]}]\n", to: "web.shop}]}]\nupstreams: {tcp.shop: {circuit_breaker: {}}}\n", want: diffView{
			ServicesStop: []string{"tcp.shop"}, ServicesStart: map[string]string{"tcp.shop": "round_robin"},
			ListenersRemove: []string{"auto"}, ListenersAdd: []string{"auto"}}},
		{name: "resilience of a route's service", from: "web.shop}]}]\n", to: "web.shop}]}]\nupstreams: {web.shop: {circuit_breaker: {}}}\n", want: diffView{
			ServicesStop: []string{"web.shop"}, ServicesStart: map[string]string{"web.shop": "round_robin"}, Updated: []string{"auto"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := diffConfig(mustParse(t, base), mustParse(t, strings.Replace(base, tc.from, tc.to, 1)))
			if diff := cmp.Diff(view(d), tc.want, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("diff (-got +want):\n%s", diff)
			}
		})
	}
}

// A service's resilience settings rebuild its balancer (and update the
// listeners that send to it, to hand them the new one); other services
// keep their balancers and so their endpoints' state.
func TestDiffConfigUpstreams(t *testing.T) {
	const ups = "upstreams:\n  orders.shop:\n    circuit_breaker: {consecutive_failures: 5}\n  web.shop:\n    health_check: {type: tcp}\n"
	base := diffBase + ups
	for _, tc := range []struct {
		name, from, to string
		want           diffView
	}{
		{name: "same settings, other spelling", from: "{consecutive_failures: 5}", to: "\n      consecutive_failures: 5 # same"},
		{name: "breaker changed", from: "consecutive_failures: 5", to: "consecutive_failures: 3",
			want: diffView{ServicesStop: []string{"orders.shop"}, ServicesStart: map[string]string{"orders.shop": "least_conn"}, Updated: []string{"orders"}}},
		{name: "health check changed on a route's service", from: "{type: tcp}", to: "{type: tcp, interval: 1s}",
			want: diffView{ServicesStop: []string{"web.shop"}, ServicesStart: map[string]string{"web.shop": "round_robin"}, Updated: []string{"web"}}},
		{name: "entry removed", from: "  web.shop:\n    health_check: {type: tcp}\n", to: "",
			want: diffView{ServicesStop: []string{"web.shop"}, ServicesStart: map[string]string{"web.shop": "round_robin"}, Updated: []string{"web"}}},
		{name: "entry added", from: "  web.shop:\n", to: "  api.shop: {outlier_detection: {}}\n  web.shop:\n",
			want: diffView{ServicesStop: []string{"api.shop"}, ServicesStart: map[string]string{"api.shop": "round_robin"}, Updated: []string{"web"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(base, tc.from) {
				t.Fatalf("case edits text that is not there: %q", tc.from)
			}
			d := diffConfig(mustParse(t, base), mustParse(t, strings.Replace(base, tc.from, tc.to, 1)))
			if diff := cmp.Diff(view(d), tc.want, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("diff (-got +want):\n%s", diff)
			}
		})
	}
	// From a config without upstreams, adding them is a change too.
	d := diffConfig(mustParse(t, diffBase), mustParse(t, base))
	want := diffView{ServicesStop: []string{"orders.shop", "web.shop"},
		ServicesStart: map[string]string{"orders.shop": "least_conn", "web.shop": "round_robin"}, Updated: []string{"orders", "web"}}
	if diff := cmp.Diff(view(d), want, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("upstreams added: diff (-got +want):\n%s", diff)
	}
}
