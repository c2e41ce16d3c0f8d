package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// Canceling Serve's context while a transfer runs: the listener refuses new
// connections, the transfer completes, and Serve returns once it is done.
func TestDrainLetsRunningTransferFinish(t *testing.T) {
	up := newFakeUpstream(t, startBackend(t, echo))
	p := startProxy(t, TCPConfig{}, up, ServerConfig{DrainTimeout: time.Hour})
	c := p.dial(t)

	const size = 32 << 20
	sent, recv := sha256.New(), sha256.New()
	var wg sync.WaitGroup
	var sendErr error
	halfway := make(chan struct{})
	wg.Go(func() {
		src := stream(3, size, sent)
		if _, sendErr = io.CopyN(c, src, size/2); sendErr != nil {
			return
		}
		<-halfway // the drain has started
		if _, sendErr = io.Copy(c, src); sendErr == nil {
			sendErr = c.CloseWrite()
		}
	})
	if _, err := io.CopyN(recv, c, 1<<20); err != nil {
		t.Fatal(err)
	}

	p.cancel()
	deadline := time.Now().Add(waitLimit)
	for {
		nc, err := net.Dial("tcp", p.addr)
		if err != nil {
			break
		}
		nc.Close()
		if time.Now().After(deadline) {
			t.Fatal("listener still accepts after the drain started")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if p.srv.Bound() {
		t.Error("Bound() = true during the drain")
	}
	// The client has not half-closed yet, so the connection is still open.
	select {
	case err := <-p.served:
		t.Fatalf("Serve returned %v while a connection was open", err)
	default:
	}
	if got := p.srv.ActiveConns(); got != 1 {
		t.Errorf("ActiveConns() = %d with one open connection", got)
	}
	close(halfway)

	n, err := io.Copy(recv, c)
	wg.Wait()
	if err != nil || sendErr != nil {
		t.Fatalf("transfer during drain: receive %v, send %v", err, sendErr)
	}
	if n+1<<20 != size || !bytes.Equal(sent.Sum(nil), recv.Sum(nil)) {
		t.Fatalf("echoed %d bytes differ from the %d sent", n+1<<20, size)
	}
	c.Close()
	if err := p.wait(t); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if got := p.srv.ActiveConns(); got != 0 {
		t.Errorf("ActiveConns() = %d after Serve returned", got)
	}
	// Probe dials accepted before the listener closed count too.
	_, picks, dones := up.stats()
	if len(dones) != picks {
		t.Errorf("%d picks, %d Dones", picks, len(dones))
	}
	for _, d := range dones {
		if d.info.Err != nil {
			t.Errorf("Done(%v), want nil", d.info.Err)
		}
	}
}

// Past the drain deadline a connection that would stay open is closed and
// Serve returns.
func TestDrainDeadlineClosesStuckConnection(t *testing.T) {
	up := newFakeUpstream(t, startBackend(t, echo))
	p := startProxy(t, TCPConfig{}, up, ServerConfig{DrainTimeout: 100 * time.Millisecond})
	c := p.dial(t)
	roundTrip(t, c, []byte("hi"), make([]byte, 2))
	p.cancel()
	if err := p.wait(t); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	assertClosed(t, c)
	if _, picks, dones := up.stats(); picks != 1 || len(dones) != 1 || dones[0].info.Err != nil {
		t.Errorf("%d picks, Dones %+v; want one pick and one Done(nil)", picks, dones)
	}
}

// Listen binds all listeners or none, and its error names the listener and
// the address.
func TestListenAllOrNone(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	free := freePort(t).String()

	up := newFakeUpstream(t)
	srv := NewServer(ServerConfig{}, Options{},
		NewTCPListener(TCPConfig{Name: "first", Listen: free}, up, Options{}),
		NewTCPListener(TCPConfig{Name: "orders", Listen: taken.Addr().String()}, up, Options{}))
	err = srv.Listen()
	if err == nil {
		t.Fatal("Listen succeeded on a taken port")
	}
	want := `listener "orders": listen tcp ` + taken.Addr().String() + `: bind: address already in use`
	if err.Error() != want {
		t.Errorf("Listen error:\n got %q\nwant %q", err, want)
	}
	if srv.Bound() || len(srv.Addrs()) != 0 {
		t.Errorf("after a failed Listen: Bound %v, Addrs %v", srv.Bound(), srv.Addrs())
	}
	// The first listener was released again.
	ln, err := net.Listen("tcp", free)
	if err != nil {
		t.Fatalf("first listener's address still bound: %v", err)
	}
	ln.Close()
	if err := srv.Serve(context.Background()); err == nil {
		t.Error("Serve after a failed Listen returned nil")
	}
}

func TestListenRejectsBadConfig(t *testing.T) {
	up := newFakeUpstream(t)
	srv := NewServer(ServerConfig{}, Options{},
		NewTCPListener(TCPConfig{Name: "a", Listen: "127.0.0.1:0"}, up, Options{}),
		NewTCPListener(TCPConfig{Name: "a", Listen: "127.0.0.1:0"}, up, Options{}),
		NewTCPListener(TCPConfig{Name: "b", Listen: "nowhere"}, up, Options{}))
	err := srv.Listen()
	if err == nil {
		t.Fatal("Listen accepted a duplicate name and a bad address")
	}
	for _, want := range []string{`listener "a": name used twice`, `listener "b": listen "nowhere"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Listen error %q lacks %q", err, want)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  TCPConfig
		want []string // substrings; none means valid
	}{
		{cfg: TCPConfig{Name: "a", Listen: "127.0.0.1:9000"}},
		{cfg: TCPConfig{Name: "a", Listen: ":0", ConnectTimeout: time.Second, IdleTimeout: time.Minute, ConnectAttempts: MaxConnectAttempts}},
		{cfg: TCPConfig{Name: "a", Listen: "[::1]:80"}},
		{cfg: TCPConfig{Name: "a", Listen: "localhost:80"}},
		{cfg: TCPConfig{Listen: "127.0.0.1:1"}, want: []string{"listener has no name"}},
		{cfg: TCPConfig{Name: "a", Listen: "127.0.0.1"}, want: []string{`listener "a": listen "127.0.0.1": address 127.0.0.1: missing port`}},
		{cfg: TCPConfig{Name: "a", Listen: "127.0.0.1:http"}, want: []string{`port "http" is not a number`}},
		{cfg: TCPConfig{Name: "a", Listen: "127.0.0.1:70000"}, want: []string{`port "70000"`}},
		{cfg: TCPConfig{Name: "a", Listen: "example.com:80"}, want: []string{`host "example.com" is not an IP address`}},
		{
			cfg:  TCPConfig{Name: "a", Listen: ":1", ConnectTimeout: -1, IdleTimeout: -1, ConnectAttempts: MaxConnectAttempts + 1},
			want: []string{"connect timeout -1ns is negative", "idle timeout -1ns is negative", "connect attempts 6 out of range 1..5 (0 means 3)"},
		},
		{cfg: TCPConfig{Name: "a", Listen: ":1", ConnectAttempts: -1}, want: []string{"connect attempts -1 out of range"}},
	} {
		err := tc.cfg.Validate()
		if len(tc.want) == 0 {
			if err != nil {
				t.Errorf("%+v: %v", tc.cfg, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%+v: valid, want %q", tc.cfg, tc.want)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%+v: error %q lacks %q", tc.cfg, err, w)
			}
		}
	}
}

// Zero fields mean the documented defaults.
func TestDefaults(t *testing.T) {
	l := NewTCPListener(TCPConfig{Name: "a", Listen: ":0"}, newFakeUpstream(t), Options{})
	if l.cfg.ConnectTimeout != 5*time.Second || l.cfg.IdleTimeout != time.Hour || l.cfg.ConnectAttempts != 3 {
		t.Errorf("defaults: %+v", l.cfg)
	}
	if s := NewServer[Listener](ServerConfig{}, Options{}); s.drain != 20*time.Second {
		t.Errorf("drain default %v", s.drain)
	}
}
