package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
)

func TestTCPGreetsThenEchoesUntilHalfClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serveTCP(ctx, ln, "echo-7") }()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	greeting, err := r.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if want := "echo-7 hello from " + ln.Addr().String() + "\n"; greeting != want {
		t.Errorf("greeting = %q, want %q", greeting, want)
	}
	if _, err := io.WriteString(c, "ping\npong"); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	rest, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if string(rest) != "ping\npong" {
		t.Errorf("echoed %q, want %q", rest, "ping\npong")
	}

	cancel()
	if err := <-done; err != nil {
		t.Errorf("serveTCP: %v", err)
	}
}

func TestHTTPAnswersWithNameAndRequest(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serveHTTP(ctx, ln, "web-2") }()

	req, _ := http.NewRequest("POST", "http://"+ln.Addr().String()+"/a/b?x=1", strings.NewReader("hello"))
	req.Host = "orders.shop"
	req.Header.Set("X-Test", "yes")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a Answer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		t.Fatal(err)
	}
	if a.Name != "web-2" || a.Method != "POST" || a.Host != "orders.shop" || a.Path != "/a/b" ||
		a.Query != "x=1" || a.Body != 5 || a.Headers["X-Test"][0] != "yes" {
		t.Errorf("answer = %+v", a)
	}
	if got := resp.Header.Get("X-Echo-Name"); got != "web-2" {
		t.Errorf("X-Echo-Name = %q", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("serveHTTP: %v", err)
	}
}

func TestGreetingsClientPrintsEachConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serveTCP(ctx, ln, "echo-9") }()
	var out strings.Builder
	if err := greetings(&out, ln.Addr().String(), 3); err != nil {
		t.Fatal(err)
	}
	line := "echo-9 hello from " + ln.Addr().String() + "\n"
	if got, want := out.String(), strings.Repeat(line, 3); got != want {
		t.Errorf("greetings printed %q, want %q", got, want)
	}
	cancel()
	<-done
}

func TestGRPCServesHealthAndNamesItself(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serveGRPC(ctx, ln, "grpc-3") }()

	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	var hdr metadata.MD
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ccancel()
	resp, err := healthpb.NewHealthClient(cc).Check(cctx, &healthpb.HealthCheckRequest{}, grpc.Header(&hdr))
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING || len(hdr.Get("x-echo-name")) != 1 || hdr.Get("x-echo-name")[0] != "grpc-3" {
		t.Errorf("status %v, x-echo-name %v; want SERVING from grpc-3", resp.GetStatus(), hdr.Get("x-echo-name"))
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("serveGRPC: %v", err)
	}
}

func TestBenchModesPureEchoAndFixedBody(t *testing.T) {
	body := []byte("0123456789")
	noGreet.Store(true)
	fixedBody.Store(&body)
	t.Cleanup(func() { noGreet.Store(false); fixedBody.Store(nil) })

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go serveTCP(ctx, ln, "echo-8")
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "ping")
	c.(*net.TCPConn).CloseWrite()
	if got, err := io.ReadAll(c); err != nil || string(got) != "ping" {
		t.Errorf("pure echo read %q, %v; want %q with no greeting", got, err, "ping")
	}

	hln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go serveHTTP(ctx, hln, "web-8")
	before := served.Load()
	resp, err := http.Get("http://" + hln.Addr().String() + "/x")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "0123456789" || resp.ContentLength != 10 || resp.Header.Get("X-Echo-Name") != "web-8" {
		t.Errorf("fixed body: %q (Content-Length %d, X-Echo-Name %q)", b, resp.ContentLength, resp.Header.Get("X-Echo-Name"))
	}
	if n := served.Load() - before; n != 1 {
		t.Errorf("served counted %d requests, want 1", n)
	}
}

func TestHTTPServesH2C(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go serveHTTP(ctx, ln, "web-h2")
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("http://" + ln.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.Header.Get("X-Echo-Name") != "web-h2" {
		t.Errorf("proto %s, X-Echo-Name %q; want HTTP/2 from web-h2", resp.Proto, resp.Header.Get("X-Echo-Name"))
	}
}
