package proxy

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/route"
	"github.com/outrigger-mesh/outrigger/resilience"
)

// A minimal RFC 6455 implementation, enough to test a real WebSocket
// through the proxy: the opening handshake (§4), framing with client
// masking (§5.2, §5.3), control frames (§5.5) and the closing handshake
// (§7).

// wsGUID is the fixed GUID of the accept key (RFC 6455 §1.3).
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// WebSocket opcodes (RFC 6455 §5.2).
const (
	wsContinuation = 0x0
	wsText         = 0x1
	wsBinary       = 0x2
	wsClose        = 0x8
	wsPing         = 0x9
	wsPong         = 0xA
)

func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// wsFrame is one frame as read off the wire.
type wsFrame struct {
	fin     bool
	op      byte
	masked  bool
	payload []byte
}

// wsWrite writes one frame; a client masks with a fresh key (§5.3).
func wsWrite(w io.Writer, fin bool, op byte, payload []byte, mask bool) error {
	var hdr [14]byte
	hdr[0] = op
	if fin {
		hdr[0] |= 0x80
	}
	n := 2
	switch l := len(payload); {
	case l < 126:
		hdr[1] = byte(l)
	case l <= 0xFFFF:
		hdr[1] = 126
		binary.BigEndian.PutUint16(hdr[2:], uint16(l))
		n = 4
	default:
		hdr[1] = 127
		binary.BigEndian.PutUint64(hdr[2:], uint64(l))
		n = 10
	}
	body := payload
	if mask {
		hdr[1] |= 0x80
		key := hdr[n : n+4]
		rand.Read(key)
		n += 4
		body = make([]byte, len(payload))
		for i := range payload {
			body[i] = payload[i] ^ key[i%4]
		}
	}
	if _, err := w.Write(hdr[:n]); err != nil {
		return err
	}
	_, err := w.Write(body)
	return err
}

// wsRead reads one frame, unmasking its payload.
func wsRead(r io.Reader) (wsFrame, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return wsFrame{}, err
	}
	f := wsFrame{fin: hdr[0]&0x80 != 0, op: hdr[0] & 0x0F, masked: hdr[1]&0x80 != 0}
	if hdr[0]&0x70 != 0 {
		return f, errors.New("reserved bits set")
	}
	n := uint64(hdr[1] & 0x7F)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return f, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return f, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	var key [4]byte
	if f.masked {
		if _, err := io.ReadFull(r, key[:]); err != nil {
			return f, err
		}
	}
	if n > 64<<20 {
		return f, fmt.Errorf("frame of %d bytes", n)
	}
	f.payload = make([]byte, n)
	if _, err := io.ReadFull(r, f.payload); err != nil {
		return f, err
	}
	if f.masked {
		for i := range f.payload {
			f.payload[i] ^= key[i%4]
		}
	}
	return f, nil
}

func wsClosePayload(code uint16, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, code), reason...)
}

// wsServerResult is how the backend's side of one connection ended.
type wsServerResult struct {
	err      error  // a protocol violation or I/O error
	closedBy string // "client" or "server": who sent the first close frame
	code     uint16 // the close code the client sent
	peerEOF  bool   // after the close handshake, the client's side of TCP closed cleanly
}

// startWSBackend is a WebSocket echo server: it echoes every data frame as
// is (so fragmentation survives), answers pings with pongs, and on the text
// message "bye" starts the closing handshake itself with code 1001. After
// the closing handshake it half-closes TCP first, as §7.1.1 asks of
// servers, then waits for the client's side to close. Each connection's
// result arrives on the returned channel.
func startWSBackend(t *testing.T) (*httpBackend, <-chan wsServerResult) {
	results := make(chan wsServerResult, 16)
	be := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get("Sec-WebSocket-Key")
		if !wsHasToken(r.Header, "Connection", "upgrade") || !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") ||
			r.Header.Get("Sec-WebSocket-Version") != "13" || key == "" {
			http.Error(w, "not a websocket handshake", http.StatusBadRequest)
			return
		}
		nc, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(waitLimit))
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", wsAccept(key))
		brw.Flush()
		results <- wsServe(nc.(*net.TCPConn), brw)
	}))
	return be, results
}

