package proxy

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/route"
)

// startHTTPListener is startHTTPProxy that also returns the listener, for
// tests that call its methods.
func startHTTPListener(t testing.TB, cfg HTTPConfig, routes *route.Table, ups Upstreams) (*testProxy, *HTTPListener) {
	t.Helper()
	cfg.Name, cfg.Listen = "test", "127.0.0.1:0"
	l := NewHTTPListener(cfg, routes, ups, Options{})
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
	return p, l
}

// Requests that start after SetRoutes use the new table and upstreams; the
// client's keep-alive connection stays open across the swap.
func TestHTTPSetRoutesSwapsForNewRequests(t *testing.T) {
	a, b := startHTTPBackend(t, whoami("a")), startHTTPBackend(t, whoami("b"))
	upA, upB := newFakeUpstream(t, a.addr), newFakeUpstream(t, b.addr)
	p, l := startHTTPListener(t, HTTPConfig{}, routeAll(t, "a.shop"), Upstreams{"a.shop": upA})
	c := newClient(t, false)

	if _, body := c.get(t, "http://"+p.addr+"/"); body != "a" {
		t.Fatalf("before SetRoutes: body %q, want a", body)
	}
	l.SetRoutes(routeAll(t, "b.shop"), Upstreams{"b.shop": upB})
	if _, body := c.get(t, "http://"+p.addr+"/"); body != "b" {
		t.Errorf("after SetRoutes: body %q, want b", body)
	}
	l.SetRoutes(nil, nil)
	if resp, _ := c.get(t, "http://"+p.addr+"/"); resp.StatusCode != 404 || resp.Header.Get(ErrorHeader) != causeNoRoute {
		t.Errorf("nil table: %s %s=%q, want 404 no_route", resp.Status, ErrorHeader, resp.Header.Get(ErrorHeader))
	}
	if n := c.dials.Load(); n != 1 {
		t.Errorf("client dialed %d connections, want 1: SetRoutes must not close connections", n)
	}
}

// serveConn serves a connection whose first bytes a sniffer already read:
// they are replayed before the rest, and the connection stays keep-alive.
func TestHTTPServeConnReplaysPrefix(t *testing.T) {
	paths := make(chan string, 2)
	be := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paths <- r.URL.Path
		io.WriteString(w, "ok")
	}))
	_, l := startHTTPListener(t, HTTPConfig{}, routeAll(t, "web.shop"), Upstreams{"web.shop": newFakeUpstream(t, be.addr)})

	client, server := tcpPair(t)
	raw := rawRequest("GET /sniffed HTTP/1.1", "Host: x") + rawRequest("GET /second HTTP/1.1", "Host: x")
	if _, err := io.WriteString(client, raw); err != nil {
		t.Fatal(err)
	}
	prefix := make([]byte, 7) // "GET /sn", as a protocol sniffer would
	if _, err := io.ReadFull(server, prefix); err != nil {
		t.Fatal(err)
	}
	go l.serveConn(server, prefix)

	br := bufio.NewReader(client)
	for _, want := range []string{"/sniffed", "/second"} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(body) != "ok" {
			t.Fatalf("%s: %s %q", want, resp.Status, body)
		}
		if got := <-paths; got != want {
			t.Errorf("backend got path %q, want %q", got, want)
		}
	}
}

// A *tls.Conn whose ALPN chose h2 is served as HTTP/2.
func TestHTTPServeConnTLSH2(t *testing.T) {
	be := startHTTPBackend(t, whoami("a"))
	_, l := startHTTPListener(t, HTTPConfig{}, routeAll(t, "web.shop"), Upstreams{"web.shop": newFakeUpstream(t, be.addr)})

	cert := selfSigned(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}})
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return
		}
		l.serveConn(tc, nil)
	}()
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: waitLimit}
	resp, err := hc.Get("https://" + ln.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || string(body) != "a" {
		t.Errorf("got %s %q, want HTTP/2.0 \"a\"", resp.Proto, body)
	}
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t testing.TB) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	client.SetDeadline(time.Now().Add(waitLimit))
	return client, server
}

func selfSigned(t testing.TB) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
