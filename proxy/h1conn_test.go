package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Tests of the HTTP/1.1 fast path (h1conn.go). The other HTTP tests run
// through it too, since it is the default; these pin what only it does.

// Every smuggling shape is refused by the fast path itself (its answers
// carry X-Outrigger-Error, net/http's parser errors cannot) and the
// connection closes; nothing smuggled reaches the endpoint.
func TestH1RefusesSmuggling(t *testing.T) {
	var mu sync.Mutex
	var paths []string
	be := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.Path)
		mu.Unlock()
		io.Copy(io.Discard, r.Body)
	}))
	up := newFakeUpstream(t, be.addr)
	p := startHTTPProxy(t, HTTPConfig{MaxHeaderBytes: 1 << 10}, routeAll(t, "web.shop"), Upstreams{"web.shop": up}, ServerConfig{})

	const smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
	chunked := rawRequest("POST / HTTP/1.1", "Host: x", "Transfer-Encoding: chunked")
	for _, tc := range []struct {
		name, raw string
		status    int
		cause     string
	}{
		{"content-length and chunked", rawRequest("POST / HTTP/1.1", "Host: x", "Content-Length: 5", "Transfer-Encoding: chunked") + "0\r\n\r\n" + smuggled, 400, causeBadRequest},
		{"differing content-lengths", rawRequest("POST / HTTP/1.1", "Host: x", "Content-Length: 5", "Content-Length: 6") + "hello!" + smuggled, 400, causeBadRequest},
		{"content-length list", rawRequest("POST / HTTP/1.1", "Host: x", "Content-Length: 5, 6") + "hello!", 400, causeBadRequest},
		{"space before colon", rawRequest("POST / HTTP/1.1", "Host: x", "Transfer-Encoding : chunked") + "0\r\n\r\n" + smuggled, 400, causeBadRequest},
		{"obs-fold", rawRequest("GET / HTTP/1.1", "Host: x", "X-A: a", " folded"), 400, causeBadRequest},
		{"bare LF", "GET / HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n" + smuggled, 400, causeBadRequest},
		{"NUL in value", rawRequest("GET / HTTP/1.1", "Host: x", "X-A: a\x00b"), 400, causeBadRequest},
		{"invalid name", rawRequest("GET / HTTP/1.1", "Host: x", "X(A): b"), 400, causeBadRequest},
		{"two hosts", rawRequest("GET / HTTP/1.1", "Host: x", "Host: y"), 400, causeBadRequest},
		{"bad escape in path", rawRequest("GET /a%zz HTTP/1.1", "Host: x"), 400, causeBadRequest},
		{"gzip coding", rawRequest("POST / HTTP/1.1", "Host: x", "Transfer-Encoding: gzip") + "hello", 501, causeBadRequest},
		{"chunked not final", rawRequest("POST / HTTP/1.1", "Host: x", "Transfer-Encoding: chunked, gzip") + "0\r\n\r\n" + smuggled, 501, causeBadRequest},
		{"bad chunk size", chunked + "zz\r\nhello\r\n0\r\n\r\n" + smuggled, 400, causeBadRequest},
		{"bad chunk extension", chunked + "5;\x01\r\nhello\r\n0\r\n\r\n" + smuggled, 400, causeBadRequest},
		{"chunk data too long", chunked + "2\r\nhello\r\n0\r\n\r\n" + smuggled, 400, causeBadRequest},
		{"request line too long", "GET /" + strings.Repeat("a", 8<<10) + " HTTP/1.1\r\nHost: x\r\n\r\n", 431, causeHeadersTooLarge},
		{"headers too large", rawRequest("GET / HTTP/1.1", "Host: x", "X-Big: "+strings.Repeat("x", 8<<10)), 431, causeHeadersTooLarge},
		{"too many fields", rawRequest(append([]string{"GET / HTTP/1.1", "Host: x"}, strings.Split(strings.Repeat("A: 1\n", maxFields), "\n")[:maxFields]...)...), 431, causeHeadersTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := p.dial(t)
			io.WriteString(c, tc.raw)
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			if resp.StatusCode != tc.status || resp.Header.Get(ErrorHeader) != tc.cause {
				t.Errorf("got %s %s=%q, want %d %q", resp.Status, ErrorHeader, resp.Header.Get(ErrorHeader), tc.status, tc.cause)
			}
			if n, err := br.Read(make([]byte, 1)); n != 0 || err != io.EOF {
				t.Errorf("connection still open after the refusal (read %d, %v)", n, err)
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

// Keep-alive both sides: sequential requests from several client
// connections reuse upstream connections instead of dialing per request.
func TestH1ReusesUpstreamConnections(t *testing.T) {
	be := startHTTPBackend(t, whoami("a"))
	up := newFakeUpstream(t, be.addr)
	p := startHTTPProxy(t, HTTPConfig{}, routeAll(t, "web.shop"), Upstreams{"web.shop": up}, ServerConfig{})
	const clients, each = 4, 25
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			c := newClient(t, false)
			for range each {
				resp, err := c.Get("http://" + p.addr + "/")
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Errorf("status %s", resp.Status)
				}
			}
		})
	}
	wg.Wait()
	if n := be.conns.Load(); n < 1 || n > clients {
		t.Errorf("backend accepted %d connections for %d requests from %d clients, want 1..%d", n, clients*each, clients, clients)
	}
	for _, d := range assertDonesMatchPicks(t, up) {
		if d.info.Err != nil {
			t.Errorf("Done err %v", d.info.Err)
		}
	}
}

