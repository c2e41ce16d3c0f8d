package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/outrigger-mesh/outrigger/proxy/route"
)

// frontProxy is a Server with one FrontListener "test" on 127.0.0.1:0.
type frontProxy struct {
	*testProxy
	l *FrontListener
}

func startFrontProxy(t *testing.T, cfg FrontConfig, routes *route.Table, ups Upstreams, fallback Upstream) *frontProxy {
	t.Helper()
	cfg.HTTP.Name, cfg.HTTP.Listen = "test", "127.0.0.1:0"
	l := NewFrontListener(cfg, routes, ups, fallback, Options{})
	srv := NewServer(ServerConfig{}, Options{}, l)
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
	return &frontProxy{testProxy: p, l: l}
}

// kinds returns the listener's connection counts by first bytes, for
// the kinds that are not zero.
func (p *frontProxy) kinds() map[string]int64 {
	m := map[string]int64{}
	for k := range p.l.kinds {
		if n := p.l.kinds[k].Load(); n > 0 {
			m[sniffKind(k).String()] = n
		}
	}
	return m
}

// nameBackend answers every HTTP request with its name.
func nameBackend(t *testing.T, name string) *httpBackend {
	return startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, name)
	}))
}

// greeter is a server-speaks-first backend, like examples/echo in tcp
// mode: it sends a line naming itself before reading anything, then echoes.
func greeter(name string) func(c *net.TCPConn) {
	return func(c *net.TCPConn) {
		if _, err := io.WriteString(c, "hello from "+name+"\n"); err != nil {
			return
		}
		echo(c)
	}
}

// tlsHTTPClient is an HTTP client over TLS to the proxy that trusts the
// test CA and counts the TCP connections it dialed; protos says which of
// HTTP/1.1 and HTTP/2 it offers by ALPN.
func tlsHTTPClient(t *testing.T, serverName string, h1, h2 bool) *countingClient {
	c := &countingClient{}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c.dials.Add(1)
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
		TLSClientConfig:    &tls.Config{RootCAs: testCA.pool, ServerName: serverName},
		DisableCompression: true,
		Protocols:          new(http.Protocols),
	}
	tr.Protocols.SetHTTP1(h1)
	tr.Protocols.SetHTTP2(h2)
	if !h2 {
		// net/http offers no ALPN at all without HTTP/2.
		tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
	}
	t.Cleanup(tr.CloseIdleConnections)
	c.Client = &http.Client{Transport: tr, Timeout: waitLimit}
	return c
}

