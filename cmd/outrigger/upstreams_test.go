package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/outrigger-mesh/outrigger/balancer"
	"github.com/outrigger-mesh/outrigger/resilience"
)

// upstreamsHead has a tcp listener to orders.shop and an http listener
// whose route sends to web.shop; the upstreams map follows from line 6.
const upstreamsHead = `discovery: [{name: local, file: {path: s.yaml}}]
outbound:
  - {name: o, listen: 127.0.0.1:9001, service: orders.shop, balancer: least_conn}
  - {name: w, listen: 127.0.0.1:9002, protocol: http, routes: [{backends: [{service: web.shop}]}]}
upstreams:
`

func TestParseConfigUpstreamsToBalancerConfig(t *testing.T) {
	cfg := mustParse(t, upstreamsHead+`  orders.shop:
    circuit_breaker: {consecutive_failures: 4, open: 30s, max_open: 5m, half_open_requests: 2}
    outlier_detection:
      consecutive_5xx: 6
      consecutive_gateway_errors: 3
      consecutive_local_origin_failures: 2
      base_ejection_time: 10s
      max_ejection_time: 1m
      max_ejection_percent: 30
    health_check:
      type: http
      interval: 2s
      timeout: 500ms
      jitter: 0
      healthy_threshold: 1
      unhealthy_threshold: 4
      http: {path: /healthz, host: orders.internal, expected_statuses: [200-299, "300-304"]}
  web.shop:
    circuit_breaker: {failure_ratio: 0.5, window: 20s, min_requests: 10}
    health_check: {type: grpc, grpc: {service: web.v1.Web}}
`)
	got, _ := serviceBalancers(cfg)
	want := map[string]balancer.Config{
		"orders.shop": {Service: "orders.shop", Policy: "least_conn",
			Breaker: &resilience.BreakerConfig{ConsecutiveFailures: 4, OpenTime: 30 * time.Second, MaxOpenTime: 5 * time.Minute, HalfOpenProbes: 2},
			Outlier: &resilience.OutlierConfig{Consecutive5xx: 6, ConsecutiveGatewayErrors: 3, ConsecutiveLocalOriginFailures: 2,
				BaseEjectionTime: 10 * time.Second, MaxEjectionTime: time.Minute, MaxEjectionShare: 0.3},
			Health: &resilience.HealthConfig{Protocol: "http", Interval: 2 * time.Second, Timeout: 500 * time.Millisecond,
				Jitter: -1, HealthyThreshold: 1, UnhealthyThreshold: 4, Path: "/healthz", Host: "orders.internal",
				StatusMin: 200, StatusMax: 304}},
		"web.shop": {Service: "web.shop", Policy: "round_robin",
			Breaker: &resilience.BreakerConfig{FailureRatio: 0.5, Window: 20 * time.Second, MinRequests: 10,
				OpenTime: 5 * time.Second, MaxOpenTime: 50 * time.Second, HalfOpenProbes: 1},
			Health: &resilience.HealthConfig{Protocol: "grpc", GRPCService: "web.v1.Web", Interval: 10 * time.Second,
				Timeout: time.Second, Jitter: 0.1, HealthyThreshold: 2, UnhealthyThreshold: 3}},
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("balancer configs (-got +want):\n%s", diff)
	}
	for svc, bc := range got {
		if err := bc.Validate(); err != nil {
			t.Errorf("%s: balancer rejects the config: %v", svc, err)
		}
	}
}

