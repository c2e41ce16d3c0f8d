package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// reloadState is the "reload" part of the admin /config.
type reloadState struct {
	Reload struct {
		Generation    int      `json:"generation"`
		Failures      int      `json:"failures"`
		LastError     []string `json:"last_error"`
		RestartNeeded []string `json:"restart_needed"`
	} `json:"reload"`
}

func reloadStatus(t *testing.T) reloadState {
	t.Helper()
	var s reloadState
	if code, body := getJSON(t, "http://127.0.0.1:15000/config", &s); code != http.StatusOK {
		t.Fatalf("/config = %d %s", code, body)
	}
	return s
}

// editConfig rewrites the demo's outrigger.yaml (as an editor saves: a new
// file renamed over the old) with each old→new replacement applied once.
func editConfig(t *testing.T, dir string, pairs ...string) string {
	t.Helper()
	path := filepath.Join(dir, "outrigger.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for i := 0; i < len(pairs); i += 2 {
		if !strings.Contains(s, pairs[i]) {
			t.Fatalf("outrigger.yaml has no %q to replace", pairs[i])
		}
		s = strings.Replace(s, pairs[i], pairs[i+1], 1)
	}
	writeFile(t, path, s)
	return s
}

// waitReload waits until /config shows the generation or failure count
// beyond before.
func waitReload(t *testing.T, before reloadState) reloadState {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		s := reloadStatus(t)
		if s.Reload.Generation > before.Reload.Generation || s.Reload.Failures > before.Reload.Failures {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("no reload within %v: /config reload %+v", waitLimit, s.Reload)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// countingHTTP is an HTTP/1.1 keep-alive client that counts its dials.
func countingHTTP(t *testing.T) (*http.Client, *atomic.Int64) {
	var dials atomic.Int64
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: waitLimit}, &dials
}

// A bad edit is refused with file, line and field at ERROR in the log, and
// the running config keeps serving; the next good edit applies.
func TestReloadBadEditKeepsRunningConfig(t *testing.T) {
	dir := demo(t)
	p := startOutrigger(t, dir)
	c := dial(t, proxyAddr)
	before := reloadStatus(t)

	text := editConfig(t, dir, "balancer: round_robin     # or least_conn", "balancer: rr")
	line := 1 + strings.Count(text[:strings.Index(text, "balancer: rr")], "\n")
	st := waitReload(t, before)
	want := fmt.Sprintf("%s:%d: outbound[0].balancer: unknown balancer \"rr\" (want round_robin or least_conn)",
		filepath.Join(dir, "outrigger.yaml"), line)
	if st.Reload.Failures != 1 || st.Reload.Generation != before.Reload.Generation ||
		len(st.Reload.LastError) != 1 || st.Reload.LastError[0] != want {
		t.Fatalf("/config reload %+v, want one failure: %q", st.Reload, want)
	}
	out := p.output()
	if !strings.Contains(out, "level=ERROR") || !strings.Contains(out, strings.ReplaceAll(want, `"`, `\"`)) {
		t.Errorf("the log lacks the problem at ERROR")
	}
	c.roundTrip(t, "still served")
	if c2 := dial(t, proxyAddr); c2.backend == "" {
		t.Error("no greeting from a new connection after the bad edit")
	}

	editConfig(t, dir, "balancer: rr", "balancer: least_conn")
	st = waitReload(t, st)
	if st.Reload.Generation != before.Reload.Generation+1 || len(st.Reload.LastError) != 0 {
		t.Errorf("after a good edit: %+v", st.Reload)
	}
	c.roundTrip(t, "still open after the policy change")
}

// A route change is applied to the next request on an open keep-alive
// connection, which stays open.
func TestReloadRouteChangeKeepsKeepAliveConnection(t *testing.T) {
	dir := demo(t)
	startOutrigger(t, dir)
	client, dials := countingHTTP(t)
	resp, _, _ := get(t, client, "http://127.0.0.1:9080/shop")
	if resp.Header.Get("X-Demo-Route") != "web" {
		t.Fatalf("before: route %q", resp.Header.Get("X-Demo-Route"))
	}
	before := reloadStatus(t)
	editConfig(t, dir, "set: [{name: X-Demo-Route, value: web}]", "set: [{name: X-Demo-Route, value: web-v2}]")
	waitReload(t, before)
	resp, a, body := get(t, client, "http://127.0.0.1:9080/shop")
	if resp.StatusCode != 200 || resp.Header.Get("X-Demo-Route") != "web-v2" || !strings.HasPrefix(a.Name, "web-") {
		t.Fatalf("after: %d route %q backend %q %s", resp.StatusCode, resp.Header.Get("X-Demo-Route"), a.Name, body)
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("client dialed %d connections, want 1: the reload closed the keep-alive connection", n)
	}
}

// SIGHUP: a new listener appears, a removed one closes while another
// listener's open TCP connection runs on.
func TestReloadSIGHUPAddsAndRemovesListeners(t *testing.T) {
	const extra = "127.0.0.1:9010"
	if ln, err := net.Listen("tcp", extra); err != nil {
		t.Fatalf("port of the added listener is taken: %v", err)
	} else {
		ln.Close()
	}
	dir := demo(t)
	// outrigger.yaml is a link into a directory the file watch does not
	// cover, so only the SIGHUP can apply the edit.
	real := filepath.Join(dir, "real")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(real, "outrigger.yaml")
	if err := os.Rename(filepath.Join(dir, "outrigger.yaml"), path); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(path, filepath.Join(dir, "outrigger.yaml")); err != nil {
		t.Fatal(err)
	}
	p := startOutrigger(t, dir)
	c := dial(t, proxyAddr)
	client, _ := countingHTTP(t)
	if resp, _, _ := get(t, client, "http://127.0.0.1:9080/shop"); resp.StatusCode != 200 {
		t.Fatalf("web listener before: %d", resp.StatusCode)
	}
	before := reloadStatus(t)

	// Drop the web listener (everything from its entry up to grpc's) and
	// add a TCP listener.
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	from, to := strings.Index(s, "  - name: web\n"), strings.Index(s, "  - name: grpc\n")
	if from < 0 || to < from {
		t.Fatal("demo config has no web listener before grpc")
	}
	s = s[:from] + "  - {name: extra, listen: " + extra + ", service: echo.demo}\n" + s[to:]
	writeFile(t, path, s)
	p.signal(syscall.SIGHUP)
	if st := waitReload(t, before); st.Reload.Failures != 0 {
		t.Fatalf("reload failed: %v", st.Reload.LastError)
	}

	if ce := dial(t, extra); ce.backend == "" {
		t.Error("no greeting through the added listener")
	}
	if nc, err := net.DialTimeout("tcp", "127.0.0.1:9080", time.Second); err == nil {
		nc.Close()
		t.Error("the removed web listener still accepts")
	}
	c.roundTrip(t, "the echo listener's connection runs on")
	if !strings.Contains(p.output(), "listeners removed: web; listeners added: extra") {
		t.Errorf("no reload summary in the log")
	}
}

// A WebSocket through the web listener survives a config reload that
// keeps its route, and keeps carrying frames.
func TestReloadKeepsWebSocket(t *testing.T) {
	dir := demo(t)
	ws := startWSEcho(t)
	host, port, _ := net.SplitHostPort(ws)
	// A ws.demo service and a /ws route to it, before the catch-all.
	services := filepath.Join(dir, "services.yaml")
	b, err := os.ReadFile(services)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, services, string(b)+fmt.Sprintf("  - name: ws.demo\n    endpoints: [{id: ws-1, address: %s, port: %s}]\n", host, port))
	editConfig(t, dir, "      - name: web             # everything else",
		"      - name: ws\n        match: {path: {type: Prefix, value: /ws}}\n        backends: [{service: ws.demo}]\n      - name: web             # everything else")
	startOutrigger(t, dir)

	c := wsClientDial(t, "127.0.0.1:9080", "/ws")
	c.echo(t, "before the reload")
	before := reloadStatus(t)
	editConfig(t, dir, "set: [{name: X-Demo-Route, value: web}]", "set: [{name: X-Demo-Route, value: web-v2}]")
	waitReload(t, before)
	c.echo(t, "after the reload")
	client, _ := countingHTTP(t)
	if resp, _, _ := get(t, client, "http://127.0.0.1:9080/shop"); resp.Header.Get("X-Demo-Route") != "web-v2" {
		t.Errorf("the reload did not apply: route %q", resp.Header.Get("X-Demo-Route"))
	}
	c.closeHandshake(t)
}

