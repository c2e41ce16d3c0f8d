package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/route"
)

// Fast-path edge cases of endpoint responses and early answers (from a
// review of the HTTP/1.1 fast path).

// rawH1Backend runs serve on every accepted connection (n counts them from
// 1); Cleanup closes the listener and the connections.
func rawH1Backend(t *testing.T, serve func(c net.Conn, n int)) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for n := 1; ; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(waitLimit))
				serve(c, n)
			})
		}
	})
	return netip.MustParseAddrPort(ln.Addr().String())
}

// readRawHead reads a message head (up to the empty line) from br.
func readRawHead(br *bufio.Reader) (string, error) {
	var sb strings.Builder
	for {
		line, err := br.ReadString('\n')
		sb.WriteString(line)
		if err != nil {
			return sb.String(), err
		}
		if line == "\r\n" {
			return sb.String(), nil
		}
	}
}

// An interim response that ends exactly at the end of the upstream read
// buffer must not leave the response read looping on a zero-length read:
// the final response that follows reaches the client.
func TestH1InterimResponseFillingTheBuffer(t *testing.T) {
	addr := rawH1Backend(t, func(c net.Conn, _ int) {
		br := bufio.NewReader(c)
		if _, err := readRawHead(br); err != nil {
			return
		}
		head := "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\nX-Pad: "
		io.WriteString(c, head+strings.Repeat("p", upBufSize-len(head)-4)+"\r\n\r\n")
		time.Sleep(20 * time.Millisecond)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		readRawHead(br)
	})
	p := startHTTPProxy(t, HTTPConfig{ResponseTimeout: time.Second}, routeAll(t, "web.shop"),
		Upstreams{"web.shop": newFakeUpstream(t, addr)}, ServerConfig{DrainTimeout: 100 * time.Millisecond})
	c := p.dial(t)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	br := bufio.NewReader(c)
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("no final response within 3s (ResponseTimeout 1s): %v", err)
		}
		if resp.StatusCode >= 200 {
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || string(b) != "ok" {
				t.Fatalf("got %s %q", resp.Status, b)
			}
			return
		}
	}
}

// An endpoint that sends interim responses without end gets 502 after a
// few (net/http's Transport allows 5).
func TestH1TooManyInterimResponses(t *testing.T) {
	addr := rawH1Backend(t, func(c net.Conn, _ int) {
		br := bufio.NewReader(c)
		if _, err := readRawHead(br); err != nil {
			return
		}
		for range 50 {
			if _, err := io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"); err != nil {
				return
			}
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		readRawHead(br)
	})
	p := startHTTPProxy(t, HTTPConfig{}, routeAll(t, "web.shop"),
		Upstreams{"web.shop": newFakeUpstream(t, addr)}, ServerConfig{})
	c := p.dial(t)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(waitLimit))
	br := bufio.NewReader(c)
	interim := 0
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode < 200 {
			interim++
			continue
		}
		if resp.StatusCode != 502 || interim > 5 {
			t.Fatalf("after %d interim responses: %s; want 502 after at most 5", interim, resp.Status)
		}
		return
	}
}

// An endpoint that closes in the middle of a response head: 502 at once,
// not a busy read loop until the response timeout (504).
func TestH1TruncatedResponseHead(t *testing.T) {
	for _, upload := range []bool{false, true} {
		name := "GET"
		if upload {
			name = "streaming upload"
		}
		t.Run(name, func(t *testing.T) {
			addr := rawH1Backend(t, func(c net.Conn, _ int) {
				br := bufio.NewReader(c)
				if _, err := readRawHead(br); err != nil {
					return
				}
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Le")
			})
			p := startHTTPProxy(t, HTTPConfig{ResponseTimeout: 3 * time.Second}, routeAll(t, "web.shop"),
				Upstreams{"web.shop": newFakeUpstream(t, addr)}, ServerConfig{})
			c := p.dial(t)
			start := time.Now()
			if upload {
				// The body never ends: the pump keeps the exchange open.
				io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\npartial")
			} else {
				io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			}
			c.SetReadDeadline(time.Now().Add(waitLimit))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			took := time.Since(start)
			if resp.StatusCode != 502 || resp.Header.Get(ErrorHeader) != causeUpstreamReset || took > time.Second {
				t.Fatalf("truncated response head: %s %s=%q after %v; want 502 %s at once",
					resp.Status, ErrorHeader, resp.Header.Get(ErrorHeader), took.Round(time.Millisecond), causeUpstreamReset)
			}
		})
	}
}

