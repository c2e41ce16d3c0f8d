package proxy

import (
	"io"
	"net"
	"strconv"
	"testing"
	"time"
)

const testIdle = 200 * time.Millisecond

// A connection on which nothing moves is closed, and Done gets nil: idling
// out is not the endpoint's fault.
func TestIdleConnectionIsClosed(t *testing.T) {
	backendSaw := make(chan error, 1)
	addr := startBackend(t, func(c *net.TCPConn) {
		_, err := io.Copy(c, c)
		backendSaw <- err
	})
	up := newFakeUpstream(t, addr)
	p := startProxy(t, TCPConfig{IdleTimeout: testIdle}, up, ServerConfig{})
	c := p.dial(t)
	roundTrip(t, c, []byte("x"), make([]byte, 1))
	assertClosed(t, c)
	if err := <-backendSaw; err != nil {
		t.Errorf("backend side ended with %v, want EOF", err)
	}
	if d := up.waitDones(t, 1); d[0].info.Err != nil {
		t.Errorf("Done(%v) after idle timeout, want nil", d[0].info.Err)
	}
}

// Steady traffic in one direction for many idle periods keeps the whole
// connection open, whichever direction it flows in.
func TestOneWayTrafficKeepsConnectionOpen(t *testing.T) {
	const ticks = 40 // 40 × 25ms = 5 × testIdle
	tick := testIdle / 8
	trickle := func(w io.Writer) error {
		for range ticks {
			if _, err := w.Write([]byte{'.'}); err != nil {
				return err
			}
			time.Sleep(tick)
		}
		return nil
	}

	t.Run("backend to client", func(t *testing.T) {
		addr := startBackend(t, func(c *net.TCPConn) {
			if trickle(c) == nil {
				c.CloseWrite()
				io.Copy(io.Discard, c)
			}
		})
		p := startProxy(t, TCPConfig{IdleTimeout: testIdle}, newFakeUpstream(t, addr), ServerConfig{})
		c := p.dial(t)
		got, err := io.ReadAll(c)
		if err != nil || len(got) != ticks {
			t.Fatalf("client read %d bytes, %v; want %d and EOF", len(got), err, ticks)
		}
	})

	t.Run("client to backend", func(t *testing.T) {
		addr := startBackend(t, func(c *net.TCPConn) {
			n, _ := io.Copy(io.Discard, c)
			io.WriteString(c, strconv.FormatInt(n, 10))
		})
		p := startProxy(t, TCPConfig{IdleTimeout: testIdle}, newFakeUpstream(t, addr), ServerConfig{})
		c := p.dial(t)
		if err := trickle(c); err != nil {
			t.Fatalf("write: %v", err)
		}
		c.CloseWrite()
		got, err := io.ReadAll(c)
		if err != nil || string(got) != strconv.Itoa(ticks) {
			t.Fatalf("backend counted %q, %v; want %d", got, err, ticks)
		}
	})
}

// A connection whose only activity is a write stuck on a client that reads
// nothing is idle too, also when the client's side is half-closed.
func TestStuckReaderIsClosed(t *testing.T) {
	for _, halfClose := range []bool{false, true} {
		t.Run("half-closed="+strconv.FormatBool(halfClose), func(t *testing.T) {
			writeErr := make(chan error, 1)
			addr := startBackend(t, func(c *net.TCPConn) {
				buf := make([]byte, 64<<10)
				for {
					if _, err := c.Write(buf); err != nil {
						writeErr <- err
						return
					}
				}
			})
			p := startProxy(t, TCPConfig{IdleTimeout: testIdle}, newFakeUpstream(t, addr), ServerConfig{})
			c := p.dial(t)
			if halfClose {
				c.CloseWrite()
			}
			select {
			case <-writeErr: // the proxy closed the upstream side
			case <-time.After(waitLimit):
				t.Fatalf("backend still writing after %v", waitLimit)
			}
			assertClosed(t, c)
		})
	}
}