// A minimal WebSocket (RFC 6455) for the test above: text frames, masked
// from the client, and the closing handshake.

const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

func wsWrite(w io.Writer, op byte, payload []byte, mask bool) error {
	hdr := []byte{0x80 | op, byte(len(payload))} // payloads here are < 126 bytes
	body := payload
	if mask {
		key := make([]byte, 4)
		rand.Read(key)
		hdr[1] |= 0x80
		hdr = append(hdr, key...)
		body = make([]byte, len(payload))
		for i := range payload {
			body[i] = payload[i] ^ key[i%4]
		}
	}
	_, err := w.Write(append(hdr, body...))
	return err
}

func wsRead(r io.Reader) (op byte, payload []byte, masked bool, err error) {
	var hdr [2]byte
	if _, err = io.ReadFull(r, hdr[:]); err != nil {
		return
	}
	op, masked = hdr[0]&0x0F, hdr[1]&0x80 != 0
	n := int(hdr[1] & 0x7F)
	if n >= 126 {
		return op, nil, masked, fmt.Errorf("frame length code %d not supported here", n)
	}
	var key [4]byte
	if masked {
		if _, err = io.ReadFull(r, key[:]); err != nil {
			return
		}
	}
	payload = make([]byte, n)
	if _, err = io.ReadFull(r, payload); err != nil {
		return
	}
	for i := range payload {
		payload[i] ^= key[i%4] // all zero when not masked
	}
	return
}