// A block with no trip condition turns on with the documented defaults,
// all filled in (so /config shows them); a service left out of upstreams
// has no resilience at all.
func TestParseConfigUpstreamsDefaults(t *testing.T) {
	cfg := mustParse(t, upstreamsHead+`  orders.shop:
    circuit_breaker: {}
    outlier_detection: {}
    health_check: {type: http}
  web.shop:
    circuit_breaker: {failure_ratio: 0.25, open: 1m}
    health_check: {type: tcp, jitter: 0}
`)
	got, _ := serviceBalancers(cfg)
	want := map[string]balancer.Config{
		"orders.shop": {Service: "orders.shop", Policy: "least_conn",
			Breaker: &resilience.BreakerConfig{ConsecutiveFailures: 5, OpenTime: 5 * time.Second, MaxOpenTime: 50 * time.Second, HalfOpenProbes: 1},
			Outlier: &resilience.OutlierConfig{Consecutive5xx: 5, BaseEjectionTime: 30 * time.Second, MaxEjectionTime: 5 * time.Minute, MaxEjectionShare: 0.5},
			Health: &resilience.HealthConfig{Protocol: "http", Interval: 10 * time.Second, Timeout: time.Second, Jitter: 0.1,
				HealthyThreshold: 2, UnhealthyThreshold: 3, Path: "/", StatusMin: 200, StatusMax: 399}},
		"web.shop": {Service: "web.shop", Policy: "round_robin",
			Breaker: &resilience.BreakerConfig{FailureRatio: 0.25, Window: 10 * time.Second, MinRequests: 20,
				OpenTime: time.Minute, MaxOpenTime: 10 * time.Minute, HalfOpenProbes: 1},
			Health: &resilience.HealthConfig{Protocol: "tcp", Interval: 10 * time.Second, Timeout: time.Second, Jitter: -1,
				HealthyThreshold: 2, UnhealthyThreshold: 3}},
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("balancer configs (-got +want):\n%s", diff)
	}
	// Filled in as the resilience package would: the same config either way.
	for svc, bc := range got {
		if bc.Health != nil && *bc.Health != bc.Health.WithDefaults() && bc.Health.Jitter >= 0 {
			t.Errorf("%s: health %+v differs from its resilience defaults %+v", svc, *bc.Health, bc.Health.WithDefaults())
		}
		if bc.Outlier != nil && *bc.Outlier != bc.Outlier.WithDefaults() {
			t.Errorf("%s: outlier %+v differs from its resilience defaults %+v", svc, *bc.Outlier, bc.Outlier.WithDefaults())
		}
	}
}

// A service that no entry names has no resilience at all.
func TestParseConfigNoUpstreamsNoResilience(t *testing.T) {
	got, _ := serviceBalancers(mustParse(t, strings.TrimSuffix(upstreamsHead, "upstreams:\n")))
	want := map[string]balancer.Config{
		"orders.shop": {Service: "orders.shop", Policy: "least_conn"},
		"web.shop":    {Service: "web.shop", Policy: "round_robin"},
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("balancer configs (-got +want):\n%s", diff)
	}
}

