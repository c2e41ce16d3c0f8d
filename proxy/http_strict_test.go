package proxy

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// Every request-smuggling shape is refused and its connection closed; no
// smuggled request reaches the endpoint. Most are refused by net/http's
// parser, the rest by the framing guard (httpguard.go) and the body error
// path. Unsupported transfer codings get 501, as RFC 9112 §6.1 asks.
func TestHTTPRefusesSmuggling(t *testing.T) {
	var mu sync.Mutex
	var paths []string
	be := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.Path)
		mu.Unlock()
		io.Copy(io.Discard, r.Body)
	}))
	up := newFakeUpstream(t, be.addr)
	p := startHTTPProxy(t, HTTPConfig{}, routeAll(t, "web.shop"), Upstreams{"web.shop": up}, ServerConfig{})

	const smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, tc := range []struct {
		name, raw string
		status    int
	}{
		{"content-length and chunked", rawRequest("POST / HTTP/1.1", "Host: x", "Content-Length: 5", "Transfer-Encoding: chunked") +
			"0\r\n\r\n" + smuggled, 400},
		{"chunked and content-length", rawRequest("POST / HTTP/1.1", "Host: x", "Transfer-Encoding: chunked", "Content-Length: 40") +
			"0\r\n\r\n" + smuggled, 400},
		{"chunked in HTTP/1.0", rawRequest("POST / HTTP/1.0", "Host: x", "Connection: keep-alive", "Transfer-Encoding: chunked") +
			"0\r\n\r\n" + smuggled, 400},
		{"second request framed badly", rawRequest("GET /first HTTP/1.1", "Host: x") +
			rawRequest("POST / HTTP/1.1", "Host: x", "Content-Length: 5", "Transfer-Encoding: chunked") + "0\r\n\r\n" + smuggled, 0},
		{"differing content-lengths", rawRequest("POST / HTTP/1.1", "Host: x", "Content-Length: 5", "Content-Length: 6") +
			"hello!" + smuggled, 400},
		{"content-length list", rawRequest("POST / HTTP/1.1", "Host: x", "Content-Length: 5, 6") + "hello!", 400},
		{"signed content-length", rawRequest("POST / HTTP/1.1", "Host: x", "Content-Length: +5") + "hello", 400},
		{"content-length with junk", rawRequest("POST / HTTP/1.1", "Host: x", "Content-Length: 5x") + "hello", 400},
		{"space before colon", rawRequest("POST / HTTP/1.1", "Host: x", "Transfer-Encoding : chunked", "Content-Length: 5") +
			"0\r\n\r\n" + smuggled, 400},
		{"obs-fold", rawRequest("GET / HTTP/1.1", "Host: x", "X-A: a", " folded"), 400},
		{"obs-fold transfer-encoding", rawRequest("POST / HTTP/1.1", "Host: x", "Transfer-Encoding:", " chunked", "Content-Length: 5") +
			"0\r\n\r\n" + smuggled, 400},
		{"NUL in value", rawRequest("GET / HTTP/1.1", "Host: x", "X-A: a\x00b"), 400},
		{"CR in value", rawRequest("GET / HTTP/1.1", "Host: x", "X-A: a\rb"), 400},
		{"two hosts", rawRequest("GET / HTTP/1.1", "Host: x", "Host: y"), 400},
		{"no host", rawRequest("GET / HTTP/1.1"), 400},
		{"bad chunk size", rawRequest("POST / HTTP/1.1", "Host: x", "Transfer-Encoding: chunked") + "zz\r\nhello\r\n0\r\n\r\n", 400},
		{"chunk size overflow", rawRequest("POST / HTTP/1.1", "Host: x", "Transfer-Encoding: chunked") +
			"fffffffffffffffff1\r\nhello\r\n0\r\n\r\n", 400},
		{"bare LF after chunk size", rawRequest("POST / HTTP/1.1", "Host: x", "Transfer-Encoding: chunked") +
			"5\nhello\r\n0\r\n\r\n" + smuggled, 400},
		{"chunk data too long", rawRequest("POST / HTTP/1.1", "Host: x", "Transfer-Encoding: chunked") +
			"2\r\nhello\r\n0\r\n\r\n" + smuggled, 400},
		{"gzip transfer coding", rawRequest("POST / HTTP/1.1", "Host: x", "Transfer-Encoding: gzip") + "hello", 501},
		{"chunked twice", rawRequest("POST / HTTP/1.1", "Host: x", "Transfer-Encoding: chunked", "Transfer-Encoding: chunked") +
			"0\r\n\r\n" + smuggled, 501},
		{"coding list", rawRequest("POST / HTTP/1.1", "Host: x", "Transfer-Encoding: gzip, chunked") + "0\r\n\r\n" + smuggled, 501},
		{"vertical tab", rawRequest("POST / HTTP/1.1", "Host: x", "Transfer-Encoding: \x0bchunked") + "0\r\n\r\n" + smuggled, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.status == 0 { // the first request is fine, the second is refused
				c := p.dial(t)
				io.WriteString(c, tc.raw)
				br := newLineReader(c)
				first, err := http.ReadResponse(br.Reader, nil)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, first.Body)
				second, err := http.ReadResponse(br.Reader, nil)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, second.Body)
				if first.StatusCode != 200 || second.StatusCode != 400 || second.Header.Get(ErrorHeader) != "bad_request" {
					t.Errorf("got %s then %s (%s=%q), want 200 then 400 bad_request",
						first.Status, second.Status, ErrorHeader, second.Header.Get(ErrorHeader))
				}
				if n, err := br.Read(make([]byte, 1)); n != 0 || err != io.EOF {
					t.Errorf("connection still open after the refusal (read %d, %v)", n, err)
				}
				return
			}
			status, closed := rawExchange(t, p.addr, tc.raw)
			if status != tc.status || !closed {
				t.Errorf("got %d closed=%v, want %d and closed", status, closed, tc.status)
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	for _, path := range paths {
		if path == "/smuggled" {
			t.Errorf("a smuggled request reached the endpoint (all: %q)", paths)
		}
	}
	assertDonesMatchPicks(t, up)
}