// startWSEcho runs a WebSocket echo server; after the closing handshake it
// closes TCP first, as RFC 6455 §7.1.1 asks of servers.
func startWSEcho(t *testing.T) string {
	t.Helper()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get("Sec-WebSocket-Key")
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || key == "" {
			http.Error(w, "not a websocket handshake", http.StatusBadRequest)
			return
		}
		nc, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer nc.Close()
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", wsAccept(key))
		brw.Flush()
		for {
			op, p, masked, err := wsRead(brw)
			if err != nil || !masked {
				return
			}
			wsWrite(brw, op, p, false)
			brw.Flush()
			if op == 0x8 { // close: answered; close TCP
				return
			}
		}
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

type wsConn struct {
	net.Conn
	br *bufio.Reader
}

func wsClientDial(t *testing.T, addr, path string) *wsConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, waitLimit)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(waitLimit))
	raw := make([]byte, 16)
	rand.Read(raw)
	key := base64.StdEncoding.EncodeToString(raw)
	fmt.Fprintf(nc, "GET %s HTTP/1.1\r\nHost: ws.demo\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", path, key)
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("WebSocket handshake: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != wsAccept(key) {
		t.Fatalf("WebSocket handshake answer: %s %v", resp.Status, resp.Header)
	}
	return &wsConn{Conn: nc, br: br}
}

func (c *wsConn) echo(t *testing.T, msg string) {
	t.Helper()
	if err := wsWrite(c, 0x1, []byte(msg), true); err != nil {
		t.Fatalf("WebSocket send: %v", err)
	}
	op, p, masked, err := wsRead(c.br)
	if err != nil || op != 0x1 || masked || string(p) != msg {
		t.Fatalf("WebSocket echo of %q: op %#x %q masked %v, %v", msg, op, p, masked, err)
	}
}

func (c *wsConn) closeHandshake(t *testing.T) {
	t.Helper()
	if err := wsWrite(c, 0x8, []byte{0x03, 0xE8}, true); err != nil { // 1000
		t.Fatal(err)
	}
	if op, p, _, err := wsRead(c.br); err != nil || op != 0x8 || string(p) != "\x03\xe8" {
		t.Fatalf("close answered with op %#x %q, %v", op, p, err)
	}
	if n, err := c.br.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("after the closing handshake: %d bytes, %v; want EOF", n, err)
	}
}
