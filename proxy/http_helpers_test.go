package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/balancer"
	"github.com/outrigger-mesh/outrigger/discovery"
	"github.com/outrigger-mesh/outrigger/proxy/route"
)

// httpBackend is a real HTTP/1.1 server on loopback that counts the
// connections it accepted.
type httpBackend struct {
	*httptest.Server
	addr  netip.AddrPort
	conns atomic.Int64
}

func startHTTPBackend(t testing.TB, h http.Handler) *httpBackend {
	t.Helper()
	b := &httpBackend{Server: httptest.NewUnstartedServer(h)}
	b.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			b.conns.Add(1)
		}
	}
	b.Start()
	t.Cleanup(b.Close)
	b.addr = netip.MustParseAddrPort(b.Listener.Addr().String())
	return b
}

// routeAll is a table with one route sending everything to service.
func routeAll(t testing.TB, service string) *route.Table {
	t.Helper()
	return mustTable(t, route.RouteConfig{Backends: []route.Backend{{Service: service}}})
}

func mustTable(t testing.TB, routes ...route.RouteConfig) *route.Table {
	t.Helper()
	tab, err := route.New(route.Config{Routes: routes})
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

// startHTTPProxy runs a Server with one HTTP listener "test" on
// 127.0.0.1:0.
func startHTTPProxy(t testing.TB, cfg HTTPConfig, routes *route.Table, ups Upstreams, scfg ServerConfig) *testProxy {
	t.Helper()
	cfg.Name, cfg.Listen = "test", "127.0.0.1:0"
	srv := NewServer(scfg, Options{}, NewHTTPListener(cfg, routes, ups, Options{}))
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &testProxy{srv: srv, addr: srv.Addrs()["test"].String(), cancel: cancel, served: make(chan error, 1)}
	go func() { p.served <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := p.wait(t); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return p
}

// countingClient is an HTTP client to the proxy whose transport counts the
// TCP connections it dialed. With h2c it speaks HTTP/2 with prior
// knowledge, else HTTP/1.1.
type countingClient struct {
	*http.Client
	dials atomic.Int64
}

func newClient(t testing.TB, h2c bool) *countingClient {
	c := &countingClient{}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c.dials.Add(1)
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
		DisableCompression: true,
		Protocols:          new(http.Protocols),
	}
	if h2c {
		tr.Protocols.SetUnencryptedHTTP2(true)
	} else {
		tr.Protocols.SetHTTP1(true)
	}
	t.Cleanup(tr.CloseIdleConnections)
	c.Client = &http.Client{Transport: tr, Timeout: waitLimit,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return c
}

// get sends a GET to the proxy and returns the response with its body read.
func (c *countingClient) get(t testing.TB, url string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// rawExchange writes raw bytes on a new connection to addr and returns the
// status code of the first response and whether the proxy closed the
// connection after it (read to EOF within waitLimit).
func rawExchange(t *testing.T, addr, raw string) (status int, closed bool) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, waitLimit)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(waitLimit))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	status = resp.StatusCode
	// After the response: EOF means closed. Anything else (another
	// response to smuggled bytes, or a timeout) means open.
	c.SetReadDeadline(time.Now().Add(waitLimit))
	n, err := br.Read(make([]byte, 1))
	return status, n == 0 && err == io.EOF
}

// assertDonesMatchPicks waits until every successful pick got its Done.
func assertDonesMatchPicks(t *testing.T, up *fakeUpstream) []doneRecord {
	t.Helper()
	_, picks, _ := up.stats()
	d := up.waitDones(t, picks)
	if _, picks2, _ := up.stats(); picks2 != picks || len(d) != picks {
		t.Errorf("picks %d→%d, Done calls %d", picks, picks2, len(d))
	}
	return d
}

// gate blocks handlers until released; Cleanup releases it.
type gate struct {
	once sync.Once
	ch   chan struct{}
}

func newGate(t testing.TB) *gate {
	g := &gate{ch: make(chan struct{})}
	t.Cleanup(g.open)
	return g
}

func (g *gate) open() { g.once.Do(func() { close(g.ch) }) }

// rawRequest formats an HTTP/1.1 request from lines joined by CRLF, ending
// the header section.
func rawRequest(lines ...string) string {
	return strings.Join(lines, "\r\n") + "\r\n\r\n"
}

// staticWatcher is a balancer.Watcher with one fixed snapshot.
type staticWatcher struct{ snap *discovery.Snapshot }

func (w staticWatcher) Watch(ctx context.Context, service string) <-chan *discovery.Snapshot {
	ch := make(chan *discovery.Snapshot, 1)
	ch <- w.snap
	go func() {
		<-ctx.Done()
		close(ch)
	}()
	return ch
}

// startBalancer runs a real round-robin balancer over a fixed endpoint list
// until the test ends.
func startBalancer(t *testing.T, service string, addrs ...netip.AddrPort) *balancer.Balancer {
	t.Helper()
	snap := &discovery.Snapshot{Service: service, Version: 1, Known: true, Answered: true}
	for _, a := range addrs {
		snap.Endpoints = append(snap.Endpoints, discovery.Endpoint{
			ID: a.String(), Addr: a, Weight: discovery.DefaultWeight, State: discovery.StateReady, Source: "test",
		})
	}
	b, err := balancer.New(balancer.Config{Service: service}, balancer.Options{Watcher: staticWatcher{snap}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	deadline := time.Now().Add(waitLimit)
	for !b.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("balancer not ready")
		}
		time.Sleep(time.Millisecond)
	}
	return b
}

// lineReader reads CRLF-terminated lines from a raw connection.
type lineReader struct{ *bufio.Reader }

func newLineReader(c net.Conn) lineReader { return lineReader{bufio.NewReader(c)} }

func (r lineReader) line(t testing.TB) string {
	t.Helper()
	s, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("reading a line: %v (got %q)", err, s)
	}
	return strings.TrimRight(s, "\r\n")
}
