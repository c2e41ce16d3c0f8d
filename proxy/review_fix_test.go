package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/route"
)

// serveObserved runs cfg's listener with routes and ups and an Observer;
// it returns the listener's address.
func serveObserved(t *testing.T, cfg HTTPConfig, ups Upstreams, obs Observer) string {
	t.Helper()
	cfg.Name, cfg.Listen = "test", "127.0.0.1:0"
	srv := NewServer(ServerConfig{}, Options{}, NewHTTPListener(cfg, routeAll(t, "web.shop"), ups, Options{Observer: obs}))
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-served })
	return srv.Addrs()["test"].String()
}

// A HEAD answered "Transfer-Encoding: chunked" after a chunked GET on the
// same connection counts no body bytes (the scanner's count was the GET's).
func TestBytesOutHeadAfterChunked(t *testing.T) {
	be := startBackend(t, func(c *net.TCPConn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if req.Method == "HEAD" {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
			} else {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
			}
		}
	})
	rec := &recorder{}
	addr := serveObserved(t, HTTPConfig{}, Upstreams{"web.shop": newFakeUpstream(t, be)}, rec)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for _, m := range []string{"GET", "HEAD"} {
		io.WriteString(c, m+" / HTTP/1.1\r\nHost: x\r\n\r\n")
		req, _ := http.NewRequest(m, "/", nil)
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	got := rec.all()
	for deadline := time.Now().Add(10 * time.Second); len(got) < 2 && time.Now().Before(deadline); got = rec.all() {
		time.Sleep(time.Millisecond)
	}
	if len(got) != 2 || got[0].BytesOut != 5 || got[1].Method != "HEAD" || got[1].BytesOut != 0 {
		t.Errorf("records %+v, want GET with 5 bytes out, then HEAD with 0", got)
	}
}

// On net/http's path a client that half-closes after its request (which
// cancels the request there) gets no made-up empty 200: the connection
// closes without a response.
func TestHalfClosedClientGetsNoFakeResponse(t *testing.T) {
	be := startBackend(t, func(c *net.TCPConn) {
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		time.Sleep(300 * time.Millisecond)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	})
	addr := serveObserved(t, HTTPConfig{NetHTTPOnly: true}, Upstreams{"web.shop": newFakeUpstream(t, be)}, nil)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	c.(*net.TCPConn).CloseWrite()
	c.SetReadDeadline(time.Now().Add(waitLimit))
	b, _ := io.ReadAll(c)
	if len(b) > 0 && !strings.Contains(string(b), "\r\n\r\nok") {
		t.Errorf("half-closed client got %q: a response the endpoint did not give", b)
	}
}

// An upgrade request the proxy refuses itself (no route, a connect
// failure, a redirect) closes the connection after the answer: the framing
// guard stopped following it at the upgrade request, so no later request
// may ride it (found in review).
func TestRefusedUpgradeClosesConnection(t *testing.T) {
	dead := closedPort(t)
	tab := mustTable(t,
		route.RouteConfig{Name: "api", Match: route.MatchConfig{Path: route.PathMatch{Value: "/api"}}, Backends: []route.Backend{{Service: "web.shop"}}},
		route.RouteConfig{Name: "old", Match: route.MatchConfig{Path: route.PathMatch{Value: "/old"}}, Redirect: &route.Redirect{Path: "/new"}},
	)
	p := startHTTPProxy(t, HTTPConfig{ConnectAttempts: 1}, tab, Upstreams{"web.shop": newFakeUpstream(t, dead)}, ServerConfig{})
	for _, tc := range []struct {
		path   string
		status int
	}{{"/nowhere", 404}, {"/api/ws", 502}, {"/old", 302}} {
		c := p.dial(t)
		io.WriteString(c, rawRequest("GET "+tc.path+" HTTP/1.1", "Host: x", "Upgrade: websocket", "Connection: Upgrade")+
			rawRequest("GET /api/next HTTP/1.1", "Host: x"))
		c.SetReadDeadline(time.Now().Add(waitLimit))
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.path, err)
		}
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != tc.status || !resp.Close {
			t.Errorf("%s: %d, close %v; want %d and the connection closing", tc.path, resp.StatusCode, resp.Close, tc.status)
		}
		if rest, _ := io.ReadAll(br); len(rest) > 0 {
			t.Errorf("%s: the request after the refused upgrade was answered: %q", tc.path, rest)
		}
		c.Close()
	}
}