func wsServe(nc *net.TCPConn, brw *bufio.ReadWriter) wsServerResult {
	var res wsServerResult
	send := func(op byte, fin bool, p []byte) error {
		if err := wsWrite(brw, fin, op, p, false); err != nil {
			return err
		}
		return brw.Flush()
	}
	for {
		f, err := wsRead(brw)
		if err != nil {
			res.err = fmt.Errorf("reading a frame: %w", err)
			return res
		}
		if !f.masked {
			res.err = errors.New("client frame not masked (RFC 6455 §5.1)")
			return res
		}
		switch f.op {
		case wsPing:
			err = send(wsPong, true, f.payload)
		case wsClose:
			if len(f.payload) >= 2 {
				res.code = binary.BigEndian.Uint16(f.payload)
			}
			if res.closedBy == "" {
				res.closedBy = "client"
				if err := send(wsClose, true, f.payload[:min(2, len(f.payload))]); err != nil {
					res.err = err
					return res
				}
			}
			// Both close frames are through: the server closes TCP first.
			nc.CloseWrite()
			n, err := brw.Read(make([]byte, 1))
			res.peerEOF = n == 0 && err == io.EOF
			if !res.peerEOF {
				res.err = fmt.Errorf("after the closing handshake: read %d bytes, %v; want EOF", n, err)
			}
			return res
		case wsText, wsBinary, wsContinuation:
			if f.op == wsText && f.fin && string(f.payload) == "bye" {
				res.closedBy = "server"
				err = send(wsClose, true, wsClosePayload(1001, "going away"))
				break
			}
			err = send(f.op, f.fin, f.payload)
		default:
			err = fmt.Errorf("unknown opcode %#x", f.op)
		}
		if err != nil {
			res.err = err
			return res
		}
	}
}

// wsClient is the client end of a WebSocket through the proxy.
type wsClient struct {
	*net.TCPConn
	br *bufio.Reader
}

// wsDial opens a WebSocket to path through the proxy at addr and checks the
// handshake answer (§4.1): 101, Upgrade, Connection and the accept key.
func wsDial(t *testing.T, addr, path string) *wsClient {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, waitLimit)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(waitLimit))
	var raw [16]byte
	rand.Read(raw[:])
	key := base64.StdEncoding.EncodeToString(raw[:])
	io.WriteString(nc, rawRequest("GET "+path+" HTTP/1.1", "Host: ws.example", "Upgrade: websocket",
		"Connection: Upgrade", "Sec-WebSocket-Key: "+key, "Sec-WebSocket-Version: 13"))
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") ||
		!wsHasToken(resp.Header, "Connection", "upgrade") || resp.Header.Get("Sec-WebSocket-Accept") != wsAccept(key) {
		t.Fatalf("handshake answer: %s, headers %v", resp.Status, resp.Header)
	}
	return &wsClient{TCPConn: nc.(*net.TCPConn), br: br}
}

func (c *wsClient) send(t *testing.T, fin bool, op byte, p []byte) {
	t.Helper()
	if err := wsWrite(c, fin, op, p, true); err != nil {
		t.Fatalf("sending a frame: %v", err)
	}
}

func (c *wsClient) recv(t *testing.T) wsFrame {
	t.Helper()
	f, err := wsRead(c.br)
	if err != nil {
		t.Fatalf("receiving a frame: %v", err)
	}
	if f.masked {
		t.Fatal("server frame masked (RFC 6455 §5.1)")
	}
	return f
}

// echoes sends a message of each size and kind (length encodings of 7, 16
// and 64 bits, a fragmented message, a ping) and requires each back.
func (c *wsClient) echoes(t *testing.T) {
	t.Helper()
	for _, size := range []int{0, 5, 125, 126, 65535, 65536, 1 << 20} {
		msg := bytes.Repeat([]byte{byte(size)}, size)
		c.send(t, true, wsBinary, msg)
		if f := c.recv(t); f.op != wsBinary || !f.fin || !bytes.Equal(f.payload, msg) {
			t.Fatalf("echo of %d bytes: op %#x fin %v, %d bytes back", size, f.op, f.fin, len(f.payload))
		}
	}
	parts := []string{"frag", "ment", "ed"}
	for i, p := range parts {
		op := byte(wsContinuation)
		if i == 0 {
			op = wsText
		}
		c.send(t, i == len(parts)-1, op, []byte(p))
	}
	for i, p := range parts {
		f := c.recv(t)
		if string(f.payload) != p || f.fin != (i == len(parts)-1) {
			t.Fatalf("fragment %d back: %q fin %v", i, f.payload, f.fin)
		}
	}
	c.send(t, true, wsPing, []byte("are you there"))
	if f := c.recv(t); f.op != wsPong || string(f.payload) != "are you there" {
		t.Fatalf("ping answered with op %#x %q", f.op, f.payload)
	}
}

// expectEOF requires the proxy to have closed the client's connection
// cleanly (FIN, not a reset or a hang).
func (c *wsClient) expectEOF(t *testing.T) {
	t.Helper()
	n, err := c.br.Read(make([]byte, 1))
	if n != 0 || err != io.EOF {
		t.Fatalf("after the closing handshake: read %d bytes, %v; want EOF", n, err)
	}
}