func TestParseConfigUpstreamsErrorsNameLineAndField(t *testing.T) {
	const f = "/etc/o.yaml"
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{name: "unknown field", yaml: "  orders.shop:\n    circuit_breaker: {consecutive_failure: 5}\n",
			want: []string{f + `:7: upstreams.'orders.shop'.circuit_breaker.consecutive_failure: unknown field "consecutive_failure"`}},
		{name: "unknown block", yaml: "  orders.shop:\n    retries: {attempts: 3}\n",
			want: []string{f + `:7: upstreams.'orders.shop'.retries: unknown field "retries"`}},
		{name: "not a number", yaml: "  orders.shop:\n    outlier_detection:\n      consecutive_5xx: many\n",
			want: []string{f + `:8: upstreams.'orders.shop'.outlier_detection.consecutive_5xx: cannot use "many" as int`}},
		{name: "bad durations", yaml: "  orders.shop:\n    circuit_breaker:\n      open: 30\n      max_open: -1m\n    health_check: {type: tcp, interval: soon}\n",
			want: []string{
				f + `:8: upstreams.'orders.shop'.circuit_breaker.open: invalid duration "30": write it like 500ms, 5s or 1m`,
				f + `:9: upstreams.'orders.shop'.circuit_breaker.max_open: must not be negative`,
				f + `:10: upstreams.'orders.shop'.health_check.interval: invalid duration "soon": write it like 500ms, 5s or 1m`,
			}},
		{name: "thresholds below 1", yaml: "  orders.shop:\n    circuit_breaker: {consecutive_failures: 0, half_open_requests: 9}\n" +
			"    outlier_detection: {consecutive_gateway_errors: -1}\n    health_check: {type: tcp, healthy_threshold: 0, unhealthy_threshold: 0}\n",
			want: []string{
				f + `:7: upstreams.'orders.shop'.circuit_breaker.consecutive_failures: 0: must be 1 or more (leave it out to trip on failure_ratio only)`,
				f + `:7: upstreams.'orders.shop'.circuit_breaker.half_open_requests: 9 is out of range 1..8`,
				f + `:8: upstreams.'orders.shop'.outlier_detection.consecutive_gateway_errors: -1: must be 1 or more`,
				f + `:9: upstreams.'orders.shop'.health_check.healthy_threshold: 0: must be 1 or more`,
				f + `:9: upstreams.'orders.shop'.health_check.unhealthy_threshold: 0: must be 1 or more`,
			}},
		{name: "count too large", yaml: "  orders.shop:\n    outlier_detection: {consecutive_5xx: 4294967301}\n",
			want: []string{f + `:7: upstreams.'orders.shop'.outlier_detection.consecutive_5xx: 4294967301 is too large (at most 2147483647)`}},
		{name: "ratio and percent out of range", yaml: "  orders.shop:\n    circuit_breaker: {failure_ratio: 50}\n" +
			"    outlier_detection:\n      max_ejection_percent: 0\n  web.shop:\n    outlier_detection: {max_ejection_percent: 101}\n    health_check: {type: tcp, jitter: 1.5}\n",
			want: []string{
				f + `:7: upstreams.'orders.shop'.circuit_breaker.failure_ratio: 50 is outside (0, 1]: write the share of failures that trips the breaker, like 0.5`,
				f + `:9: upstreams.'orders.shop'.outlier_detection.max_ejection_percent: 0 is out of range 1..100 (to eject nothing, remove outlier_detection)`,
				f + `:11: upstreams.'web.shop'.outlier_detection.max_ejection_percent: 101 is out of range 1..100 (to eject nothing, remove outlier_detection)`,
				f + `:12: upstreams.'web.shop'.health_check.jitter: 1.5 is outside [0, 1): write a share of the interval, like 0.1`,
			}},
		{name: "times out of order", yaml: "  orders.shop:\n    circuit_breaker: {open: 1m, max_open: 30s}\n    outlier_detection: {max_ejection_time: 10s}\n",
			want: []string{
				f + `:7: upstreams.'orders.shop'.circuit_breaker.max_open: 30s is less than open (1m0s)`,
				f + `:8: upstreams.'orders.shop'.outlier_detection.max_ejection_time: 10s is less than base_ejection_time (30s)`,
			}},
		{name: "ratio settings without a ratio", yaml: "  orders.shop:\n    circuit_breaker: {window: 5s, min_requests: 3}\n",
			want: []string{
				f + `:7: upstreams.'orders.shop'.circuit_breaker.window: applies only with failure_ratio`,
				f + `:7: upstreams.'orders.shop'.circuit_breaker.min_requests: applies only with failure_ratio`,
			}},
		{name: "health check type", yaml: "  orders.shop:\n    health_check: {interval: 1s}\n  web.shop:\n    health_check:\n      type: udp\n",
			want: []string{
				f + `:7: upstreams.'orders.shop'.health_check.type: required: tcp, http, grpc`,
				f + `:10: upstreams.'web.shop'.health_check.type: unknown health check type "udp" (want tcp, http, grpc)`,
			}},
		{name: "protocol blocks of another type", yaml: "  orders.shop:\n    health_check:\n      type: tcp\n      http: {path: /}\n      grpc: {service: x}\n",
			want: []string{
				f + `:9: upstreams.'orders.shop'.health_check.http: applies only to type: http`,
				f + `:10: upstreams.'orders.shop'.health_check.grpc: applies only to type: grpc`,
			}},
		{name: "expected statuses", yaml: "  orders.shop:\n    health_check:\n      type: http\n      http:\n        path: healthz\n        expected_statuses: [200, 600]\n" +
			"  web.shop:\n    health_check: {type: http, http: {expected_statuses: [200-299, 500-599]}}\n",
			want: []string{
				f + `:10: upstreams.'orders.shop'.health_check.http.path: "healthz" does not start with /`,
				f + `:11: upstreams.'orders.shop'.health_check.http.expected_statuses: "600" is not a status range within 100-599`,
				f + `:13: upstreams.'web.shop'.health_check.http.expected_statuses: 200-299 and 500-599 leave a gap: list statuses that form one range, like 200-399 (separate ranges are not supported yet)`,
			}},
		{name: "malformed status", yaml: "  orders.shop:\n    health_check: {type: http, http: {expected_statuses: [2xx]}}\n",
			want: []string{f + `:7: upstreams.'orders.shop'.health_check.http.expected_statuses: "2xx" is not a status code or a range like 200-399`}},
		{name: "service nothing sends to", yaml: "  orders.shop: {}\n  payments.shop:\n    circuit_breaker: {}\n",
			want: []string{f + `:7: upstreams.'payments.shop': no outbound listener or route sends to service payments.shop; remove this entry or fix the name`}},
		{name: "bad service key", yaml: "  Orders:\n    circuit_breaker: {}\n",
			want: []string{f + `:6: upstreams.Orders: invalid service key "Orders": want name.namespace, like orders.shop`}},
		{name: "duplicate service", yaml: "  orders.shop: {}\n  orders.shop: {}\n",
			want: []string{f + `:7: mapping key "orders.shop" already defined at [6:3]`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig(f, []byte(upstreamsHead+tc.yaml))
			if err == nil {
				t.Fatalf("no error for\n%s", tc.yaml)
			}
			if diff := cmp.Diff(strings.Split(err.Error(), "\n"), tc.want); diff != "" {
				t.Errorf("errors (-got +want):\n%s", diff)
			}
		})
	}
}