// The endpoint's Connection field naming Content-Length does not take the
// framing away: the client still gets a length-delimited response on a
// connection that stays open, and a route's response operations cannot
// remove it either.
func TestH1ResponseFramingSurvivesConnectionAndOps(t *testing.T) {
	addr := rawH1Backend(t, func(c net.Conn, _ int) {
		br := bufio.NewReader(c)
		for {
			r, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, r.Body)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\nhello")
		}
	})
	opsTable := mustTable(t, route.RouteConfig{
		Backends:        []route.Backend{{Service: "web.shop"}},
		ResponseHeaders: route.HeaderOps{Remove: []string{"Content-Length", "Transfer-Encoding"}, Set: [][2]string{{"Content-Length", "99"}}},
	})
	for _, table := range []struct {
		name   string
		routes *route.Table
	}{{"no ops", routeAll(t, "web.shop")}, {"ops remove framing", opsTable}} {
		t.Run(table.name, func(t *testing.T) {
			p := startHTTPProxy(t, HTTPConfig{}, table.routes, Upstreams{"web.shop": newFakeUpstream(t, addr)}, ServerConfig{})
			c := p.dial(t)
			c.SetReadDeadline(time.Now().Add(waitLimit))
			br := bufio.NewReader(c)
			for i := range 2 {
				io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("response %d: %v", i+1, err)
				}
				b, err := io.ReadAll(resp.Body)
				if err != nil || string(b) != "hello" || resp.ContentLength != 5 || resp.Close {
					t.Fatalf("response %d: body %q (%v), length %d, close %v; want \"hello\", 5 and keep-alive",
						i+1, b, err, resp.ContentLength, resp.Close)
				}
			}
		})
	}
}

// A route's request operations cannot change the request's framing either:
// the endpoint reads the body the client sent.
func TestH1RequestFramingSurvivesOps(t *testing.T) {
	got := make(chan string, 1)
	addr := rawH1Backend(t, func(c net.Conn, _ int) {
		r, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		b, _ := io.ReadAll(r.Body)
		got <- string(b)
		io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
	})
	rt := mustTable(t, route.RouteConfig{
		Backends:       []route.Backend{{Service: "web.shop"}},
		RequestHeaders: route.HeaderOps{Set: [][2]string{{"Content-Length", "0"}}, Add: [][2]string{{"Transfer-Encoding", "chunked"}}},
	})
	p := startHTTPProxy(t, HTTPConfig{}, rt, Upstreams{"web.shop": newFakeUpstream(t, addr)}, ServerConfig{})
	c := p.dial(t)
	c.SetReadDeadline(time.Now().Add(waitLimit))
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 204 {
		t.Fatalf("got %s (%s)", resp.Status, resp.Header.Get(ErrorHeader))
	}
	if b := <-got; b != "hello" {
		t.Errorf("endpoint read body %q, want \"hello\"", b)
	}
}

// An endpoint that answers an upload before it read the body: the client
// gets the answer with "Connection: close" (its body will not be read), and
// the proxy closes lingering: it half-closes and still reads for a while,
// so that a client still sending is not reset under the answer.
func TestH1EarlyAnswerToUpload(t *testing.T) {
	addr := rawH1Backend(t, func(c net.Conn, _ int) {
		br := bufio.NewReader(c)
		if _, err := readRawHead(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 401 Unauthorized\r\nContent-Length: 6\r\n\r\ndenied")
		io.Copy(io.Discard, br)
	})
	p := startHTTPProxy(t, HTTPConfig{}, routeAll(t, "web.shop"),
		Upstreams{"web.shop": newFakeUpstream(t, addr)}, ServerConfig{})
	c := p.dial(t)
	c.SetDeadline(time.Now().Add(waitLimit))
	io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\npartial")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil || string(b) != "denied" {
		t.Fatalf("body %q, %v", b, err)
	}
	if !resp.Close {
		t.Errorf("early answer to an unread upload without Connection: close")
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after the answer: %v, want EOF", err)
	}
	// The client, still sending its body, is not reset: the proxy reads
	// and discards (a closed socket would answer the first write with a
	// reset and fail the second).
	for i := range 3 {
		if _, err := c.Write(make([]byte, 1024)); err != nil {
			t.Fatalf("write %d after the answer: %v (no lingering close)", i+1, err)
		}
		time.Sleep(30 * time.Millisecond)
	}
}

// An HTTP/1.0 response with Transfer-Encoding has faulty framing (RFC 9112
// §6.1): the field is ignored as net/http ignores it, and the endpoint's
// connection is not reused even though it says keep-alive.
func TestH1HTTP10ResponseWithTransferEncoding(t *testing.T) {
	for _, tc := range []struct{ name, resp, body string }{
		{"length", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc", "abc"},
		{"close-delimited", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", "3\r\nabc\r\n0\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conns := make(chan int, 4)
			addr := rawH1Backend(t, func(c net.Conn, n int) {
				conns <- n
				br := bufio.NewReader(c)
				for {
					if _, err := readRawHead(br); err != nil {
						return
					}
					io.WriteString(c, tc.resp)
					if !strings.Contains(tc.resp, "Content-Length") {
						return // the close ends the body
					}
				}
			})
			p := startHTTPProxy(t, HTTPConfig{}, routeAll(t, "web.shop"),
				Upstreams{"web.shop": newFakeUpstream(t, addr)}, ServerConfig{})
			for i := range 2 {
				resp, body := newClient(t, false).get(t, "http://"+p.addr+"/")
				if resp.StatusCode != 200 || body != tc.body {
					t.Fatalf("request %d: %s %q, want 200 %q", i+1, resp.Status, body, tc.body)
				}
				select {
				case n := <-conns:
					if n != i+1 {
						t.Fatalf("request %d: endpoint connection %d accepted", i+1, n)
					}
				case <-time.After(time.Second):
					t.Fatalf("request %d took no new endpoint connection: a faulty-framing connection was reused", i+1)
				}
			}
		})
	}
}

