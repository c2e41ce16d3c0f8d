package proxy

import (
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

const canPark = true

// waitReadable blocks until c has a byte to read, its EOF or an error, or
// until its read deadline passes, without reading anything: a non-blocking
// MSG_PEEK of one byte, and the runtime's poller between tries (RawConn.Read
// tries before it waits, so a byte that came before the call is not missed).
func waitReadable(c *net.TCPConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var b [1]byte
	return rc.Read(func(fd uintptr) bool {
		_, _, errno := unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
			unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
		return errno != unix.EAGAIN // a byte, EOF, or an error the Read that follows sees
	})
}