// Resilience written on a listener, as some proxies have it, is refused
// with a pointer to where it belongs.
func TestParseConfigResilienceOnListenerPointsToUpstreams(t *testing.T) {
	_, err := ParseConfig("o.yaml", []byte(`discovery: [{name: local, file: {path: s.yaml}}]
outbound:
  - name: o
    listen: 127.0.0.1:9001
    service: orders.shop
    outlier_detection: {consecutive_5xx: 5}
`))
	want := `o.yaml:6: outbound[0].outlier_detection: unknown field "outlier_detection"; outlier_detection is set per upstream service, ` +
		`shared by every listener and route that sends to it: upstreams: {<name.namespace>: {outlier_detection: {...}}}`
	if err == nil || err.Error() != want {
		t.Errorf("error:\n%v\nwant:\n%s", err, want)
	}
}

func TestStatusRange(t *testing.T) {
	for _, tc := range []struct {
		in     []string
		lo, hi int
		bad    bool
	}{
		{in: nil},
		{in: []string{"200"}, lo: 200, hi: 200},
		{in: []string{"200-399"}, lo: 200, hi: 399},
		{in: []string{"300-399", "200-299"}, lo: 200, hi: 399},
		{in: []string{"200-250", "240-260", "261"}, lo: 200, hi: 261},
		{in: []string{"204", "200"}, bad: true},
		{in: []string{"399-200"}, bad: true},
		{in: []string{"99"}, bad: true},
		{in: []string{"200-"}, bad: true},
	} {
		lo, hi, err := statusRange(tc.in)
		if (err != nil) != tc.bad || lo != tc.lo || hi != tc.hi {
			t.Errorf("statusRange(%q) = %d, %d, %v; want %d, %d, error %v", tc.in, lo, hi, err, tc.lo, tc.hi, tc.bad)
		}
	}
}

// The example in docs/configuration.md's Resilience section is valid.
func TestDocsResilienceExampleIsValid(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "## Resilience (`upstreams`)")
	_, example, ok2 := strings.Cut(section, "```yaml\n")
	example, _, ok3 := strings.Cut(example, "```")
	if !ok || !ok2 || !ok3 || !strings.HasPrefix(example, "upstreams:\n") {
		t.Fatalf("no upstreams example in the Resilience section")
	}
	cfg := mustParse(t, `discovery: [{name: local, file: {path: s.yaml}}]
outbound:
  - {name: o, listen: 127.0.0.1:9001, service: orders.shop}
  - {name: p, listen: 127.0.0.1:9002, protocol: grpc, service: payments.shop}
`+example)
	got, _ := serviceBalancers(cfg)
	if b := got["orders.shop"]; b.Breaker == nil || b.Outlier == nil || b.Health == nil || got["payments.shop"].Health == nil {
		t.Errorf("example did not configure every block: %+v", got)
	}
}

// /config shows an upstream's settings with every default filled in.
func TestUpstreamsConfigViewShowsDefaults(t *testing.T) {
	cfg := mustParse(t, upstreamsHead+"  orders.shop:\n    circuit_breaker: {}\n    health_check: {type: http}\n")
	got, err := json.Marshal(cfg.Upstreams)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"orders.shop":{"circuit_breaker":{"consecutive_failures":5,"open":"5s","max_open":"50s","half_open_requests":1},` +
		`"health_check":{"type":"http","interval":"10s","timeout":"1s","jitter":0.1,"healthy_threshold":2,"unhealthy_threshold":3,` +
		`"http":{"path":"/","expected_statuses":["200-399"]}}}}`
	if string(got) != want {
		t.Errorf("upstreams as /config shows them:\n%s\nwant:\n%s", got, want)
	}
}