// scriptedBackend serves HTTP/1.1 keep-alive, answering 200 with the
// connection's number, except: after "/close" it closes the connection
// without saying so (no "Connection: close"; a server whose keep-alive
// timeout passed) and sends on closed; at "/drop" it reads the request and
// closes without answering.
func scriptedBackend(t *testing.T) (netip.AddrPort, *atomic.Int64, chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int64
	closed := make(chan struct{}, 16)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := accepted.Add(1)
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(waitLimit))
				br := bufio.NewReader(c)
				for {
					r, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, r.Body)
					if r.URL.Path == "/drop" {
						return
					}
					body := fmt.Sprint(n)
					fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
					if r.URL.Path == "/close" {
						c.Close() // on loopback the FIN is queued when Close returns
						closed <- struct{}{}
						return
					}
				}
			})
		}
	})
	return netip.MustParseAddrPort(ln.Addr().String()), &accepted, closed
}

// A pooled upstream connection the endpoint closed while idle: an
// idempotent request that fails on it before any response byte is sent
// again on a new connection; a POST looks first (its idle probe) and takes
// a new connection. A POST the endpoint drops after reading it is not sent
// again (it may have been processed): 502 upstream_reset.
func TestH1RetriesStalePooledConnection(t *testing.T) {
	addr, accepted, closed := scriptedBackend(t)
	up := newFakeUpstream(t, addr)
	p := startHTTPProxy(t, HTTPConfig{}, routeAll(t, "web.shop"), Upstreams{"web.shop": up}, ServerConfig{})
	c := newClient(t, false)
	post := func(path string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("POST", "http://"+p.addr+path, strings.NewReader("x"))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}

	for i := 1; i <= 3; i++ {
		// From the second request on, the pooled connection is one the
		// endpoint closed: only the retry on a new one answers 200.
		resp, body := c.get(t, "http://"+p.addr+"/close")
		if resp.StatusCode != 200 || body != fmt.Sprint(i) {
			t.Fatalf("GET %d: %s %q, want 200 %q", i, resp.Status, body, fmt.Sprint(i))
		}
		<-closed
	}
	if resp := post("/"); resp.StatusCode != 200 {
		t.Errorf("POST after an idle close: %s, want 200 on a new connection", resp.Status)
	}
	if n := accepted.Load(); n != 4 {
		t.Errorf("backend accepted %d connections, want 4", n)
	}
	if resp := post("/drop"); resp.StatusCode != 502 || resp.Header.Get(ErrorHeader) != causeUpstreamReset {
		t.Errorf("POST dropped by the endpoint: %s %s=%q, want 502 upstream_reset", resp.Status, ErrorHeader, resp.Header.Get(ErrorHeader))
	}
	if n := accepted.Load(); n != 4 {
		t.Errorf("backend accepted %d connections, want 4: the dropped POST must not be sent again", n)
	}
	assertDonesMatchPicks(t, up)
}

