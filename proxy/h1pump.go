package proxy

import (
	"errors"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// bodyPump copies the rest of a request body from the client to the
// endpoint on its own goroutine, while the connection's goroutine waits
// for the response: an endpoint may answer before it read the whole body,
// and a body that does not fit the buffer must stream. While it runs it
// owns hc.buf, hc.r and hc.w.
type bodyPump struct {
	hc     *h1conn
	uc     *upConn
	result chan error

	mu       sync.Mutex // orders the response deadline with gotHead
	headSeen bool
	// final is the response deadline set when the whole body was sent;
	// read after result says so (the send orders them).
	final time.Time

	forced atomic.Bool // abort stopped it with past deadlines
	sent   atomic.Bool // the body's last byte was written to the endpoint
}

// startPump starts copying: remain Content-Length bytes, or the rest of a
// chunked body (hc.chunks is where the scanner stopped). Once the body is
// sent it sets the response deadline: timeout from then (the attempt's:
// the listener's response timeout or the retry policy's per-try timeout,
// the lesser), and no later than deadline (zero: none), the request's.
func (hc *h1conn) startPump(uc *upConn, remain int64, timeout time.Duration, deadline time.Time) *bodyPump {
	p := &bodyPump{hc: hc, uc: uc, result: make(chan error, 1)}
	hc.c.SetReadDeadline(time.Time{}) // bodies have no deadline
	go func() {
		err := p.copy(remain)
		if err == nil {
			// The response deadline starts when the request is complete.
			p.mu.Lock()
			if !p.headSeen {
				// From here the wait is the one roundTrip has for a
				// body in hand, client checks included.
				now := time.Now()
				p.final = earlier(now.Add(timeout), deadline)
				uc.nc.SetReadDeadline(earlier(p.final, now.Add(clientCheckAfter)))
			}
			p.mu.Unlock()
		} else if isClientBodyErr(err) {
			// Wake the response read: the exchange failed.
			uc.nc.SetReadDeadline(aLongTimeAgo)
		}
		p.result <- err
	}()
	return p
}

// isClientBodyErr reports whether err is the client's: its body broke or
// was too large.
func isClientBodyErr(err error) bool {
	var cbe *clientBodyError
	return errors.As(err, &cbe) || errors.Is(err, errBodyTooLarge)
}

// gotHead records that the response head arrived: no response deadline
// from now on.
func (p *bodyPump) gotHead() {
	p.mu.Lock()
	p.headSeen = true
	p.uc.nc.SetReadDeadline(time.Time{})
	p.mu.Unlock()
}

// running reports whether the pump is still copying.
//
// early reports whether the response came before the whole request body
// went out (an early 401 or 413 to an upload). The endpoint can read the
// body's last bytes and answer before the pump's goroutine, descheduled
// right after its last write, gets to say it is done: so a pump that wrote
// its last byte is waited for, and one that has not gets earlyGrace to
// finish before the response counts as early (a true early answer is then
// that much later; the common case, no pump or a finished one, waits for
// nothing).
func (p *bodyPump) early() bool {
	if !p.running() {
		return false
	}
	if !p.sent.Load() {
		t := time.NewTimer(earlyGrace)
		defer t.Stop()
		select {
		case err := <-p.result:
			p.result <- err
			return err != nil // a failed pump did not send it all
		case <-t.C:
			return true
		}
	}
	err := <-p.result
	p.result <- err
	return false
}

// earlyGrace is how long early waits for a pump that has not written its
// last byte yet.
const earlyGrace = 20 * time.Millisecond

func (p *bodyPump) running() bool {
	select {
	case err := <-p.result:
		p.result <- err
		return false
	default:
		return true
	}
}

// sentAll reports whether the pump has sent the whole body, and then the
// response deadline it set (zero if the head came first).
func (p *bodyPump) sentAll() (time.Time, bool) {
	select {
	case err := <-p.result:
		p.result <- err
		return p.final, err == nil
	default:
		return time.Time{}, false
	}
}

// abort stops the pump if it still runs and returns its result: nil when
// the whole body went out.
func (p *bodyPump) abort() error {
	select {
	case err := <-p.result:
		p.result <- err // abort may be called again
		return err
	default:
	}
	p.forced.Store(true)
	p.hc.c.SetReadDeadline(aLongTimeAgo)
	p.uc.nc.SetWriteDeadline(aLongTimeAgo)
	err := <-p.result
	p.result <- err
	return err
}

// induced reports whether err, the pump's result, is only the deadline
// abort set to stop it: no fault of the client nor of the endpoint.
func (p *bodyPump) induced(err error) bool {
	return p.forced.Load() && errors.Is(err, os.ErrDeadlineExceeded)
}

// copy moves the body.
func (p *bodyPump) copy(remain int64) error {
	hc, uc := p.hc, p.uc
	max := hc.l.cfg.MaxBodyBytes
	if !hc.req.Chunked {
		if remain >= spliceMin && hc.tcp != nil && uc.tcp != nil && hc.r == hc.w {
			lr := io.LimitedReader{R: hc.tcp, N: remain}
			n, err := uc.tcp.ReadFrom(&lr)
			if n == remain {
				p.sent.Store(true)
				return nil
			}
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			return &clientBodyError{err}
		}
		for remain > 0 {
			if hc.r == hc.w {
				hc.r, hc.w = 0, 0
				n, err := hc.c.Read(hc.buf[:min(int64(len(hc.buf)), remain)])
				hc.w = n
				if n == 0 && err != nil {
					return &clientBodyError{unexpectedEOF(err)}
				}
			}
			k := min(int64(hc.w-hc.r), remain)
			if _, err := uc.nc.Write(hc.buf[hc.r : hc.r+int(k)]); err != nil {
				return err
			}
			hc.r += int(k)
			remain -= k
		}
		p.sent.Store(true)
		return nil
	}
	for {
		if hc.r < hc.w {
			k, done, serr := hc.chunks.Scan(hc.buf[hc.r:hc.w])
			if serr != nil {
				return &clientBodyError{serr}
			}
			if max > 0 && hc.chunks.Data > max {
				return errBodyTooLarge
			}
			if _, err := uc.nc.Write(hc.buf[hc.r : hc.r+k]); err != nil {
				return err
			}
			hc.r += k
			if done {
				p.sent.Store(true)
				return nil
			}
		}
		hc.r, hc.w = 0, 0
		n, err := hc.c.Read(hc.buf)
		hc.w = n
		if n == 0 && err != nil {
			return &clientBodyError{unexpectedEOF(err)}
		}
	}
}
