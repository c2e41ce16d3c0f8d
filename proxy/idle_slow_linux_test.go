package proxy

import (
	"io"
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A reader that keeps reading, slowly, keeps the connection open and gets
// every byte. The direction writing to it stays inside one ReadFrom (a
// splice pipe of up to 1 MiB) for far longer than IdleTimeout, so only the
// kernel's byte counters show that it still moves.
//
// The kernel reveals a reader's progress only when it has consumed a whole
// received buffer (up to 64 KiB on loopback): a reader slower than that per
// IdleTimeout is indistinguishable from one that stopped. The client's small
// receive buffer keeps those steps at a few KiB, well inside IdleTimeout at
// this rate, as a WAN path's smaller segments would.
//
// With the client's side half-closed, the other direction is watched by the
// finished one instead of probed by a running one.
func TestSlowReaderKeepsConnectionOpen(t *testing.T) {
	for _, halfClose := range []bool{false, true} {
		t.Run("half-closed="+strconv.FormatBool(halfClose), func(t *testing.T) {
			testSlowReader(t, halfClose)
		})
	}
}

func testSlowReader(t *testing.T, halfClose bool) {
	const (
		idle     = 500 * time.Millisecond
		tick     = 50 * time.Millisecond
		ticks    = 4 * int(idle/tick) // slow reads spanning 4×IdleTimeout
		readSize = 8 << 10            // per tick: 160 KiB/s, a 1 MiB chunk takes 6 s
		maxWrite = 256 << 20          // bounds the backend; the buffers hold far less
	)
	stop := make(chan struct{})
	wrote := make(chan int64, 1)
	addr := startBackend(t, func(c *net.TCPConn) {
		var n int64
		buf := make([]byte, 32<<10)
		for n < maxWrite {
			select {
			case <-stop:
				c.CloseWrite()
				wrote <- n
				io.Copy(io.Discard, c) // until the client closes
				return
			default:
			}
			for j := range buf {
				buf[j] = pattern(n + int64(j))
			}
			m, err := c.Write(buf)
			n += int64(m)
			if err != nil {
				break // the proxy closed the connection
			}
		}
		wrote <- n
	})
	up := newFakeUpstream(t, addr)
	p := startProxy(t, TCPConfig{IdleTimeout: idle}, up, ServerConfig{})

	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var err error
		if cerr := rc.Control(func(fd uintptr) {
			err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<10)
		}); cerr != nil {
			return cerr
		}
		return err
	}}
	nc, err := d.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	c := nc.(*net.TCPConn)
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(waitLimit))
	if halfClose {
		c.CloseWrite()
	}

	var got int64
	verify := func(b []byte) {
		t.Helper()
		for j, x := range b {
			if want := pattern(got + int64(j)); x != want {
				t.Fatalf("byte %d is %d, want %d", got+int64(j), x, want)
			}
		}
		got += int64(len(b))
	}
	buf := make([]byte, readSize)
	for k := range ticks {
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatalf("slow read %d after %d bytes: %v", k+1, got, err)
		}
		verify(buf)
		if n := p.srv.ActiveConns(); n != 1 {
			t.Fatalf("ActiveConns() = %d after %d slow reads: the proxy closed a connection still being read", n, k+1)
		}
		time.Sleep(tick)
	}

	close(stop)
	big := make([]byte, 256<<10)
	for range maxWrite + 1 { // a Read returns a byte or an error
		n, err := c.Read(big)
		verify(big[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read after %d bytes: %v", got, err)
		}
	}
	if w := <-wrote; got != w {
		t.Errorf("client read %d bytes, backend wrote %d", got, w)
	}
	c.Close()
	if d := up.waitDones(t, 1); d[0].info.Err != nil {
		t.Errorf("Done(%v), want nil", d[0].info.Err)
	}
}

// pattern is the byte at offset i of the backend's stream; its period, a
// prime, shows a lost or repeated buffer of any power-of-two size.
func pattern(i int64) byte { return byte(i % 251) }
