package proxy

import (
	"errors"
	"os"
	"time"
)

// Parking idle client connections: a keep-alive connection waiting for its
// next request holds no buffer. After parkAfter without a byte, the loop
// returns its read buffer and its two field arrays (12 KiB) to their pools
// and drops its write buffer, then waits for the socket to become readable
// without reading (waitReadable: the bytes stay in the kernel) and takes
// them again when the next request starts. So 10,000 idle connections cost
// their goroutines and sockets (about 13 KB each, B10), not 10,000 × 30
// KiB; a busy connection never parks and pays nothing for this (the idle
// read deadline it sets anyway is only shorter), and one that waits longer
// than parkAfter between requests pays a peek and two pool round trips.

// parkAfter is how long a client connection waits for a request's first
// byte holding its buffers before it parks: short, so that the buffers of
// connections that went quiet are reused by busy ones at once.
const parkAfter = 100 * time.Millisecond

// parkable reports whether an idle wait of wait may park: the connection
// is a raw TCP socket (waitReadable needs its file descriptor) and the wait
// is longer than parkAfter.
func (hc *h1conn) parkable(wait time.Duration) bool {
	return hc.tcp != nil && wait > hc.l.parkAfter && canPark
}

// park gives up hc's buffers, waits until the client sends, closes or the
// idle deadline passes (or the drain's past deadline), then takes a read
// buffer and reads into it. The caller has read nothing of the next
// request yet (buf[r:w] is empty).
func (hc *h1conn) park(deadline time.Time) (int, error) {
	if len(hc.buf) == upBufSize {
		upBufs.Put((*[upBufSize]byte)(hc.buf))
	}
	hc.buf, hc.r, hc.w = nil, 0, 0
	hc.out = nil
	hc.giveFields()
	hc.l.parked.Add(1)
	defer hc.l.parked.Add(-1)
	hc.c.SetReadDeadline(deadline)
	var err error
	if hc.state.Load() != fcIdle {
		// A drain came after the caller looked: its past deadline was
		// just overwritten, so do not wait.
		err = os.ErrDeadlineExceeded
	} else {
		err = waitReadable(hc.tcp)
	}
	hc.buf = upBufs.Get().(*[upBufSize]byte)[:]
	hc.takeFields()
	if err != nil {
		return 0, err
	}
	return hc.c.Read(hc.buf)
}

// deadlinePassed reports whether err is a passed read deadline.
func deadlinePassed(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// Parked reports how many client connections of the listener are parked
// now: idle, holding no buffer.
func (l *HTTPListener) Parked() int64 { return l.parked.Load() }
