package main

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/outrigger-mesh/outrigger/proxy"
	"github.com/outrigger-mesh/outrigger/resilience"
)

// limitsConfig has an http listener w with two routes to web.shop, whose
// route lines start at line 5, and a tcp listener to orders.shop.
const limitsConfig = `discovery: [{name: local, file: {path: s.yaml}}]
outbound:
  - {name: o, listen: 127.0.0.1:9001, service: orders.shop}
  - name: w
    listen: 127.0.0.1:9002
    protocol: http
    routes:
      - name: api
        match: {path: {value: /api}}
        backends: [{service: web.shop}]
        circuit_breaker: {consecutive_failures: 3, open: 10s}
        rate_limit: {rate: 100, burst: 20}
        rate_limit_per_client: {rate: 2.5}
        max_requests: 50
      - name: rest
        backends: [{service: web.shop}]
upstreams:
  web.shop: {max_requests: 200, max_connections: 64}
`

func TestParseConfigLimits(t *testing.T) {
	cfg := mustParse(t, limitsConfig)
	w := cfg.Outbound[1]
	got := []proxy.RouteLimitsConfig{w.Routes[0].routeLimits(), w.Routes[1].routeLimits()}
	want := []proxy.RouteLimitsConfig{{
		// The upstream breaker's defaults fill what the block leaves out.
		Breaker: resilience.BreakerConfig{ConsecutiveFailures: 3, OpenTime: 10 * time.Second,
			MaxOpenTime: 100 * time.Second, HalfOpenProbes: 1},
		RateLimit:   resilience.RateLimitConfig{Rate: 100, Burst: 20},
		PerClient:   resilience.RateLimitConfig{Rate: 2.5, Burst: 3}, // burst ⌈rate⌉
		MaxRequests: 50,
	}, {}}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("route limits (-got +want):\n%s", diff)
	}
	for _, rc := range got {
		if err := rc.Validate(); err != nil {
			t.Errorf("proxy rejects %+v: %v", rc, err)
		}
	}
	if got, want := serviceLimits(cfg.Upstreams["web.shop"]), (proxy.ServiceLimitsConfig{MaxRequests: 200, MaxConnections: 64}); got != want {
		t.Errorf("service limits %+v, want %+v", got, want)
	}
	if got := serviceLimits(cfg.Upstreams["orders.shop"]); got != (proxy.ServiceLimitsConfig{}) {
		t.Errorf("orders.shop has no entry, got limits %+v", got)
	}
}

func TestParseConfigLimitsErrorsNameLineAndField(t *testing.T) {
	const f = "/etc/o.yaml"
	for _, tc := range []struct {
		name, old, new string
		want           []string
	}{
		{"rate zero", "rate_limit: {rate: 100, burst: 20}", "rate_limit: {rate: 0, burst: 0}", []string{
			f + `:12: outbound[1].routes[0].rate_limit.rate: 0: must be more than 0 (to turn the limit off, remove the block)`,
			f + `:12: outbound[1].routes[0].rate_limit.burst: 0 is out of range 1..2147483647`}},
		{"rate missing", "rate_limit_per_client: {rate: 2.5}", "rate_limit_per_client: {burst: 5}", []string{
			f + `:13: outbound[1].routes[0].rate_limit_per_client.rate: required: requests per second, like 100 or 0.5`}},
		{"rate not a number", "rate_limit: {rate: 100, burst: 20}", "rate_limit: {rate: lots}", []string{
			f + `:12: outbound[1].routes[0].rate_limit.rate: cannot use "lots" as float64`}},
		{"negative max_requests", "max_requests: 50", "max_requests: -1", []string{
			f + `:14: outbound[1].routes[0].max_requests: -1: must be 0 (no limit) or more`}},
		{"route breaker", "{consecutive_failures: 3, open: 10s}", "{consecutive_failures: 0, open: soon}", []string{
			f + `:11: outbound[1].routes[0].circuit_breaker.consecutive_failures: 0: must be 1 or more (leave it out to trip on failure_ratio only)`,
			f + `:11: outbound[1].routes[0].circuit_breaker.open: invalid duration "soon": write it like 500ms, 5s or 1m`}},
		{"limits on a fixed route", "      - name: rest\n        backends: [{service: web.shop}]",
			"      - name: rest\n        fixed: {status: 204}\n        max_requests: 3", []string{
				f + `:17: outbound[1].routes[1].max_requests: applies only to routes with backends (a redirect or fixed response sends nothing upstream)`}},
		{"upstream limits", "{max_requests: 200, max_connections: 64}", "{max_requests: -2, max_connections: -3}", []string{
			f + `:18: upstreams.'web.shop'.max_requests: -2: must be 0 (no limit) or more`,
			f + `:18: upstreams.'web.shop'.max_connections: -3: must be 0 (no limit) or more`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(limitsConfig, tc.old) {
				t.Fatalf("case edits text that is not there: %q", tc.old)
			}
			_, err := ParseConfig(f, []byte(strings.Replace(limitsConfig, tc.old, tc.new, 1)))
			if err == nil {
				t.Fatal("no error")
			}
			if diff := cmp.Diff(strings.Split(err.Error(), "\n"), tc.want); diff != "" {
				t.Errorf("errors (-got +want):\n%s", diff)
			}
		})
	}
}

