package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"
)

// The file says https: the gRPC exporter speaks TLS even when the
// environment's endpoint is http:// (which turns on insecure), as the file
// wins over the environment.
func TestTracingFileHTTPSWinsOverEnvHTTP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	first := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b := make([]byte, 3)
		io.ReadFull(c, b)
		first <- b
	}()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	cfg := &TracingConfig{Endpoint: "https://" + ln.Addr().String(), Protocol: "grpc"}
	s, err := setupTracing(context.Background(), cfg, NodeConfig{}, os.Getenv, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s.shutdown(ctx) // the exporter and batcher must not outlive the test (goleak)
	})
	_, sp := s.provider.Tracer("x").Start(context.Background(), "x")
	sp.End()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	go s.provider.ForceFlush(ctx)
	select {
	case b := <-first:
		if b[0] != 0x16 {
			t.Fatalf("tracing.endpoint https://…: first bytes %q, not a TLS handshake (0x16): plaintext", b)
		}
	case <-ctx.Done():
		t.Fatal("no connection")
	}
}
