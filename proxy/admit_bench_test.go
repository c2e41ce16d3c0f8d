package proxy

import (
	"testing"

	"github.com/outrigger-mesh/outrigger/resilience"
)

// BenchmarkHTTPFastPathAdmit is BenchmarkHTTPFastPath with every
// admission feature configured but not firing: a route breaker, route and
// per-client rate limits, route and service in-flight limits and a
// service connection limit. allocs/op must stay 0 on the fast path.
//
//	go test -run '^$' -bench BenchmarkHTTPFastPath -benchmem ./proxy
func BenchmarkHTTPFastPathAdmit(b *testing.B) {
	be := startBenchBackend(b)
	for _, bc := range benchEngines {
		b.Run(bc.name, func(b *testing.B) {
			lots := resilience.RateLimitConfig{Rate: 1e9, Burst: 1e9}
			adm := &Admission{
				Routes: []*RouteLimits{NewRouteLimits("all", RouteLimitsConfig{
					Breaker:     resilience.BreakerConfig{ConsecutiveFailures: 5},
					RateLimit:   lots,
					PerClient:   lots,
					MaxRequests: 1000,
				}, nil)},
				Services: map[string]*ServiceLimits{"web.shop": NewServiceLimits(ServiceLimitsConfig{MaxRequests: 1000, MaxConnections: 1000})},
			}
			p := startAdmitProxy(b, bc.cfg, Upstreams{"web.shop": StaticUpstream("web", be)}, adm)
			benchRoundTrips(b, p.addr, benchRequest, nil)
		})
	}
}
