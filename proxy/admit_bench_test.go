package proxy

import (
	"bytes"
	"net"
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
	body := bytes.Repeat([]byte("x"), 1<<10)
	resp := append([]byte("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 1024\r\n\r\n"), body...)
	be := startRawBackend(b, resp)
	for _, bc := range []struct {
		name string
		cfg  HTTPConfig
	}{
		{"fast", HTTPConfig{}},
		{"nethttp", HTTPConfig{NetHTTPOnly: true}},
	} {
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
			c, err := net.Dial("tcp", p.addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			req := []byte("GET /bench HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\n\r\n")
			buf := make([]byte, 8<<10)
			roundTrip := func(want int) int {
				if _, err := c.Write(req); err != nil {
					b.Fatal(err)
				}
				n := 0
				for {
					m, err := c.Read(buf[n:])
					n += m
					if err != nil {
						b.Fatal(err)
					}
					if want > 0 && n >= want {
						return n
					}
					if want == 0 {
						if i := bytes.Index(buf[:n], []byte("\r\n\r\n")); i >= 0 && n >= i+4+len(body) {
							return n
						}
					}
				}
			}
			size := roundTrip(0)
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if n := roundTrip(size); n != size {
					b.Fatalf("response of %d bytes, want %d", n, size)
				}
			}
		})
	}
}
