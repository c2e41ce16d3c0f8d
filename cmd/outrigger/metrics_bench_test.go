package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"

	"github.com/outrigger-mesh/outrigger/proxy"
	"github.com/outrigger-mesh/outrigger/proxy/route"
)

// The proxy's own benchmarks run without observers; these run the same
// data paths with and without the metrics observers, so that the
// difference is what metrics cost on the request path (allocs/op must
// not change).
//
//	go test -run '^$' -bench 'BenchmarkMetrics' -benchmem ./cmd/outrigger

// BenchmarkMetricsHTTPFastPath: one raw keep-alive client, the HTTP/1.1
// fast path, a raw backend answering 1 KiB.
func BenchmarkMetricsHTTPFastPath(b *testing.B) {
	benchHTTPFastPath(b, []benchOptions{{"none", proxy.Options{}}, {"metrics", withMetrics()}})
}

type benchOptions struct {
	name string
	opts proxy.Options
}

// benchHTTPFastPath runs a sub-benchmark per case: one raw keep-alive
// client, the HTTP/1.1 fast path with the case's options, a raw backend
// answering 1 KiB.
func benchHTTPFastPath(b *testing.B, cases []benchOptions) {
	body := bytes.Repeat([]byte("x"), 1<<10)
	resp := append([]byte("HTTP/1.1 200 OK\r\nContent-Length: 1024\r\n\r\n"), body...)
	be := rawBackend(b, func(c net.Conn) {
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
	tab, err := route.New(route.Config{Routes: []route.RouteConfig{{Name: "all", Backends: []route.Backend{{Service: "web.shop"}}}}})
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			l := proxy.NewHTTPListener(proxy.HTTPConfig{Name: "web", Listen: "127.0.0.1:0"}, tab,
				proxy.Upstreams{"web.shop": proxy.StaticUpstream("web", be)}, bc.opts)
			addr := serve(b, l)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			req := []byte("GET /bench HTTP/1.1\r\nHost: bench\r\n\r\n")
			buf := make([]byte, 8<<10)
			want := len("HTTP/1.1 200 OK\r\n") // the proxy's head differs; read to the body's end
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
					if i := bytes.Index(buf[:n], []byte("\r\n\r\n")); i >= want && n >= i+4+len(body) {
						return
					}
				}
			}
			roundTrip()
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				roundTrip()
			}
		})
	}
}

// BenchmarkMetricsTCPConn: a new connection per op through an L4
// listener (accept, pick, dial, 5 bytes each way, close), so that the
// TCPObserver's two calls per connection are on the measured path.
func BenchmarkMetricsTCPConn(b *testing.B) {
	be := rawBackend(b, func(c net.Conn) { io.Copy(c, c) })
	for _, bc := range []struct {
		name string
		opts proxy.Options
	}{
		{"none", proxy.Options{}},
		{"metrics", withMetrics()},
	} {
		b.Run(bc.name, func(b *testing.B) {
			l := proxy.NewTCPListener(proxy.TCPConfig{Name: "db", Listen: "127.0.0.1:0"}, proxy.StaticUpstream("db", be), bc.opts)
			addr := serve(b, l)
			msg, buf := []byte("ping\n"), make([]byte, 5)
			b.ReportAllocs()
			for b.Loop() {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					b.Fatal(err)
				}
				c.Write(msg)
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
		})
	}
}

func withMetrics() proxy.Options {
	m := newMetrics(nil)
	return proxy.Options{Observer: observers(m), TCPObserver: m}
}

// serve runs a Server with l until the benchmark ends; it returns l's
// address.
func serve(b testing.TB, l proxy.Listener) string {
	addr, stop := serveUntil(b, l)
	b.Cleanup(func() { stop() })
	return addr
}

// serveUntil runs a Server with l until stop, which returns once Serve
// has (every connection's goroutine has ended); it returns l's address.
func serveUntil(b testing.TB, l proxy.Listener) (string, func() error) {
	srv := proxy.NewServer(proxy.ServerConfig{}, proxy.Options{}, l)
	if err := srv.Listen(); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	var once sync.Once
	var err error
	return srv.Addrs()[l.Name()].String(), func() error {
		once.Do(func() {
			cancel()
			err = <-done
		})
		return err
	}
}

// rawBackend serves each connection with handle on its own goroutine.
func rawBackend(b testing.TB, handle func(net.Conn)) netip.AddrPort {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	b.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
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
			conns[c] = true
			mu.Unlock()
			wg.Go(func() {
				defer func() {
					c.Close()
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
				}()
				handle(c)
			})
		}
	})
	return netip.MustParseAddrPort(ln.Addr().String())
}