// Well-framed requests still pass the guard: pipelined requests with
// Content-Length and chunked bodies and trailers, on one connection.
func TestHTTPGuardFollowsGoodFraming(t *testing.T) {
	be := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, r.URL.Path+":"+string(b))
	}))
	up := newFakeUpstream(t, be.addr)
	p := startHTTPProxy(t, HTTPConfig{}, routeAll(t, "web.shop"), Upstreams{"web.shop": up}, ServerConfig{})
	c := p.dial(t)
	// The bodies mention the refused framings; they are data, not headers.
	bodyA := "Transfer-Encoding: chunked\r\nContent-Len"
	chunkB := "Content-Length: 5\r\n\r\nabcd"
	raw := rawRequest("POST /a HTTP/1.1", "Host: x", fmt.Sprintf("Content-Length: %d", len(bodyA))) + bodyA +
		rawRequest("POST /b HTTP/1.1", "Host: x", "Transfer-Encoding: chunked") +
		fmt.Sprintf("%x\r\n%s\r\n0\r\nX-Trailer: 1\r\n\r\n", len(chunkB), chunkB) +
		rawRequest("GET /c HTTP/1.1", "Host: x") +
		rawRequest("POST /d HTTP/1.0", "Host: x", "Connection: keep-alive", "Content-Length: 2") + "ok"
	io.WriteString(c, raw)
	br := newLineReader(c)
	var got []string
	for range 4 {
		resp, err := http.ReadResponse(br.Reader, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		got = append(got, resp.Status+" "+string(b))
	}
	want := []string{
		"200 OK /a:Transfer-Encoding: chunked\r\nContent-Len",
		"200 OK /b:Content-Length: 5\r\n\r\nabcd",
		"200 OK /c:",
		"200 OK /d:ok",
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

// An "Upgrade: h2c" request is passed on as a plain request, never as an
// upgrade the endpoint could accept (h2c smuggling).
func TestHTTPDoesNotForwardH2CUpgrade(t *testing.T) {
	got := make(chan http.Header, 1)
	be := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Clone()
	}))
	up := newFakeUpstream(t, be.addr)
	p := startHTTPProxy(t, HTTPConfig{}, routeAll(t, "web.shop"), Upstreams{"web.shop": up}, ServerConfig{})
	status, _ := rawExchange(t, p.addr, rawRequest("GET / HTTP/1.1", "Host: x", "Connection: Upgrade, HTTP2-Settings, close",
		"Upgrade: h2c", "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"))
	if status != 200 {
		t.Fatalf("status %d", status)
	}
	h := <-got
	for _, k := range []string{"Upgrade", "Http2-Settings", "Connection"} {
		if v, ok := h[k]; ok {
			t.Errorf("endpoint got %s: %q", k, v)
		}
	}
}

// Headers over MaxHeaderBytes get 431 on HTTP/1.1 and HTTP/2.
func TestHTTPHeadersTooLarge(t *testing.T) {
	be := startHTTPBackend(t, whoami("a"))
	up := newFakeUpstream(t, be.addr)
	p := startHTTPProxy(t, HTTPConfig{MaxHeaderBytes: 4 << 10}, routeAll(t, "web.shop"), Upstreams{"web.shop": up}, ServerConfig{})
	big := strings.Repeat("x", 16<<10)
	status, closed := rawExchange(t, p.addr, rawRequest("GET / HTTP/1.1", "Host: x", "X-Big: "+big))
	if status != 431 || !closed {
		t.Errorf("HTTP/1.1: %d closed=%v, want 431 and closed", status, closed)
	}
	// HTTP/2: many fields, each small, over the advertised list size. The
	// client may refuse to send them itself once it has the server's
	// SETTINGS; if it sends them, the server answers 431.
	req, _ := http.NewRequest("GET", "http://"+p.addr+"/", nil)
	for i := range 6 {
		req.Header.Set(fmt.Sprintf("X-Big-%d", i), strings.Repeat("x", 1<<10))
	}
	resp, err := newClient(t, true).Do(req)
	switch {
	case err != nil && strings.Contains(err.Error(), "header list larger than"):
	case err != nil:
		t.Errorf("HTTP/2: %v", err)
	default:
		resp.Body.Close()
		if resp.StatusCode != 431 {
			t.Errorf("HTTP/2: %s, want 431", resp.Status)
		}
	}
	if _, picks, _ := up.stats(); picks != 0 {
		t.Errorf("%d picks, want 0", picks)
	}
}
