package proxy

import (
	"bytes"
	"testing"
)

// BenchmarkHTTPFastPathWhy is BenchmarkHTTPFastPath with every request
// asking for its trail: the fast path writes it into the connection's
// write buffer, so it should allocate nothing either.
func BenchmarkHTTPFastPathWhy(b *testing.B) {
	be := startBenchBackend(b)
	req := "GET /bench HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\nX-Outrigger-Debug: why\r\n\r\n"
	for _, bc := range benchEngines {
		b.Run(bc.name, func(b *testing.B) {
			p := startHTTPProxy(b, bc.cfg, routeAll(b, "web.shop"), Upstreams{"web.shop": StaticUpstream("web", be)}, ServerConfig{})
			benchRoundTrips(b, p.addr, req, func(first []byte) {
				if !bytes.Contains(first, []byte("\r\n"+WhyHeader+": listener=test; service=web.shop; attempt=1 ")) {
					b.Fatalf("no trail in the response:\n%s", first[:len(first)-benchBodyLen])
				}
			})
		})
	}
}
