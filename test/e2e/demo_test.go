package e2e

import (
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const proxyAddr = "127.0.0.1:9000"

// The quick start, as a user runs it: connections reach the three backends
// in turn, and the echo client prints their greetings.
func TestDemoSpreadsConnectionsOverBackendsInTurn(t *testing.T) {
	startOutrigger(t, demo(t))

	var got []string
	for range 6 {
		c := dial(t, proxyAddr)
		c.roundTrip(t, "hello")
		c.Close()
		got = append(got, c.backend)
	}
	// Round robin starts at a random backend; after that it rotates.
	for i := 3; i < 6; i++ {
		if got[i] != got[i-3] {
			t.Errorf("backends %v do not rotate with period 3", got)
			break
		}
	}
	seen := map[string]int{}
	for _, b := range got {
		seen[b]++
	}
	if diff := cmp.Diff(seen, map[string]int{"echo-1": 2, "echo-2": 2, "echo-3": 2}); diff != "" {
		t.Errorf("connections per backend (-got +want):\n%s", diff)
	}

	out, err := exec.Command(filepath.Join(bin, "echo"), "-dial", proxyAddr, "-n", "3").CombinedOutput()
	if err != nil {
		t.Fatalf("echo -dial: %v\n%s", err, out)
	}
	for _, name := range []string{"echo-1", "echo-2", "echo-3"} {
		if !strings.Contains(string(out), name+" hello from 127.0.0.1:910") {
			t.Errorf("echo -dial output lacks %s:\n%s", name, out)
		}
	}
}

// A 100 MB stream goes through byte-identical both ways, and half-close
// holds: after the client's CloseWrite the backend still finishes echoing.
func TestLargeTransferAndHalfClose(t *testing.T) {
	startOutrigger(t, demo(t))
	c := dial(t, proxyAddr)
	c.SetDeadline(time.Now().Add(2 * time.Minute))

	const size = 100 << 20
	sent := sha256.New()
	writeErr := make(chan error, 1)
	go func() {
		src := io.TeeReader(io.LimitReader(rand.NewChaCha8([32]byte{7}), size), sent)
		if _, err := io.Copy(c.Conn, src); err != nil {
			writeErr <- err
			return
		}
		writeErr <- c.Conn.(*net.TCPConn).CloseWrite()
	}()
	got := sha256.New()
	n, err := io.Copy(got, c.r) // reads until the backend closes after our CloseWrite
	if err != nil {
		t.Fatalf("read after %d bytes: %v", n, err)
	}
	if err := <-writeErr; err != nil {
		t.Fatal(err)
	}
	if n != size {
		t.Fatalf("received %d bytes, sent %d", n, size)
	}
	if string(got.Sum(nil)) != string(sent.Sum(nil)) {
		t.Fatal("echoed bytes differ from sent bytes")
	}
}

// Dropping a backend from the file moves new connections away from it while
// a connection already open to it keeps working until its client closes it.
func TestRemovedEndpointGetsNoNewConnectionsAndKeepsOpenOnes(t *testing.T) {
	dir := demo(t)
	startOutrigger(t, dir)

	var open *conn
	for range 3 {
		c := dial(t, proxyAddr)
		if c.backend == "echo-3" {
			open = c
			break
		}
		c.Close()
	}
	if open == nil {
		t.Fatal("no connection reached echo-3 in a full rotation")
	}
	open.roundTrip(t, "before")

	edited := time.Now()
	writeFile(t, filepath.Join(dir, "services.yaml"), `services:
  - name: echo.demo
    endpoints:
      - {id: echo-1, address: 127.0.0.1, port: 9101, cluster: local, zone: local-a}
      - {id: echo-2, address: 127.0.0.1, port: 9102, cluster: local, zone: local-a}
`)
	// Wait until six new connections in a row avoid echo-3; report how long
	// the change took to apply.
	clean := 0
	for clean < 6 {
		if time.Since(edited) > waitLimit {
			t.Fatalf("new connections still reach echo-3 %v after the edit", waitLimit)
		}
		c := dial(t, proxyAddr)
		c.Close()
		if c.backend == "echo-3" {
			clean = 0
			continue
		}
		clean++
	}
	t.Logf("endpoint removal applied to new connections within %v", time.Since(edited))

	open.roundTrip(t, "after the edit")
	open.Conn.(*net.TCPConn).CloseWrite()
	if rest, err := io.ReadAll(open.r); err != nil || len(rest) != 0 {
		t.Errorf("open connection to echo-3 ended with %q, %v; want a clean EOF", rest, err)
	}
}

// A broken edit of the services file keeps the last good endpoints and logs
// the file, line and field.
func TestBadServicesEditKeepsLastGood(t *testing.T) {
	dir := demo(t)
	p := startOutrigger(t, dir)
	writeFile(t, filepath.Join(dir, "services.yaml"), `services:
  - name: echo.demo
    endpoints:
      - {id: echo-1, address: 127.0.0.1, port: 99999}
`)
	deadline := time.Now().Add(waitLimit)
	for !strings.Contains(p.output(), "services.yaml:4") {
		if time.Now().After(deadline) {
			t.Fatalf("no log line naming services.yaml:4 within %v", waitLimit)
		}
		time.Sleep(20 * time.Millisecond)
	}
	seen := map[string]bool{}
	for range 3 {
		c := dial(t, proxyAddr)
		c.Close()
		seen[c.backend] = true
	}
	if len(seen) != 3 {
		t.Errorf("after a bad edit connections reached %v; want all three last-good backends", seen)
	}
}

// With every endpoint down, a client's connection is closed at once rather
// than left hanging.
func TestAllEndpointsDownClosesClientAtOnce(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "services.yaml"), `services:
  - name: echo.demo
    endpoints:
      - {address: 127.0.0.1, port: 9101}
      - {address: 127.0.0.1, port: 9102}
`)
	writeFile(t, filepath.Join(dir, "outrigger.yaml"), `discovery: [{name: local, file: {path: services.yaml}}]
outbound: [{name: echo, listen: "127.0.0.1:9000", service: echo.demo, connect_timeout: 1s}]
`)
	startOutrigger(t, dir) // no backend is running
	c, err := net.Dial("tcp", proxyAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(waitLimit))
	n, err := c.Read(make([]byte, 1))
	if n != 0 || err == nil {
		t.Fatalf("read = %d, %v; want the connection closed", n, err)
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("connection hung for %v instead of closing", waitLimit)
	}
}

