package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// subjectOf handshakes with addr, trusting anything, and returns the
// common name of the certificate it was shown.
func subjectOf(t *testing.T, addr string) string {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatalf("TLS dial %s: %v", addr, err)
	}
	defer c.Close()
	if p := c.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Errorf("ALPN chose %q, want h2", p)
	}
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName
}

// An http listener with tls serves the configured certificate, and SIGHUP
// reloads it. The certificate files are links into a directory the watch
// does not cover (as when a secret is linked from elsewhere), so only the
// SIGHUP can pick up the change.
func TestRunTLSListenerReloadsCertificateOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real")
	if err := os.Mkdir(real, 0o700); err != nil {
		t.Fatal(err)
	}
	writeSelfSigned(t, real, "first")
	writeSelfSigned(t, real, "second")
	if err := os.Mkdir(filepath.Join(dir, "tls"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, ext := range []string{".crt", ".key"} {
		if err := os.Symlink(filepath.Join(real, "web"+ext), filepath.Join(dir, "tls", "web"+ext)); err != nil {
			t.Fatal(err)
		}
	}
	use := func(name string) {
		t.Helper()
		for _, ext := range []string{".crt", ".key"} {
			b, err := os.ReadFile(filepath.Join(real, name+ext))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(real, "web"+ext), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	use("first")
	backend := echoGreeter(t, "b1")
	if err := os.WriteFile(filepath.Join(dir, "services.yaml"), []byte(fmt.Sprintf("services:\n  - name: b.test\n    endpoints: [{address: 127.0.0.1, port: %s}]\n", backend[len("127.0.0.1:"):])), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig(filepath.Join(dir, "outrigger.yaml"), []byte(`admin: {listen: "127.0.0.1:0"}
discovery: [{name: local, file: {path: services.yaml}}]
outbound:
  - {name: web, listen: "127.0.0.1:0", protocol: http, service: b.test, tls: {cert_file: tls/web.crt, key_file: tls/web.key}}
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
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
		if t.Failed() {
			t.Logf("logs:\n%s", logs.String())
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !p.server.Bound() {
		if time.Now().After(deadline) {
			t.Fatal("not bound within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	addr := p.server.Addrs()["web"].String()
	if got := subjectOf(t, addr); got != "first" {
		t.Fatalf("served %q, want first", got)
	}

	// Two rounds: the watch reads the files once when it starts, which
	// may be after the first change; by the second it has long started.
	for _, next := range []string{"second", "first"} {
		use(next)
		sigs <- syscall.SIGHUP
		deadline = time.Now().Add(10 * time.Second)
		for subjectOf(t, addr) != next {
			if time.Now().After(deadline) {
				t.Fatalf("not serving %s 10s after SIGHUP", next)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}
