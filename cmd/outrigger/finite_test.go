package main

import (
	"strings"
	"testing"
)

// NaN and infinities pass range checks written as "v < lo || v > hi";
// every float field refuses them, with its file:line.
func TestConfigRefusesNonFiniteFloats(t *testing.T) {
	const f = "/etc/o.yaml"
	cfg := `discovery: [{name: local, file: {path: s.yaml}}]
outbound:
  - name: web
    listen: 127.0.0.1:9002
    protocol: http
    routes:
      - name: api
        backends: [{service: web.shop}]
        rate_limit: {rate: .nan}
upstreams:
  web.shop:
    circuit_breaker: {failure_ratio: .nan}
    retry: {attempts: 2, budget: {percent: .inf, min_per_second: -.inf}}
tracing: {endpoint: "http://127.0.0.1:4317", sampler_ratio: .NaN}
access_log: {path: stdout, sample: .nan}
`
	_, err := ParseConfig(f, []byte(cfg))
	if err == nil {
		t.Fatal("a config with NaN and Inf values validated")
	}
	for _, want := range []string{
		f + ":9: outbound[0].routes[0].rate_limit.rate: NaN is not a finite number",
		f + ":12: upstreams.'web.shop'.circuit_breaker.failure_ratio: NaN is not a finite number",
		f + ":13: upstreams.'web.shop'.retry.budget.percent: +Inf is not a finite number",
		f + ":13: upstreams.'web.shop'.retry.budget.min_per_second: -Inf is not a finite number",
		f + ":14: tracing.sampler_ratio: NaN is not a finite number",
		f + ":15: access_log.sample: NaN is not a finite number",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %q:\n%v", want, err)
		}
	}
}