// SIGTERM drains: readiness fails, the listener stops accepting, an open
// transfer finishes, and the process exits 0.
func TestSIGTERMDrainsOpenTransfer(t *testing.T) {
	p := startOutrigger(t, demo(t))
	c := dial(t, proxyAddr)
	c.roundTrip(t, "first")

	p.signal(syscall.SIGTERM)
	deadline := time.Now().Add(waitLimit)
	for {
		code, body := getJSON(t, "http://127.0.0.1:15000/ready", nil)
		if code == http.StatusServiceUnavailable && strings.Contains(body, "draining") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/ready = %d %s during drain; want 503 draining", code, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for {
		nc, err := net.DialTimeout("tcp", proxyAddr, time.Second)
		if err != nil {
			break
		}
		nc.Close()
		if time.Now().After(deadline) {
			t.Fatal("listener still accepts during drain")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The open connection still works during the drain.
	for i := range 100 {
		c.roundTrip(t, strings.Repeat("x", i*100))
	}
	c.Close()
	if code := p.wait(); code != 0 {
		t.Fatalf("exit code %d after drain, want 0", code)
	}
	if !strings.Contains(p.output(), "drained") {
		t.Errorf("no drained log line")
	}
	// A normal drain is not an error: an operator alerting on ERROR
	// lines must not be paged by every rollout.
	if strings.Contains(p.output(), "level=ERROR") {
		t.Errorf("ERROR lines in a clean drain:\n%s", p.output())
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	broken := filepath.Join(dir, "broken.yaml")
	writeFile(t, broken, `discovery: [{name: local, file: {path: services.yaml}}]
outbound:
  - name: echo
    lisen: 127.0.0.1:9000
`)
	out, err := exec.Command(filepath.Join(bin, "outrigger"), "validate", "-c", broken).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() == 0 {
		t.Fatalf("validate on a broken file: err %v, want a non-zero exit\n%s", err, out)
	}
	if want := broken + `:4: outbound[0].lisen: unknown field "lisen"`; !strings.Contains(string(out), want) {
		t.Errorf("validate output %q lacks %q", out, want)
	}

	good := filepath.Join("..", "..", "examples", "local", "outrigger.yaml")
	out, err = exec.Command(filepath.Join(bin, "outrigger"), "validate", "-c", good).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ok") {
		t.Errorf("validate on the demo config: %v\n%s", err, out)
	}
}
