package proxy

import (
	"io"
	"net"
	"testing"
)

// BenchmarkTCPEcho measures 1 KiB round trips on one reused connection to
// an echo backend, directly and through the proxy; the difference is the
// proxy's per-round-trip cost (two extra loopback hops, spliced).
func BenchmarkTCPEcho(b *testing.B) {
	backend := startBackend(b, echo)
	p := startProxy(b, TCPConfig{}, StaticUpstream("echo", backend), ServerConfig{})
	for _, bc := range []struct{ name, addr string }{
		{"direct", backend.String()},
		{"proxy", p.addr},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c, err := net.Dial("tcp", bc.addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			msg, buf := make([]byte, 1024), make([]byte, 1024)
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
