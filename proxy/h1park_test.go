//go:build linux

package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// startParkingProxy is startHTTPProxy with the listener at hand and idle
// connections parking after 10ms.
func startParkingProxy(t *testing.T, cfg HTTPConfig, up Upstream) (*HTTPListener, *testProxy) {
	t.Helper()
	cfg.Name, cfg.Listen = "test", "127.0.0.1:0"
	l := NewHTTPListener(cfg, routeAll(t, "web.shop"), Upstreams{"web.shop": up}, Options{})
	l.parkAfter = 10 * time.Millisecond
	srv := NewServer(ServerConfig{DrainTimeout: time.Hour}, Options{}, l)
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &testProxy{srv: srv, addr: srv.Addrs()["test"].String(), cancel: cancel, served: make(chan error, 1)}
	go func() { p.served <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := p.wait(t); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return l, p
}

func getOn(t *testing.T, c net.Conn, br *bufio.Reader) {
	t.Helper()
	io.WriteString(c, rawRequest("GET / HTTP/1.1", "Host: x"))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

func waitParked(t *testing.T, l *HTTPListener, n int64) {
	t.Helper()
	for deadline := time.Now().Add(waitLimit); l.Parked() != n; {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections parked, want %d", l.Parked(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// An idle keep-alive connection parks (gives up its buffers), and its next
// request, split over two writes, is served as usual; so is a connection
// parked before its first request.
func TestH1IdleConnectionParksAndResumes(t *testing.T) {
	be := startHTTPBackend(t, whoami("a"))
	l, p := startParkingProxy(t, HTTPConfig{}, newFakeUpstream(t, be.addr))
	c := p.dial(t)
	br := bufio.NewReader(c)
	getOn(t, c, br)
	waitParked(t, l, 1)
	io.WriteString(c, "GET / HT")
	waitParked(t, l, 0) // the first bytes unpark it
	io.WriteString(c, "TP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("after parking: %v, %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	waitParked(t, l, 1)
	getOn(t, c, br)

	fresh := p.dial(t)
	waitParked(t, l, 2)
	getOn(t, fresh, bufio.NewReader(fresh))
}

// A parked connection still closes at its idle timeout, and a drain closes
// it at once.
func TestH1ParkedConnectionTimesOutAndDrains(t *testing.T) {
	be := startHTTPBackend(t, whoami("a"))
	l, p := startParkingProxy(t, HTTPConfig{IdleTimeout: 300 * time.Millisecond}, newFakeUpstream(t, be.addr))
	c := p.dial(t)
	br := bufio.NewReader(c)
	getOn(t, c, br)
	waitParked(t, l, 1)
	c.SetReadDeadline(time.Now().Add(waitLimit))
	if n, err := br.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Errorf("parked connection past its idle timeout: read %d, %v; want EOF", n, err)
	}

	l2, p2 := startParkingProxy(t, HTTPConfig{IdleTimeout: time.Hour}, newFakeUpstream(t, be.addr))
	c2 := p2.dial(t)
	br2 := bufio.NewReader(c2)
	getOn(t, c2, br2)
	waitParked(t, l2, 1)
	p2.cancel()
	if err := p2.wait(t); err != nil { // fails after waitLimit, not the hour
		t.Fatal(err)
	}
	if n, err := br2.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("parked connection after the drain: read %d, %v; want EOF", n, err)
	}
}
