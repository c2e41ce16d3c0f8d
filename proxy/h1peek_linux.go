package proxy

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// idleProbe checks whether an idle pooled connection still looks open: a
// non-blocking MSG_PEEK sees neither the endpoint's FIN (it closed the
// connection while idle, as servers do after their keep-alive timeout) nor
// unexpected bytes. One syscall per reused connection and no allocation:
// the probe, its one-byte buffer and the bound method RawConn.Control
// calls are made once per upstream connection.
type idleProbe struct {
	raw   syscall.RawConn
	peekF func(fd uintptr) // p.peek, bound once
	buf   [1]byte
	alive bool
}

// newIdleProbe returns the probe of the connection rc belongs to.
func newIdleProbe(rc syscall.RawConn) *idleProbe {
	p := &idleProbe{raw: rc}
	p.peekF = p.peek
	return p
}

// Alive reports whether the connection still looks open; a nil probe (not
// a TCP connection) cannot look and says yes. Only the goroutine that took
// the connection from the pool calls it.
func (p *idleProbe) Alive() bool {
	if p == nil {
		return true
	}
	p.alive = false
	err := p.raw.Control(p.peekF)
	return err == nil && p.alive
}

func (p *idleProbe) peek(fd uintptr) {
	// recvfrom with no address: nothing for the kernel to fill in, so
	// nothing to allocate (unix.Recvfrom allocates a sockaddr).
	_, _, errno := unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&p.buf[0])), 1,
		unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
	p.alive = errno == unix.EAGAIN
}
