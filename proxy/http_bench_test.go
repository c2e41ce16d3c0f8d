package proxy

import (
	"bytes"
	"io"
	"net/http"
	"testing"
)

// BenchmarkHTTPProxy measures one keep-alive client sending GETs for a
// 1 KiB response, through the proxy and directly to the backend.
//
//	go test -run '^$' -bench BenchmarkHTTPProxy -benchmem ./proxy
func BenchmarkHTTPProxy(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 1<<10)
	be := startHTTPBackend(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(body)
	}))
	up := StaticUpstream("web", be.addr)
	p := startHTTPProxy(b, HTTPConfig{}, routeAll(b, "web.shop"), Upstreams{"web.shop": up}, ServerConfig{})
	for _, bc := range []struct{ name, url string }{
		{"direct", be.URL + "/"},
		{"proxy", "http://" + p.addr + "/"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := newClient(b, false)
			buf := make([]byte, 4<<10)
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				resp, err := c.Get(bc.url)
				if err != nil {
					b.Fatal(err)
				}
				n, _ := io.ReadFull(resp.Body, buf[:len(body)])
				resp.Body.Close()
				if n != len(body) || resp.StatusCode != 200 {
					b.Fatalf("got %d bytes, status %d", n, resp.StatusCode)
				}
			}
		})
	}
}
