package proxy

import (
	"net"

	"golang.org/x/sys/unix"
)

// kernelBytes returns how many payload bytes the kernel has moved on c so
// far: bytes the peer acknowledged plus bytes received from it
// (tcpi_bytes_acked + tcpi_bytes_received, TCP_INFO since Linux 4.1; an
// older kernel leaves both 0, which reads as no progress). The sum only
// grows, and it grows while a write blocked on a slow reader still drains,
// which a read deadline cannot see. Keepalive and zero-window probes carry
// no new bytes and leave it unchanged. ok is false when c is closed.
func kernelBytes(c *net.TCPConn) (n uint64, ok bool) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, false
	}
	var info *unix.TCPInfo
	var gerr error
	if err := raw.Control(func(fd uintptr) {
		info, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil || gerr != nil {
		return 0, false
	}
	return info.Bytes_acked + info.Bytes_received, true
}

// peerGone reports whether c's connection was torn down by a reset (or
// an abort) in the kernel: its TCP state is CLOSE while the proxy still
// holds the socket open. A socket whose peer sent a FIN is in CLOSE_WAIT,
// not CLOSE, so a clean end does not count. ok is false when c is closed.
func peerGone(c *net.TCPConn) (gone, ok bool) {
	raw, err := c.SyscallConn()
	if err != nil {
		return false, false
	}
	var info *unix.TCPInfo
	var gerr error
	if err := raw.Control(func(fd uintptr) {
		info, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil || gerr != nil {
		return false, false
	}
	return info.State == unix.BPF_TCP_CLOSE, true
}
