package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sysConn is a TCP connection of the fast path whose Read and Write make
// their system calls raw: through the runtime's poller (syscall.RawConn,
// which waits for readiness and keeps the deadlines and Close), but with
// RawSyscall rather than Syscall (x/sys/unix's: it has sendto on every
// Linux architecture).
//
// Why: syscall.Syscall tells the scheduler it enters a system call, and
// when every P was idle that wakes the runtime's monitor thread (sysmon),
// which then polls every 20 µs while the process is busy. A proxy at a
// moderate rate goes idle and busy again with every request, so each one
// paid a futex wake and several of those polls: a tenth to a fifth of its
// CPU at 1000 req/s (perf, B4 and B9). The sockets are non-blocking, so a
// raw read or send returns at once (EAGAIN when it would block, and the
// poller waits), and sysmon has nothing to take back from them.
//
// Concurrency: as for net.Conn, one Read and one Write may run at once;
// two Reads (or two Writes) at once are not allowed (the fast path never
// does that: a connection has one reader and one writer at a time).
type sysConn struct {
	*net.TCPConn
	rc syscall.RawConn

	// the Read in progress: its buffer, what it read, its error
	rb   []byte
	rn   int
	rerr syscall.Errno
	// the Write in progress: its buffer, how much is written, its error
	wb   []byte
	wn   int
	werr syscall.Errno

	readFn, writeFn func(uintptr) bool // doRead, doWrite, bound once
}

// newSysConn wraps c; it returns c itself when its raw connection cannot
// be had.
func newSysConn(c *net.TCPConn) net.Conn {
	rc, err := c.SyscallConn()
	if err != nil {
		return c
	}
	sc := &sysConn{TCPConn: c, rc: rc}
	sc.readFn, sc.writeFn = sc.doRead, sc.doWrite
	return sc
}

func (c *sysConn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	c.rb, c.rn, c.rerr = b, 0, 0
	err := c.rc.Read(c.readFn)
	n, errno := c.rn, c.rerr
	c.rb = nil
	switch {
	case err != nil:
		return 0, c.opError("read", err)
	case errno != 0:
		return 0, c.opError("read", os.NewSyscallError("read", errno))
	case n == 0:
		return 0, io.EOF
	}
	raceReadDone(b[:n])
	return n, nil
}

func (c *sysConn) doRead(fd uintptr) bool {
	for {
		n, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&c.rb[0])), uintptr(len(c.rb)))
		switch e {
		case 0:
			c.rn = int(n)
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		default:
			c.rerr = e
		}
		return true
	}
}

func (c *sysConn) Write(b []byte) (int, error) {
	raceWriteStart(b)
	c.wb, c.wn, c.werr = b, 0, 0
	err := c.rc.Write(c.writeFn)
	n, errno := c.wn, c.werr
	c.wb = nil
	switch {
	case err != nil:
		return n, c.opError("write", err)
	case errno != 0:
		return n, c.opError("write", os.NewSyscallError("write", errno))
	}
	return n, nil
}

// doWrite sends what is left of c.wb, with MSG_NOSIGNAL: a peer that has
// gone is EPIPE, not a SIGPIPE.
func (c *sysConn) doWrite(fd uintptr) bool {
	for c.wn < len(c.wb) {
		p := c.wb[c.wn:]
		n, _, e := unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), unix.MSG_NOSIGNAL, 0, 0)
		switch e {
		case 0:
			c.wn += int(n)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			c.werr = e
			return true
		}
	}
	return true
}

// opError is err as net.Conn's Read and Write give it: a *net.OpError of
// op (RawConn's own errors say "raw-read" and "raw-write").
func (c *sysConn) opError(op string, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		oe.Op = op
		return oe
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
