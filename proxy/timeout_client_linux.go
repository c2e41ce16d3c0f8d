package proxy

import (
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

// peerClosed reports whether c's peer closed (FIN: a zero-byte read) or
// reset the connection, with one non-blocking MSG_PEEK: no byte is
// consumed. Bytes waiting (a pipelined request) mean the peer is there as
// far as can be told.
func peerClosed(c *net.TCPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return true // closed
	}
	var buf [1]byte
	gone := false
	err = rc.Control(func(fd uintptr) {
		n, _, errno := unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&buf[0])), 1,
			unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0:
			gone = n == 0
		case unix.EAGAIN, unix.EINTR:
		default:
			gone = true // ECONNRESET and the like
		}
	})
	return err == nil && gone
}
