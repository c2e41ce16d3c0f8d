package proxy

import (
	"crypto/tls"
	"net"
	"testing"
	"time"
)

// firstPhase runs the first phase of one connection accepted by l whose
// accept happened spent ago, and returns the client's end; the first
// phase's goroutine is waited for at cleanup.
func firstPhase(t *testing.T, l *FrontListener, spent time.Duration) net.Conn {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	client.SetDeadline(time.Now().Add(waitLimit))
	nc, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	c := newConn(l.tcp, nc)
	c.start = c.start.Add(-spent)
	done := make(chan bool, 1)
	go func() { done <- l.first(c) }()
	t.Cleanup(func() {
		client.Close()
		if <-done {
			t.Error("first phase gave a TLS connection to the TCP path")
		}
		c.shutdown(closedEOF, nil)
	})
	return client
}

// The first phase of a TLS auto listener has HTTP.HeaderTimeout in all,
// counted from accept: a client that used it all up before its handshake
// (accepted HeaderTimeout ago) gets no handshake, and one that completes
// the handshake late gets only what is left to send its first bytes inside
// TLS, not a fresh HeaderTimeout.
func TestFirstPhaseOneDeadlineFromAccept(t *testing.T) {
	const headerTimeout = 5 * time.Minute // far beyond waitLimit: only the shared deadline can close in time
	cert := testCert(t, "front.test", time.Hour)
	l := NewFrontListener(FrontConfig{HTTP: HTTPConfig{Name: "test", Listen: "127.0.0.1:0", HeaderTimeout: headerTimeout},
		TLS: StaticCert{&cert.tls}, Sniff: &SniffConfig{Timeout: time.Hour}}, nil, nil, newFakeUpstream(t), Options{})
	clientTLS := &tls.Config{RootCAs: testCA.pool, ServerName: "front.test"}

	t.Run("handshake", func(t *testing.T) {
		tc := tls.Client(firstPhase(t, l, headerTimeout), clientTLS)
		if err := tc.Handshake(); err == nil {
			t.Fatal("handshake completed after the first phase's deadline, want the connection closed")
		}
	})
	t.Run("inner sniff", func(t *testing.T) {
		// 5s left: ample for a loopback handshake, and the connection
		// must close long before the client's waitLimit.
		tc := tls.Client(firstPhase(t, l, headerTimeout-5*time.Second), clientTLS)
		if err := tc.Handshake(); err != nil {
			t.Fatalf("handshake with time left: %v", err)
		}
		assertClosed(t, tc) // the client sends nothing inside TLS
	})
}