// Many concurrent requests on one TLS connection, HTTP/2 by ALPN, all in
// flight at once, balanced per request over three backends.
func TestFrontTLSALPNh2ManyStreamsBalanced(t *testing.T) {
	const requests = 99
	var arrived atomic.Int64
	all := make(chan struct{})
	handler := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if arrived.Add(1) == requests+1 { // +1: the warm-up request
				close(all)
			}
			select {
			case <-all:
			case <-time.After(waitLimit):
			}
			io.WriteString(w, name)
		})
	}
	var addrs []netip.AddrPort
	var warm *httpBackend
	for _, name := range []string{"a", "b", "c"} {
		b := startHTTPBackend(t, handler(name))
		addrs = append(addrs, b.addr)
		if warm == nil {
			warm = b
		}
	}
	up := newFakeUpstream(t, addrs...)
	cert := testCert(t, "front.test", time.Hour)
	p := startFrontProxy(t, FrontConfig{TLS: StaticCert{&cert.tls}}, routeAll(t, "web.shop"), Upstreams{"web.shop": up}, nil)
	c := tlsHTTPClient(t, "front.test", true, true)

	// The warm-up request makes the one connection every stream shares (a
	// cold transport may dial once per concurrent request and keep one).
	// It waits for the batch, so it is counted in arrived.
	var wg sync.WaitGroup
	wg.Go(func() {
		resp, err := c.Get("https://" + p.addr + "/")
		if err != nil {
			t.Error(err)
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	})
	deadline := time.Now().Add(waitLimit)
	for arrived.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("warm-up request never arrived")
		}
		time.Sleep(time.Millisecond)
	}

	var mu sync.Mutex
	got := map[string]int{}
	protos := map[string]int{}
	for range requests {
		wg.Go(func() {
			resp, err := c.Get("https://" + p.addr + "/")
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			got[string(b)]++
			protos[resp.Proto+" "+resp.TLS.NegotiatedProtocol]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if diff := cmp.Diff(got, map[string]int{"a": 33, "b": 33, "c": 33}); diff != "" {
		t.Errorf("requests per backend (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(protos, map[string]int{"HTTP/2.0 h2": requests}); diff != "" {
		t.Errorf("client protocols (-got +want):\n%s", diff)
	}
	if n := c.dials.Load(); n != 1 {
		t.Errorf("client dialed %d connections, want 1 carrying every stream", n)
	}
}

// A client offering only http/1.1 gets HTTP/1.1 over TLS; one offering no
// ALPN at all gets HTTP/1 too.
func TestFrontTLSALPNHTTP1(t *testing.T) {
	b := nameBackend(t, "a")
	cert := testCert(t, "front.test", time.Hour)
	p := startFrontProxy(t, FrontConfig{TLS: StaticCert{&cert.tls}}, routeAll(t, "web.shop"),
		Upstreams{"web.shop": newFakeUpstream(t, b.addr)}, nil)

	c := tlsHTTPClient(t, "front.test", true, false)
	for range 3 {
		resp, body := c.get(t, "https://"+p.addr+"/x")
		if resp.Proto != "HTTP/1.1" || resp.TLS.NegotiatedProtocol != "http/1.1" || body != "a" {
			t.Fatalf("got %s, ALPN %q, body %q", resp.Proto, resp.TLS.NegotiatedProtocol, body)
		}
	}
	if n := c.dials.Load(); n != 1 {
		t.Errorf("client dialed %d connections, want 1 kept alive", n)
	}

	// No ALPN: raw HTTP/1.1 inside TLS.
	tc, err := tls.Dial("tcp", p.addr, &tls.Config{RootCAs: testCA.pool, ServerName: "front.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	tc.SetDeadline(time.Now().Add(waitLimit))
	io.WriteString(tc, rawRequest("GET / HTTP/1.1", "Host: x", "Connection: close"))
	resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "a" {
		t.Errorf("no-ALPN request: %d %q", resp.StatusCode, body)
	}
}

// A gRPC listener offers only h2. A client offering only http/1.1 still
// connects, with no protocol negotiated (crypto/tls lets http/1.1 clients
// reach h2-only servers, golang/go#46310); one offering anything else fails
// the handshake, and the failure is counted, not logged per connection.
func TestFrontTLSGRPCOffersOnlyH2(t *testing.T) {
	cert := testCert(t, "front.test", time.Hour)
	p := startFrontProxy(t, FrontConfig{HTTP: HTTPConfig{GRPC: true}, TLS: StaticCert{&cert.tls}}, nil, nil, nil)
	cfg := &tls.Config{RootCAs: testCA.pool, ServerName: "front.test"}

	cfg.NextProtos = []string{"h2", "http/1.1"}
	tc, err := tls.Dial("tcp", p.addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := tc.ConnectionState().NegotiatedProtocol; got != "h2" {
		t.Errorf("ALPN chose %q, want h2", got)
	}
	tc.Close()

	cfg.NextProtos = []string{"http/1.1"}
	tc, err = tls.Dial("tcp", p.addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := tc.ConnectionState().NegotiatedProtocol; got != "" {
		t.Errorf("ALPN chose %q for an http/1.1 client, want none", got)
	}
	tc.Close()

	cfg.NextProtos = []string{"imap"}
	if tc, err := tls.Dial("tcp", p.addr, cfg); err == nil {
		tc.Close()
		t.Fatal("a gRPC listener accepted a client offering only imap")
	}
	waitCount(t, &p.l.tlsFailures, 1)
}

// waitCount waits until the counter reaches want (it is updated on the
// connection's goroutine, after the client already saw the outcome).
func waitCount(t *testing.T, n *atomic.Int64, want int64) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for n.Load() != want {
		if time.Now().After(deadline) {
			t.Fatalf("counter is %d, want %d", n.Load(), want)
		}
		time.Sleep(time.Millisecond)
	}
}

// A TLS listener answers a plaintext HTTP client with a 400 saying why and
// closes it, and closes a client that sends nothing after the header
// timeout.
func TestFrontTLSRefusesPlaintextAndSilence(t *testing.T) {
	cert := testCert(t, "front.test", time.Hour)
	p := startFrontProxy(t, FrontConfig{HTTP: HTTPConfig{HeaderTimeout: 50 * time.Millisecond}, TLS: StaticCert{&cert.tls}}, nil, nil, nil)

	c := p.dial(t)
	io.WriteString(c, rawRequest("GET / HTTP/1.1", "Host: x"))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 400 || !strings.Contains(string(body), "HTTP request to an HTTPS server") {
		t.Errorf("plaintext to TLS: %d %q", resp.StatusCode, body)
	}
	assertClosed(t, c)

	silent := p.dial(t)
	assertClosed(t, silent)
	waitCount(t, &p.l.tlsFailures, 2)
}

// autoProxy is an auto listener with one HTTP backend ("web") for every
// request and fallback for everything else.
func autoProxy(t *testing.T, fallback Upstream, tlsSrc CertSource, timeout time.Duration) *frontProxy {
	t.Helper()
	web := nameBackend(t, "web")
	return startFrontProxy(t, FrontConfig{TLS: tlsSrc, Sniff: &SniffConfig{Timeout: timeout}},
		routeAll(t, "web.shop"), Upstreams{"web.shop": newFakeUpstream(t, web.addr)}, fallback)
}

func TestAutoRoutesHTTP1AndH2C(t *testing.T) {
	tcp := newFakeUpstream(t, startBackend(t, echo))
	p := autoProxy(t, tcp, nil, time.Hour) // HTTP is never left waiting for the timeout

	for _, tc := range []struct {
		h2c   bool
		proto string
	}{{false, "HTTP/1.1"}, {true, "HTTP/2.0"}} {
		c := newClient(t, tc.h2c)
		for range 3 {
			resp, body := c.get(t, "http://"+p.addr+"/")
			if resp.Proto != tc.proto || body != "web" {
				t.Fatalf("got %s %q, want %s from web", resp.Proto, body, tc.proto)
			}
		}
	}
	if diff := cmp.Diff(p.kinds(), map[string]int64{"http1": 1, "h2": 1}); diff != "" {
		t.Errorf("connections by first bytes (-got +want):\n%s", diff)
	}
	if calls, _, _ := tcp.stats(); calls != 0 {
		t.Errorf("the TCP fallback was picked %d times", calls)
	}
}

// A client-speaks-first protocol that is not HTTP goes to the fallback as
// TCP: the sniffed bytes first, then the rest, in order and intact, both
// ways, with half-close.
func TestAutoForwardsOtherProtocolAsTCP(t *testing.T) {
	tcp := newFakeUpstream(t, startBackend(t, echo))
	p := autoProxy(t, tcp, nil, time.Hour)

	c := p.dial(t)
	first := []byte("*1\r\n$4\r\nPING\r\n") // a Redis command
	payload := append(first, bytes.Repeat([]byte("0123456789abcdef"), 1<<16)...)
	want := sha256.Sum256(payload)
	go func() {
		c.Write(first)
		c.Write(payload[len(first):])
		c.CloseWrite()
	}()
	h := sha256.New()
	n, err := io.Copy(h, c)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(len(payload)) || !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatalf("echoed %d bytes, want the %d sent, unchanged", n, len(payload))
	}
	dones := tcp.waitDones(t, 1)
	if dones[0].info.Err != nil {
		t.Errorf("Done(%v), want nil", dones[0].info.Err)
	}
	if diff := cmp.Diff(p.kinds(), map[string]int64{"other": 1}); diff != "" {
		t.Errorf("connections by first bytes (-got +want):\n%s", diff)
	}
}

// A server-speaks-first backend works through an auto listener: the client
// sends nothing, the sniff times out, the connection is forwarded, and the
// greeting arrives.
func TestAutoServerSpeaksFirst(t *testing.T) {
	tcp := newFakeUpstream(t, startBackend(t, greeter("db-1")))
	p := autoProxy(t, tcp, nil, 50*time.Millisecond)

	c := p.dial(t)
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil || line != "hello from db-1\n" {
		t.Fatalf("greeting %q, %v", line, err)
	}
	io.WriteString(c, "QUIT\r\n")
	if line, err := r.ReadString('\n'); err != nil || line != "QUIT\r\n" {
		t.Fatalf("echo %q, %v", line, err)
	}
	if diff := cmp.Diff(p.kinds(), map[string]int64{"silent": 1}); diff != "" {
		t.Errorf("connections by first bytes (-got +want):\n%s", diff)
	}
}

// Without TLS configured, the application's own TLS passes through
// untouched: the client completes its handshake with the backend's
// certificate.
func TestAutoTLSPassthrough(t *testing.T) {
	backendCert := testCert(t, "db.internal", time.Hour)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{backendCert.tls}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				io.Copy(c, c)
			})
		}
	})
	tcp := newFakeUpstream(t, netip.MustParseAddrPort(ln.Addr().String()))
	p := autoProxy(t, tcp, nil, time.Hour)

	tc, err := tls.Dial("tcp", p.addr, &tls.Config{RootCAs: testCA.pool, ServerName: "db.internal"})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if got := tc.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(backendCert.serial) != 0 {
		t.Errorf("client saw certificate %v, want the backend's %v", got, backendCert.serial)
	}
	tc.SetDeadline(time.Now().Add(waitLimit))
	io.WriteString(tc, "secret\n")
	if line, err := bufio.NewReader(tc).ReadString('\n'); err != nil || line != "secret\n" {
		t.Fatalf("echo through TLS %q, %v", line, err)
	}
	if diff := cmp.Diff(p.kinds(), map[string]int64{"tls": 1}); diff != "" {
		t.Errorf("connections by first bytes (-got +want):\n%s", diff)
	}
}

