package proxy

import (
	"bytes"
	"net"
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
	body := bytes.Repeat([]byte("x"), 1<<10)
	resp := append([]byte("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 1024\r\n\r\n"), body...)
	be := startRawBackend(b, resp)
	r := newRetry(b, resilience.RetryConfig{Attempts: 3, On: []string{resilience.Retry5xx}}, resilience.BudgetConfig{})
	p := startHTTPProxy(b, HTTPConfig{}, routeAll(b, "web.shop"),
		Upstreams{"web.shop": WithRetry(StaticUpstream("web", be), r, nil)}, ServerConfig{})
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	req := []byte("GET /bench HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\n\r\n")
	buf := make([]byte, 8<<10)
	roundTrip := func() {
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
			if i := bytes.Index(buf[:n], []byte("\r\n\r\n")); i >= 0 && n >= i+4+len(body) {
				return
			}
		}
	}
	roundTrip()
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		roundTrip()
	}
}
