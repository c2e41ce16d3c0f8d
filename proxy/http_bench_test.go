package proxy

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
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

// BenchmarkHTTPFastPath measures the proxy alone: a raw keep-alive client
// and a raw backend that allocate nothing, so allocs/op are the proxy's.
// Subbenchmarks run the fast path and, for comparison, net/http.
//
//	go test -run '^$' -bench BenchmarkHTTPFastPath -benchmem ./proxy
func BenchmarkHTTPFastPath(b *testing.B) {
	be := startBenchBackend(b)
	for _, bc := range benchEngines {
		b.Run(bc.name, func(b *testing.B) {
			p := startHTTPProxy(b, bc.cfg, routeAll(b, "web.shop"), Upstreams{"web.shop": StaticUpstream("web", be)}, ServerConfig{})
			benchRoundTrips(b, p.addr, benchRequest, nil)
		})
	}
}

// benchEngines are the HTTP/1.1 engines the fast-path benchmarks compare.
var benchEngines = []struct {
	name string
	cfg  HTTPConfig
}{
	{"fast", HTTPConfig{}},
	{"nethttp", HTTPConfig{NetHTTPOnly: true}},
}

// benchBodyLen is the size of the benchmark backend's response body.
const benchBodyLen = 1 << 10

// benchRequest is the request every fast-path benchmark sends.
const benchRequest = "GET /bench HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\n\r\n"

// startBenchBackend starts a raw backend answering every request with a
// 1 KiB body, allocating nothing, so allocs/op are the proxy's.
func startBenchBackend(b *testing.B) netip.AddrPort {
	resp := append([]byte("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 1024\r\n\r\n"),
		bytes.Repeat([]byte("x"), benchBodyLen)...)
	return startRawBackend(b, resp)
}

// benchRoundTrips sends req over one connection b.N times, reading each
// response (of a fixed size, learnt from the first) whole. check, when
// not nil, looks at the first response before the loop.
func benchRoundTrips(b *testing.B, addr, req string, check func(first []byte)) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	rb := []byte(req)
	buf := make([]byte, 8<<10)
	roundTrip := func(want int) int {
		if _, err := c.Write(rb); err != nil {
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
				if i := bytes.Index(buf[:n], []byte("\r\n\r\n")); i >= 0 && n >= i+4+benchBodyLen {
					return n
				}
			}
		}
	}
	size := roundTrip(0)
	if check != nil {
		check(buf[:size])
	}
	b.ReportAllocs()
	b.SetBytes(benchBodyLen)
	for b.Loop() {
		if n := roundTrip(size); n != size {
			b.Fatalf("response of %d bytes, want %d", n, size)
		}
	}
}

// startRawBackend serves resp to every request (a head without a body) on
// each connection, reading with a fixed buffer: no allocation per request.
func startRawBackend(tb testing.TB, resp []byte) netip.AddrPort {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	tb.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				buf := make([]byte, 8<<10)
				n := 0
				for {
					m, err := c.Read(buf[n:])
					if err != nil {
						return
					}
					n += m
					for {
						i := bytes.Index(buf[:n], []byte("\r\n\r\n"))
						if i < 0 {
							break
						}
						if _, err := c.Write(resp); err != nil {
							return
						}
						n = copy(buf, buf[i+4:n])
					}
				}
			})
		}
	})
	return netip.MustParseAddrPort(ln.Addr().String())
}
