package proxy

import (
	"bytes"
	"net"
	"testing"
)

// BenchmarkHTTPFastPathWhy is BenchmarkHTTPFastPath with every request
// asking for its trail: the fast path writes it into the connection's
// write buffer, so it should allocate nothing either.
func BenchmarkHTTPFastPathWhy(b *testing.B) {
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
			p := startHTTPProxy(b, bc.cfg, routeAll(b, "web.shop"), Upstreams{"web.shop": StaticUpstream("web", be)}, ServerConfig{})
			c, err := net.Dial("tcp", p.addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			req := []byte("GET /bench HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\nX-Outrigger-Debug: why\r\n\r\n")
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
			if !bytes.Contains(buf[:size], []byte("\r\n"+WhyHeader+": listener=test; service=web.shop; attempt=1 ")) {
				b.Fatalf("no trail in the response:\n%s", buf[:size-len(body)])
			}
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
