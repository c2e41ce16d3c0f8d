package proxy

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// sysPair is a connected loopback pair: a *sysConn and the plain peer.
func sysPair(t *testing.T) (*sysConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(acc)
			return
		}
		acc <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer, ok := <-acc
	if !ok {
		t.Fatal("accept failed")
	}
	sc, ok := newSysConn(c.(*net.TCPConn)).(*sysConn)
	if !ok {
		t.Fatal("newSysConn did not wrap a TCP connection")
	}
	t.Cleanup(func() { sc.Close(); peer.Close() })
	return sc, peer.(*net.TCPConn)
}

func TestSysConnReadWriteEOF(t *testing.T) {
	sc, peer := sysPair(t)
	if n, err := sc.Write([]byte("ping")); n != 4 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(peer, got); err != nil || string(got) != "ping" {
		t.Fatalf("peer read %q, %v", got, err)
	}
	if n, err := sc.Read(nil); n != 0 || err != nil {
		t.Fatalf("empty Read = %d, %v; want 0, nil", n, err)
	}
	peer.Write([]byte("pong"))
	peer.Close()
	all, err := io.ReadAll(sc)
	if err != nil || string(all) != "pong" {
		t.Fatalf("ReadAll = %q, %v; want pong and EOF", all, err)
	}
	if n, err := sc.Read(make([]byte, 8)); n != 0 || err != io.EOF {
		t.Fatalf("Read after EOF = %d, %v; want 0, io.EOF", n, err)
	}
}

// The errors are those of net.Conn: a passed deadline is a timeout that
// errors.Is os.ErrDeadlineExceeded, of op "read"/"write"; a closed
// connection is net.ErrClosed.
func TestSysConnErrors(t *testing.T) {
	sc, _ := sysPair(t)
	sc.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := sc.Read(make([]byte, 8))
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Read past its deadline: %v; want a timeout", err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "read" {
		t.Errorf("Read's error %#v; want a *net.OpError of op read", err)
	}
	sc.SetWriteDeadline(time.Now().Add(-time.Second))
	if _, err := sc.Write([]byte("x")); !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &oe) || oe.Op != "write" {
		t.Fatalf("Write past its deadline: %v; want a timeout of op write", err)
	}
	sc.SetDeadline(time.Time{})
	sc.Close()
	if _, err := sc.Read(make([]byte, 8)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read after Close: %v; want net.ErrClosed", err)
	}
	if _, err := sc.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close: %v; want net.ErrClosed", err)
	}
}

// A write far larger than the socket buffers fills them (EAGAIN), waits
// in the poller and goes on where it stopped: every byte arrives, in
// order, while the peer reads slowly and writes back at the same time.
func TestSysConnLargeWriteFullDuplex(t *testing.T) {
	sc, peer := sysPair(t)
	sc.SetWriteBuffer(16 << 10)
	peer.SetReadBuffer(16 << 10)
	data := make([]byte, 8<<20)
	for i := range data {
		data[i] = byte(i*7 + i>>11)
	}
	type result struct {
		sum [32]byte
		n   int
		err error
	}
	got := make(chan result, 1)
	go func() {
		h := sha256.New()
		buf := make([]byte, 3000)
		n := 0
		for n < len(data) {
			k, err := peer.Read(buf)
			h.Write(buf[:k])
			n += k
			if err != nil {
				got <- result{n: n, err: err}
				return
			}
			if n%(1<<20) < 3000 {
				time.Sleep(time.Millisecond) // slow, so the writer waits
			}
		}
		var r result
		copy(r.sum[:], h.Sum(nil))
		r.n = n
		got <- r
	}()
	// the other direction at the same time, through sc.Read
	echo := bytes.Repeat([]byte("0123456789"), 100000)
	go peer.Write(echo)
	back := make(chan []byte, 1)
	go func() {
		b := make([]byte, len(echo))
		io.ReadFull(sc, b)
		back <- b
	}()
	if n, err := sc.Write(data); n != len(data) || err != nil {
		t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(data))
	}
	r := <-got
	if r.err != nil || r.n != len(data) || r.sum != sha256.Sum256(data) {
		t.Fatalf("peer got %d bytes (err %v), sum match %v", r.n, r.err, r.sum == sha256.Sum256(data))
	}
	if b := <-back; !bytes.Equal(b, echo) {
		t.Fatal("the bytes read while writing differ from those sent")
	}
}

// Writing to a peer that reset the connection is an error (EPIPE or
// ECONNRESET), not a SIGPIPE: the test process survives it.
func TestSysConnWriteAfterReset(t *testing.T) {
	sc, peer := sysPair(t)
	peer.SetLinger(0)
	peer.Close() // RST
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = sc.Write([]byte("after the reset"))
		time.Sleep(time.Millisecond)
	}
	if !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("Write to a reset peer: %v; want EPIPE or ECONNRESET", err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "write" {
		t.Errorf("error %#v; want a *net.OpError of op write", err)
	}
}

// sysConn keeps what the fast path asks of a *net.TCPConn beyond Read and
// Write: half-close, and its own file descriptor for the idle probes.
func TestSysConnPromoted(t *testing.T) {
	sc, peer := sysPair(t)
	if _, ok := net.Conn(sc).(interface{ CloseWrite() error }); !ok {
		t.Fatal("sysConn lost CloseWrite")
	}
	sc.Write([]byte("last"))
	if err := sc.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	all, err := io.ReadAll(peer)
	if err != nil || string(all) != "last" {
		t.Fatalf("peer read %q, %v after CloseWrite; want last and EOF", all, err)
	}
}
