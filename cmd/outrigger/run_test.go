package main

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// startProcess builds and runs a process on a config with :0 ports.
func startProcess(t *testing.T, drain string) (*process, chan os.Signal, <-chan error, string) {
	t.Helper()
	dir := t.TempDir()
	backend := echoGreeter(t, "b1")
	host, port, _ := net.SplitHostPort(backend)
	services := filepath.Join(dir, "services.yaml")
	if err := os.WriteFile(services, []byte(fmt.Sprintf("services:\n  - name: b.test\n    endpoints: [{address: %s, port: %s}]\n", host, port)), 0o644); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "outrigger.yaml")
	cfg, err := ParseConfig(cfgPath, []byte(`admin: {listen: "127.0.0.1:0"}
drain: `+drain+`
discovery: [{name: local, file: {path: services.yaml}}]
outbound: [{name: b, listen: "127.0.0.1:0", service: b.test}]
`))
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	p, err := build(cfg, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	sigs := make(chan os.Signal, 4)
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- p.run(ctx, sigs) }()
	t.Cleanup(func() {
		cancel() // a test that failed half-way still ends the process
		if t.Failed() {
			t.Logf("logs:\n%s", logs.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if p.server.Bound() {
			if ok, _ := p.ready(); ok {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready within 10s:\n%s", logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	return p, sigs, done, services
}

func dialGreeting(t *testing.T, addr string) (net.Conn, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return c, strings.TrimSpace(line)
}

func TestRunServesReloadsOnSIGHUPAndDrainsOnSIGTERM(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) }) // registered first, so it runs after the backends close
	p, sigs, done, services := startProcess(t, "{timeout: 10s}")
	addr := p.server.Addrs()["b"].String()
	c, name := dialGreeting(t, addr)
	if name != "b1" {
		t.Fatalf("greeting %q, want b1", name)
	}

	// SIGHUP re-reads the file: a second backend appears.
	b2 := echoGreeter(t, "b2")
	host, port, _ := net.SplitHostPort(b2)
	old, _ := os.ReadFile(services)
	grown := strings.Replace(string(old), "}]", fmt.Sprintf("}, {address: %s, port: %s}]", host, port), 1)
	if err := os.WriteFile(services, []byte(grown), 0o644); err != nil {
		t.Fatal(err)
	}
	sigs <- syscall.SIGHUP
	deadline := time.Now().Add(10 * time.Second)
	for seen := map[string]bool{}; !seen["b2"]; {
		if time.Now().After(deadline) {
			t.Fatal("b2 never picked after SIGHUP")
		}
		c2, n := dialGreeting(t, addr)
		c2.Close()
		seen[n] = true
	}

	sigs <- syscall.SIGTERM
	// The held connection keeps the drain open until it closes.
	select {
	case err := <-done:
		t.Fatalf("run returned %v while a connection was open", err)
	case <-time.After(100 * time.Millisecond):
	}
	if p.server.Bound() {
		t.Error("listeners still bound during the drain")
	}
	c.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run after drain: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after the last connection closed")
	}
}

func TestRunSecondSignalExitsAtOnce(t *testing.T) {
	p, sigs, done, _ := startProcess(t, "{timeout: 1m}")
	c, _ := dialGreeting(t, p.server.Addrs()["b"].String())
	defer c.Close()
	sigs <- syscall.SIGTERM
	sigs <- syscall.SIGINT
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "drain interrupted by interrupt") {
			t.Fatalf("run = %v, want a drain-interrupted error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a second signal did not end the drain")
	}
}

func TestRunDrainDelayKeepsAcceptingWhileNotReady(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) }) // registered first, so it runs after the backends close
	p, sigs, done, _ := startProcess(t, "{delay: 300ms, timeout: 5s}")
	addr := p.server.Addrs()["b"].String()
	sigs <- syscall.SIGTERM
	// During the delay new connections are still served.
	c, name := dialGreeting(t, addr)
	c.Close()
	if name != "b1" {
		t.Fatalf("greeting %q during the drain delay", name)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after the drain delay")
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("listener still accepts after the drain")
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
