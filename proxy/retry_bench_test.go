package proxy

import (
	"testing"

	"github.com/outrigger-mesh/outrigger/resilience"
)

// BenchmarkHTTPFastPathRetry is BenchmarkHTTPFastPath's fast case with a
// retry policy and budget configured that never fire (every response is
// 200): the per-request cost of retries being on, which must stay at zero
// allocations.
//
//	go test -run '^$' -bench BenchmarkHTTPFastPath -benchmem ./proxy
func BenchmarkHTTPFastPathRetry(b *testing.B) {
	be := startBenchBackend(b)
	r := newRetry(b, resilience.RetryConfig{Attempts: 3, On: []string{resilience.Retry5xx}}, resilience.BudgetConfig{})
	p := startHTTPProxy(b, HTTPConfig{}, routeAll(b, "web.shop"),
		Upstreams{"web.shop": WithRetry(StaticUpstream("web", be), r, nil)}, ServerConfig{})
	benchRoundTrips(b, p.addr, benchRequest, nil)
}