// TestLimitsStateAcrossReloads: an unchanged route keeps its state, a
// changed one starts afresh, a service's limits change in place, and a
// service that becomes limited makes its listeners update.
func TestLimitsStateAcrossReloads(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	old := mustParse(t, limitsConfig)
	var s limitsState
	a1 := s.admission(old, old.Outbound[1], log)
	if a1 == nil || a1.Routes[0] == nil || a1.Routes[1] != nil || a1.Services["web.shop"] == nil {
		t.Fatalf("admission %+v: want route api and service web.shop limited", a1)
	}
	s.commit(old)

	// Same limits, another route changed: api keeps its state.
	next := mustParse(t, strings.Replace(limitsConfig, "- name: rest", "- name: rest2", 1))
	a2 := s.admission(next, next.Outbound[1], log)
	if a2.Routes[0] != a1.Routes[0] {
		t.Error("unchanged route api got a new state")
	}
	// api's limits changed: fresh state.
	next = mustParse(t, strings.Replace(limitsConfig, "max_requests: 50", "max_requests: 51", 1))
	if a3 := s.admission(next, next.Outbound[1], log); a3.Routes[0] == a1.Routes[0] {
		t.Error("route api with new limits kept its old state")
	}

	// The service's limits change in place at commit, its object stays.
	next = mustParse(t, strings.Replace(limitsConfig, "max_connections: 64", "max_connections: 65", 1))
	d := diffConfig(old, next)
	if diff := cmp.Diff(d.listenersUpdate, []string{"w"}); diff != "" {
		t.Errorf("listeners updated (-got +want):\n%s", diff)
	}
	a4 := s.admission(next, next.Outbound[1], log)
	if a4.Services["web.shop"] != a1.Services["web.shop"] {
		t.Error("web.shop got a new limits object")
	}

	// No limits at all: no admission, and the diff from none to some
	// updates the listener.
	bare := mustParse(t, `discovery: [{name: local, file: {path: s.yaml}}]
outbound:
  - {name: w, listen: 127.0.0.1:9002, protocol: http, service: web.shop}
`)
	var s2 limitsState
	if a := s2.admission(bare, bare.Outbound[0], log); a != nil {
		t.Errorf("admission without limits: %+v, want nil", a)
	}
	limited := mustParse(t, strings.Replace(`discovery: [{name: local, file: {path: s.yaml}}]
outbound:
  - {name: w, listen: 127.0.0.1:9002, protocol: http, service: web.shop}
`, "", "", 1)+"upstreams:\n  web.shop: {max_requests: 1}\n")
	if diff := cmp.Diff(diffConfig(bare, limited).listenersUpdate, []string{"w"}); diff != "" {
		t.Errorf("listeners updated when web.shop becomes limited (-got +want):\n%s", diff)
	}
}

// A reload prepared and then failed (a bind error) leaves the running route
// states as they were: the next good reload, whose route equals the
// running one, keeps its breaker, buckets and in-flight count.
func TestLimitsStateSurvivesFailedReload(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	old := mustParse(t, limitsConfig)
	var s limitsState
	s.begin()
	a1 := s.admission(old, old.Outbound[1], log)
	s.commit(old)

	s.begin()
	bad := mustParse(t, strings.Replace(limitsConfig, "max_requests: 50", "max_requests: 51", 1))
	if a := s.admission(bad, bad.Outbound[1], log); a.Routes[0] == a1.Routes[0] {
		t.Fatal("a changed route kept its state")
	}
	// no commit: the reload failed

	s.begin()
	next := mustParse(t, strings.Replace(limitsConfig, "- name: rest", "- name: rest2", 1))
	a2 := s.admission(next, next.Outbound[1], log)
	if a2.Routes[0] != a1.Routes[0] {
		t.Fatal("route api, unchanged against the running config, lost its state after a failed reload")
	}
	s.commit(next)
	if got := s.routes[routeLimitsKey(next.Outbound[1].Name, "api", 0)].rl; got != a1.Routes[0] {
		t.Error("after the commit, api's running state is not the kept one")
	}
}