// Pipelined requests are answered in order, on one connection, with
// Content-Length and chunked request bodies between them.
func TestH1Pipelining(t *testing.T) {
	be := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s:%s", r.URL.Path, b)
	}))
	up := newFakeUpstream(t, be.addr)
	p := startHTTPProxy(t, HTTPConfig{}, routeAll(t, "web.shop"), Upstreams{"web.shop": up}, ServerConfig{})
	var raw strings.Builder
	var want []string
	for i := range 20 {
		switch i % 3 {
		case 0:
			raw.WriteString(rawRequest(fmt.Sprintf("GET /%d HTTP/1.1", i), "Host: x"))
			want = append(want, fmt.Sprintf("/%d:", i))
		case 1:
			raw.WriteString(rawRequest(fmt.Sprintf("POST /%d HTTP/1.1", i), "Host: x", "Content-Length: 3") + "abc")
			want = append(want, fmt.Sprintf("/%d:abc", i))
		case 2:
			raw.WriteString(rawRequest(fmt.Sprintf("POST /%d HTTP/1.1", i), "Host: x", "Transfer-Encoding: chunked") + "2\r\nde\r\n0\r\n\r\n")
			want = append(want, fmt.Sprintf("/%d:de", i))
		}
	}
	c := p.dial(t)
	io.WriteString(c, raw.String())
	br := bufio.NewReader(c)
	for i, w := range want {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if string(b) != w {
			t.Errorf("response %d: %q, want %q", i, b, w)
		}
	}
	if n := be.conns.Load(); n != 1 {
		t.Errorf("backend accepted %d connections, want 1", n)
	}
}

// Chunked request bodies are relayed as they are: extensions and trailers
// reach the endpoint; chunked responses come back with their trailers.
func TestH1ChunkedTrailersBothWays(t *testing.T) {
	type seen struct {
		body    string
		trailer http.Header
	}
	got := make(chan seen, 1)
	be := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{string(b), r.Trailer.Clone()}
		w.Header().Set("Trailer", "X-Resp-Sum")
		w.Write([]byte("part1"))
		w.(http.Flusher).Flush()
		w.Write([]byte("part2"))
		w.Header().Set("X-Resp-Sum", "42")
	}))
	up := newFakeUpstream(t, be.addr)
	p := startHTTPProxy(t, HTTPConfig{}, routeAll(t, "web.shop"), Upstreams{"web.shop": up}, ServerConfig{})
	c := p.dial(t)
	io.WriteString(c, rawRequest("POST /up HTTP/1.1", "Host: x", "Transfer-Encoding: chunked", "Trailer: X-Req-Sum")+
		"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Req-Sum: 7\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	s := <-got
	if s.body != "hello world" || s.trailer.Get("X-Req-Sum") != "7" {
		t.Errorf("endpoint got body %q trailer %v, want \"hello world\" X-Req-Sum: 7", s.body, s.trailer)
	}
	if string(b) != "part1part2" || resp.Trailer.Get("X-Resp-Sum") != "42" || len(resp.TransferEncoding) != 1 {
		t.Errorf("client got body %q trailer %v TE %v, want part1part2, X-Resp-Sum: 42, chunked", b, resp.Trailer, resp.TransferEncoding)
	}
	assertDonesMatchPicks(t, up)
}

// A client that stops in the middle of its request head is disconnected
// after HeaderTimeout; nothing reaches the endpoint.
func TestH1HeaderTimeout(t *testing.T) {
	be := startHTTPBackend(t, whoami("a"))
	up := newFakeUpstream(t, be.addr)
	p := startHTTPProxy(t, HTTPConfig{HeaderTimeout: 50 * time.Millisecond}, routeAll(t, "web.shop"), Upstreams{"web.shop": up}, ServerConfig{})
	c := p.dial(t)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n")
	c.SetReadDeadline(time.Now().Add(waitLimit))
	n, err := c.Read(make([]byte, 1))
	if n != 0 || !errors.Is(err, io.EOF) {
		t.Errorf("read %d, %v; want EOF (closed by the header timeout)", n, err)
	}
	if _, picks, _ := up.stats(); picks != 0 {
		t.Errorf("%d picks, want 0", picks)
	}
}

// Requests the fast path does not do go to net/http with every byte it
// had read, and the connection stays there: an HTTP/1.0 request after an
// HTTP/1.1 one on the same connection, then an HTTP/1.1 one again.
func TestH1HandsOffMidConnection(t *testing.T) {
	protos := make(chan string, 3)
	be := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		protos <- r.URL.Path
		io.WriteString(w, "ok")
	}))
	up := newFakeUpstream(t, be.addr)
	p := startHTTPProxy(t, HTTPConfig{}, routeAll(t, "web.shop"), Upstreams{"web.shop": up}, ServerConfig{})
	c := p.dial(t)
	io.WriteString(c, rawRequest("GET /one HTTP/1.1", "Host: x")+
		rawRequest("GET /two HTTP/1.0", "Host: x", "Connection: keep-alive")+
		rawRequest("GET /three HTTP/1.1", "Host: x"))
	br := bufio.NewReader(c)
	var via []string
	for range 3 {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		via = append(via, resp.Header.Get("Via"))
	}
	for _, want := range []string{"/one", "/two", "/three"} {
		if got := <-protos; got != want {
			t.Errorf("endpoint got %q, want %q", got, want)
		}
	}
	if via[0] != "1.1 outrigger" || via[1] != "1.1 outrigger" {
		t.Errorf("Via %q", via)
	}
}