func wsResult(t *testing.T, results <-chan wsServerResult) wsServerResult {
	t.Helper()
	select {
	case r := <-results:
		if r.err != nil {
			t.Fatalf("backend: %v", r.err)
		}
		return r
	case <-time.After(waitLimit):
		t.Fatal("backend connection did not end")
		return wsServerResult{}
	}
}

func TestWebSocketEchoAndClientClose(t *testing.T) {
	be, results := startWSBackend(t)
	up := newFakeUpstream(t, be.addr)
	p := startHTTPProxy(t, HTTPConfig{}, routeAll(t, "ws.test"), Upstreams{"ws.test": up}, ServerConfig{})
	c := wsDial(t, p.addr, "/chat")
	c.echoes(t)

	// Closing handshake started by the client (§7.1.2): its close frame
	// goes through, the server's comes back with the same code, then the
	// server closes TCP, and the client's close reaches the server.
	c.send(t, true, wsClose, wsClosePayload(1000, "done"))
	f := c.recv(t)
	if f.op != wsClose || len(f.payload) < 2 || binary.BigEndian.Uint16(f.payload) != 1000 {
		t.Fatalf("close answered with op %#x payload %q", f.op, f.payload)
	}
	c.expectEOF(t)
	c.Close()
	if r := wsResult(t, results); r.closedBy != "client" || r.code != 1000 || !r.peerEOF {
		t.Errorf("backend saw %+v", r)
	}
	assertDonesMatchPicks(t, up)
}

func TestWebSocketServerClose(t *testing.T) {
	be, results := startWSBackend(t)
	up := newFakeUpstream(t, be.addr)
	p := startHTTPProxy(t, HTTPConfig{}, routeAll(t, "ws.test"), Upstreams{"ws.test": up}, ServerConfig{})
	c := wsDial(t, p.addr, "/chat")
	c.send(t, true, wsText, []byte("bye"))
	f := c.recv(t)
	if f.op != wsClose || len(f.payload) < 2 || binary.BigEndian.Uint16(f.payload) != 1001 {
		t.Fatalf("expected the server's close frame 1001, got op %#x payload %q", f.op, f.payload)
	}
	c.send(t, true, wsClose, f.payload[:2]) // echo the code back (§5.5.1)
	c.expectEOF(t)
	c.Close()
	if r := wsResult(t, results); r.closedBy != "server" || r.code != 1001 || !r.peerEOF {
		t.Errorf("backend saw %+v", r)
	}
}

// An open WebSocket survives its HTTP listener being replaced on the same
// socket (Server.Apply, as a reload that changes the listener's
// connection settings does): the tunnel keeps carrying frames and closes
// cleanly, while new requests reach the new listener.
func TestWebSocketSurvivesListenerReplace(t *testing.T) {
	be, results := startWSBackend(t)
	up := newFakeUpstream(t, be.addr)
	srv := NewServer(ServerConfig{DrainTimeout: time.Hour}, Options{},
		NewHTTPListener(HTTPConfig{Name: "h", Listen: "127.0.0.1:0"}, routeAll(t, "ws.test"), Upstreams{"ws.test": up}, Options{}))
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	serving(t, srv)
	addr := srv.Addrs()["h"].String()
	c := wsDial(t, addr, "/chat")

	fixed := mustTable(t, routeFixed(t))
	err := srv.Apply(Change{Remove: []string{"h"}, Add: []Listener{
		NewHTTPListener(HTTPConfig{Name: "h", Listen: "127.0.0.1:0", HeaderTimeout: time.Second}, fixed, Upstreams{}, Options{})}})
	if err != nil {
		t.Fatal(err)
	}
	if status, _ := rawExchange(t, addr, rawRequest("GET / HTTP/1.1", "Host: x", "Connection: close")); status != http.StatusTeapot {
		t.Errorf("new request after the replace: %d, want the new listener's 418", status)
	}
	c.echoes(t)
	c.send(t, true, wsClose, wsClosePayload(1000, ""))
	if f := c.recv(t); f.op != wsClose {
		t.Fatalf("close answered with op %#x", f.op)
	}
	c.expectEOF(t)
	c.Close()
	if r := wsResult(t, results); !r.peerEOF {
		t.Errorf("backend saw %+v", r)
	}
}

// routeFixed is a catch-all route answering 418 itself.
func routeFixed(t *testing.T) route.RouteConfig {
	t.Helper()
	return route.RouteConfig{Fixed: &route.FixedResponse{Status: http.StatusTeapot}}
}