// With TLS configured, an auto listener terminates a ClientHello and
// sniffs what is inside: h2 by ALPN and HTTP/1 without ALPN are routed; a
// TLS client that sends something else is closed. Plaintext still works.
func TestAutoTLSTerminatedAndSniffedAgain(t *testing.T) {
	tcp := newFakeUpstream(t, startBackend(t, echo))
	cert := testCert(t, "front.test", time.Hour)
	p := autoProxy(t, tcp, StaticCert{&cert.tls}, time.Hour)

	c := tlsHTTPClient(t, "front.test", true, true)
	resp, body := c.get(t, "https://"+p.addr+"/")
	if resp.Proto != "HTTP/2.0" || body != "web" {
		t.Errorf("ALPN h2: %s %q", resp.Proto, body)
	}

	tlsDial := func() *tls.Conn {
		tc, err := tls.Dial("tcp", p.addr, &tls.Config{RootCAs: testCA.pool, ServerName: "front.test"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tc.Close() })
		tc.SetDeadline(time.Now().Add(waitLimit))
		return tc
	}
	tc := tlsDial()
	io.WriteString(tc, rawRequest("GET / HTTP/1.1", "Host: x"))
	r, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r.Body)
	if r.StatusCode != 200 || string(b) != "web" {
		t.Errorf("HTTP/1 inside TLS without ALPN: %d %q", r.StatusCode, b)
	}

	notHTTP := tlsDial()
	io.WriteString(notHTTP, "hello\n")
	if _, err := notHTTP.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("TLS connection carrying no HTTP: read %v, want closed", err)
	}
	waitCount(t, &p.l.innerNotHTTP, 1)

	plain := newClient(t, false)
	if _, body := plain.get(t, "http://"+p.addr+"/"); body != "web" {
		t.Errorf("plaintext HTTP/1 on a TLS auto listener: %q", body)
	}
	if diff := cmp.Diff(p.kinds(), map[string]int64{"tls": 3, "http1": 1}); diff != "" {
		t.Errorf("connections by first bytes (-got +want):\n%s", diff)
	}
	if calls, _, _ := tcp.stats(); calls != 0 {
		t.Errorf("the TCP fallback was picked %d times", calls)
	}
}