// Large bodies both ways, by Content-Length, through the splice path.
func TestH1LargeBodiesBothWays(t *testing.T) {
	const size = 8 << 20
	be := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Length", fmt.Sprint(n))
		io.CopyN(w, zeros{}, n)
	}))
	up := newFakeUpstream(t, be.addr)
	p := startHTTPProxy(t, HTTPConfig{}, routeAll(t, "web.shop"), Upstreams{"web.shop": up}, ServerConfig{})
	c := newClient(t, false)
	for range 2 {
		req, _ := http.NewRequest("PUT", "http://"+p.addr+"/", io.LimitReader(zeros{}, size))
		req.ContentLength = size
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || n != size {
			t.Fatalf("got %d bytes (%v), want %d", n, err, size)
		}
	}
	if n := c.dials.Load(); n != 1 {
		t.Errorf("client dialed %d times, want 1", n)
	}
	assertDonesMatchPicks(t, up)
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// Server-sent events reach the client as the endpoint flushes them: the
// endpoint sends its second event only after the client got the first.
func TestH1StreamsEventsAtOnce(t *testing.T) {
	next := newGate(t)
	be := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		<-next.ch
		io.WriteString(w, "data: two\n\n")
	}))
	up := newFakeUpstream(t, be.addr)
	p := startHTTPProxy(t, HTTPConfig{}, routeAll(t, "web.shop"), Upstreams{"web.shop": up}, ServerConfig{})
	resp, err := newClient(t, false).Get("http://" + p.addr + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for i, want := range []string{"data: one\n", "\n", "data: two\n", "\n"} {
		line, err := br.ReadString('\n')
		if err != nil || line != want {
			t.Fatalf("line %d: %q %v, want %q", i, line, err, want)
		}
		if i == 1 {
			next.open() // the first event arrived while the endpoint waits
		}
	}
	resp.Body.Close()
	assertDonesMatchPicks(t, up)
}

// An endpoint that does not answer within ResponseTimeout gets 504
// upstream_timeout, its Done gets the timeout, and the client connection
// stays usable.
func TestH1UpstreamTimeout(t *testing.T) {
	release := newGate(t)
	be := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release.ch
		}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(release.open)
	up := newFakeUpstream(t, be.addr)
	p := startHTTPProxy(t, HTTPConfig{ResponseTimeout: 50 * time.Millisecond}, routeAll(t, "web.shop"), Upstreams{"web.shop": up}, ServerConfig{})
	c := newClient(t, false)
	resp, _ := c.get(t, "http://"+p.addr+"/slow")
	if resp.StatusCode != 504 || resp.Header.Get(ErrorHeader) != causeUpstreamTimeout {
		t.Errorf("slow: %s %s=%q, want 504 upstream_timeout", resp.Status, ErrorHeader, resp.Header.Get(ErrorHeader))
	}
	if resp, body := c.get(t, "http://"+p.addr+"/fast"); resp.StatusCode != 200 || body != "ok" {
		t.Errorf("after the timeout: %s %q", resp.Status, body)
	}
	if n := c.dials.Load(); n != 1 {
		t.Errorf("client dialed %d times, want 1", n)
	}
	var timeouts int
	for _, d := range assertDonesMatchPicks(t, up) {
		var ne net.Error
		if errors.As(d.info.Err, &ne) && ne.Timeout() {
			timeouts++
		}
	}
	if timeouts != 1 {
		t.Errorf("%d Done calls with a timeout, want 1", timeouts)
	}
}

// A drain closes idle keep-alive connections at once: Serve returns long
// before the drain timeout, and the idle client sees EOF.
func TestH1DrainClosesIdleConnections(t *testing.T) {
	be := startHTTPBackend(t, whoami("a"))
	up := newFakeUpstream(t, be.addr)
	p := startHTTPProxy(t, HTTPConfig{}, routeAll(t, "web.shop"), Upstreams{"web.shop": up}, ServerConfig{DrainTimeout: time.Hour})
	c := p.dial(t)
	io.WriteString(c, rawRequest("GET / HTTP/1.1", "Host: x"))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	p.cancel()
	if err := p.wait(t); err != nil { // fails after waitLimit, not the hour
		t.Fatal(err)
	}
	if n, err := br.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("idle connection after the drain: read %d, %v; want EOF", n, err)
	}
}