// A client whose request body breaks while it streams upstream gets 400,
// and the endpoint's pick is done with a neutral outcome (context.Canceled),
// not the client's error: that says nothing about the endpoint.
func TestH1ClientBodyErrorIsNeutralForEndpoint(t *testing.T) {
	for _, tc := range []struct {
		name string
		rest func(c *net.TCPConn)
	}{
		{"bad chunk", func(c *net.TCPConn) { io.WriteString(c, "lo\r\nzz\r\n") }},
		{"client half-closes", func(c *net.TCPConn) { c.CloseWrite() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := rawH1Backend(t, func(c net.Conn, _ int) {
				io.Copy(io.Discard, c) // never answers
			})
			up := newFakeUpstream(t, addr)
			p := startHTTPProxy(t, HTTPConfig{}, routeAll(t, "web.shop"), Upstreams{"web.shop": up}, ServerConfig{})
			c := p.dial(t)
			c.SetDeadline(time.Now().Add(waitLimit))
			io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
			time.Sleep(50 * time.Millisecond) // the body pump runs
			tc.rest(c)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 400 {
				t.Errorf("got %s (%s), want 400", resp.Status, resp.Header.Get(ErrorHeader))
			}
			d := up.waitDones(t, 1)
			if !errors.Is(d[0].info.Err, context.Canceled) {
				t.Errorf("Done(%v), want context.Canceled (neutral for the endpoint)", d[0].info.Err)
			}
		})
	}
}

// Interim (1xx) responses reach the client without hop-by-hop fields and
// the fields their Connection field names, and with Via.
func TestH1InterimResponseHopByHop(t *testing.T) {
	addr := rawH1Backend(t, func(c net.Conn, _ int) {
		br := bufio.NewReader(c)
		if _, err := readRawHead(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nConnection: X-Secret\r\nX-Secret: s3cr3t\r\nKeep-Alive: timeout=5\r\nLink: </a>\r\n\r\n")
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		readRawHead(br)
	})
	p := startHTTPProxy(t, HTTPConfig{}, routeAll(t, "web.shop"),
		Upstreams{"web.shop": newFakeUpstream(t, addr)}, ServerConfig{})
	c := p.dial(t)
	c.SetReadDeadline(time.Now().Add(waitLimit))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	head, err := readRawHead(br)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(head, "HTTP/1.1 103 Early Hints\r\n") || !strings.Contains(head, "\r\nLink: </a>\r\n") ||
		!strings.Contains(head, "\r\nVia: 1.1 outrigger\r\n") ||
		strings.Contains(head, "X-Secret") || strings.Contains(head, "Keep-Alive") || strings.Contains(head, "Connection") {
		t.Errorf("interim response relayed as:\n%s", head)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 || string(b) != "ok" {
		t.Errorf("final response %s %q", resp.Status, b)
	}
}

// Bytes an endpoint sends on a connection after its response ended (here
// an unsolicited second response, a little later) must not become the
// response to the next request on that pooled connection, which may be
// another client's: the connection is dropped, as net/http's Transport
// does ("Unsolicited response received on idle HTTP channel").
func TestH1UnsolicitedBytesOnPooledConnection(t *testing.T) {
	var first sync.Once
	addr := rawH1Backend(t, func(c net.Conn, _ int) {
		br := bufio.NewReader(c)
		for {
			r, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, r.Body)
			evil := false
			first.Do(func() { evil = true })
			if evil {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
				time.Sleep(30 * time.Millisecond)
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil")
				continue
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nreal")
		}
	})
	p := startHTTPProxy(t, HTTPConfig{}, routeAll(t, "web.shop"),
		Upstreams{"web.shop": newFakeUpstream(t, addr)}, ServerConfig{})
	_, b1 := newClient(t, false).get(t, "http://"+p.addr+"/victim1")
	time.Sleep(100 * time.Millisecond)
	_, b2 := newClient(t, false).get(t, "http://"+p.addr+"/victim2")
	if b1 != "hello" || b2 != "real" {
		t.Errorf("bodies %q, %q; want \"hello\", \"real\" (the second client got the endpoint's unsolicited bytes)", b1, b2)
	}
}