// An open WebSocket survives SetRoutes with a table that keeps its route,
// and keeps carrying frames; a new handshake sees the new table.
func TestWebSocketSurvivesSetRoutes(t *testing.T) {
	be, results := startWSBackend(t)
	up := newFakeUpstream(t, be.addr)
	l := NewHTTPListener(HTTPConfig{Name: "h", Listen: "127.0.0.1:0"},
		mustTable(t, route.RouteConfig{Match: route.MatchConfig{Path: route.PathMatch{Type: route.PathPrefix, Value: "/chat"}},
			Backends: []route.Backend{{Service: "ws.test"}}}),
		Upstreams{"ws.test": up}, Options{})
	srv := NewServer(ServerConfig{}, Options{}, l)
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	serving(t, srv)
	addr := srv.Addrs()["h"].String()
	c := wsDial(t, addr, "/chat")
	c.echoes(t)

	// The new table keeps /chat (same service, same upstream) and adds a
	// fixed route.
	l.SetRoutes(mustTable(t,
		route.RouteConfig{Match: route.MatchConfig{Path: route.PathMatch{Type: route.PathPrefix, Value: "/chat"}},
			Backends: []route.Backend{{Service: "ws.test"}}},
		route.RouteConfig{Match: route.MatchConfig{Path: route.PathMatch{Type: route.PathExact, Value: "/teapot"}},
			Fixed: &route.FixedResponse{Status: http.StatusTeapot}}),
		Upstreams{"ws.test": up})
	if status, _ := rawExchange(t, addr, rawRequest("GET /teapot HTTP/1.1", "Host: x", "Connection: close")); status != http.StatusTeapot {
		t.Errorf("new route after SetRoutes: %d, want 418", status)
	}
	c.echoes(t)
	c2 := wsDial(t, addr, "/chat")
	c2.echoes(t)
	for _, cl := range []*wsClient{c, c2} {
		cl.send(t, true, wsClose, wsClosePayload(1000, ""))
		if f := cl.recv(t); f.op != wsClose {
			t.Fatalf("close answered with op %#x", f.op)
		}
		cl.expectEOF(t)
		cl.Close()
		if r := wsResult(t, results); !r.peerEOF || r.code != 1000 {
			t.Errorf("backend saw %+v", r)
		}
	}
	assertDonesMatchPicks(t, up)
}

// wsHasToken reports whether a comma-separated header field holds token,
// case-insensitively (RFC 6455 §4.1 requires it of Connection).
func wsHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// An endpoint that answers a WebSocket handshake with 101 to another
// protocol (or without naming one) gets no tunnel: the client gets 502
// upstream_reset and its connection closes, the endpoint's connection is
// closed, its pick gets one Done with the failure, and the request leaves
// the retry budget (ReverseProxy answered such a 101 without closing its
// body: no Done, the budget's count and the socket leaked).
func TestWebSocketSwitchToOtherProtocol(t *testing.T) {
	for _, e := range []struct {
		name string
		cfg  HTTPConfig
	}{{"fast path handoff", HTTPConfig{}}, {"net/http", HTTPConfig{NetHTTPOnly: true}}} {
		for _, a := range []struct{ name, answer string }{
			{"other protocol", "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\n"},
			{"no Connection upgrade", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"},
		} {
			t.Run(e.name+"/"+a.name, func(t *testing.T) {
				closed := make(chan struct{}, 1)
				addr := startBackend(t, func(c *net.TCPConn) {
					br := bufio.NewReader(c)
					if _, err := http.ReadRequest(br); err != nil {
						return
					}
					io.WriteString(c, a.answer)
					io.Copy(io.Discard, br) // until the proxy closes it
					closed <- struct{}{}
				})
				up := newFakeUpstream(t, addr)
				r := newRetry(t, resilience.RetryConfig{Attempts: 2, On: []string{"503"}}, resilience.BudgetConfig{})
				url, _ := retryProxy(t, e.cfg, up, r)
				status, closedConn := rawExchange(t, strings.TrimPrefix(url, "http://"), rawRequest("GET /ws HTTP/1.1",
					"Host: ws.example", "Upgrade: websocket", "Connection: Upgrade",
					"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"))
				if status != http.StatusBadGateway || !closedConn {
					t.Errorf("client got %d, connection closed %v; want 502 and closed", status, closedConn)
				}
				dones := assertDonesMatchPicks(t, up)
				var se *switchError
				if len(dones) != 1 || !errors.As(dones[0].info.Err, &se) {
					t.Errorf("Done calls %+v; want one, with the switch error", dones)
				}
				select {
				case <-closed:
				case <-time.After(waitLimit):
					t.Errorf("the endpoint's connection is still open after %v", waitLimit)
				}
				waitBudgetIdle(t, r.Budget)
			})
		}
	}
}