// A connection that sends nothing is closed after HeaderTimeout, as
// net/http does, not after the longer IdleTimeout.
func TestH1SilentConnectionGetsHeaderTimeout(t *testing.T) {
	be := startHTTPBackend(t, whoami("a"))
	up := newFakeUpstream(t, be.addr)
	p := startHTTPProxy(t, HTTPConfig{HeaderTimeout: 50 * time.Millisecond, IdleTimeout: time.Hour},
		routeAll(t, "web.shop"), Upstreams{"web.shop": up}, ServerConfig{})
	c := p.dial(t)
	c.SetReadDeadline(time.Now().Add(waitLimit))
	if n, err := c.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Errorf("read %d, %v; want EOF (closed by the header timeout)", n, err)
	}
}

// Full duplex: an endpoint that echoes a request body (chunked, or by
// Content-Length through the splice path) as a chunked response while it
// still reads it; both bodies are bigger than the socket buffers, so the
// proxy must copy both ways at once.
func TestH1FullDuplexEcho(t *testing.T) {
	be := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		rc.EnableFullDuplex()
		w.WriteHeader(200)
		buf := make([]byte, 32<<10)
		for {
			n, err := r.Body.Read(buf)
			if n > 0 {
				w.Write(buf[:n])
				rc.Flush()
			}
			if err != nil {
				return
			}
		}
	}))
	up := newFakeUpstream(t, be.addr)
	p := startHTTPProxy(t, HTTPConfig{}, routeAll(t, "web.shop"), Upstreams{"web.shop": up}, ServerConfig{})
	const size = 8 << 20
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 1<<10) // 16 KiB
	for _, chunked := range []bool{true, false} {
		t.Run(fmt.Sprint("chunked=", chunked), func(t *testing.T) {
			c := p.dial(t)
			werr := make(chan error, 1)
			go func() {
				var err error
				if chunked {
					_, err = io.WriteString(c, rawRequest("POST /echo HTTP/1.1", "Host: x", "Transfer-Encoding: chunked"))
				} else {
					_, err = io.WriteString(c, rawRequest("POST /echo HTTP/1.1", "Host: x", fmt.Sprint("Content-Length: ", size)))
				}
				for sent := 0; sent < size && err == nil; sent += len(chunk) {
					if chunked {
						_, err = fmt.Fprintf(c, "%x\r\n%s\r\n", len(chunk), chunk)
					} else {
						_, err = c.Write(chunk)
					}
				}
				if err == nil && chunked {
					_, err = io.WriteString(c, "0\r\n\r\n")
				}
				werr <- err
			}()
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			n, err := io.Copy(io.Discard, resp.Body)
			if err != nil || n != size {
				t.Errorf("echoed %d bytes (%v), want %d", n, err, size)
			}
			if err := <-werr; err != nil {
				t.Errorf("writing the body: %v", err)
			}
		})
	}
	assertDonesMatchPicks(t, up)
}

// "Expect: 100-continue" is served by the fast path itself: the client
// sends its body after the endpoint's 100 Continue, and the connection
// stays on the fast path (a malformed head afterwards gets the fast path's
// 400 with X-Outrigger-Error, which net/http's parser cannot send).
func TestH1ExpectContinueStaysOnFastPath(t *testing.T) {
	be := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	}))
	up := newFakeUpstream(t, be.addr)
	p := startHTTPProxy(t, HTTPConfig{}, routeAll(t, "web.shop"), Upstreams{"web.shop": up}, ServerConfig{})
	c := p.dial(t)
	br := bufio.NewReader(c)
	io.WriteString(c, rawRequest("POST / HTTP/1.1", "Host: x", "Content-Length: 5", "Expect: 100-continue"))
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 100 {
		t.Fatalf("got %v %v, want 100 Continue before the body", resp, err)
	}
	io.WriteString(c, "hello")
	if resp, err = http.ReadResponse(br, nil); err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != "hello" {
		t.Fatalf("got %s %q, want 200 hello", resp.Status, b)
	}
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\nX: y\r\n\r\n")
	if resp, err = http.ReadResponse(br, nil); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 400 || resp.Header.Get(ErrorHeader) != causeBadRequest {
		t.Errorf("malformed head after the Expect request: %s %s=%q, want the fast path's 400 bad_request",
			resp.Status, ErrorHeader, resp.Header.Get(ErrorHeader))
	}
	assertDonesMatchPicks(t, up)
}