// A new certificate saved over the files is served to new connections; a
// connection made before keeps working.
func TestFrontCertHotReload(t *testing.T) {
	dir := t.TempDir()
	a := testCert(t, "svc.test", time.Hour)
	files := a.write(t, dir)
	src, err := NewCertFiles(files, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- src.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	b := nameBackend(t, "web")
	p := startFrontProxy(t, FrontConfig{TLS: src}, routeAll(t, "web.shop"), Upstreams{"web.shop": newFakeUpstream(t, b.addr)}, nil)

	if got := handshakeSerial(t, p.addr, "svc.test"); got.Cmp(a.serial) != 0 {
		t.Fatalf("served %v, want %v", got, a.serial)
	}
	old := tlsHTTPClient(t, "svc.test", true, false)
	if _, body := old.get(t, "https://"+p.addr+"/"); body != "web" {
		t.Fatalf("body %q", body)
	}

	next := testCert(t, "svc.test", time.Hour)
	next.write(t, dir)
	waitServed(t, p.addr, next.serial)

	resp, body := old.get(t, "https://"+p.addr+"/")
	if body != "web" || resp.TLS.PeerCertificates[0].SerialNumber.Cmp(a.serial) != 0 || old.dials.Load() != 1 {
		t.Errorf("kept-alive connection: body %q, serial %v, dials %d; want the old connection still serving",
			body, resp.TLS.PeerCertificates[0].SerialNumber, old.dials.Load())
	}
}

func TestFrontConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  FrontConfig
		want string
	}{
		{FrontConfig{HTTP: HTTPConfig{Name: "a", Listen: "127.0.0.1:0"}}, "neither TLS nor sniffing"},
		{FrontConfig{HTTP: HTTPConfig{Name: "a", Listen: "127.0.0.1:0"}, Sniff: &SniffConfig{Timeout: -1}}, "sniff timeout -1ns is negative"},
		{FrontConfig{HTTP: HTTPConfig{Name: "a", Listen: "127.0.0.1:0"}, Sniff: &SniffConfig{TCP: TCPConfig{IdleTimeout: -1}}}, "idle timeout -1ns is negative"},
		{FrontConfig{HTTP: HTTPConfig{Name: "a", Listen: "nope"}, TLS: StaticCert{}}, `listen "nope"`},
	} {
		err := tc.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want it to say %q", tc.cfg, err, tc.want)
		}
	}
	ok := FrontConfig{HTTP: HTTPConfig{Name: "a", Listen: "127.0.0.1:0"}, Sniff: &SniffConfig{}}
	if err := ok.Validate(); err != nil {
		t.Errorf("Validate(auto with defaults) = %v", err)
	}
	l := NewFrontListener(ok, nil, nil, nil, Options{})
	if err := l.validate(); err == nil || !strings.Contains(err.Error(), "needs an upstream") {
		t.Errorf("auto listener without a fallback upstream: %v", err)
	}
}
