//go:build !linux

package proxy

import "net"

// kernelBytes has no portable source: without it only bytes recorded by
// the copy count as activity, so a write blocked on a slow reader for
// longer than IdleTimeout may be taken for idleness.
func kernelBytes(*net.TCPConn) (uint64, bool) { return 0, false }

// peerGone cannot tell which side of a connection failed without TCP_INFO:
// errors are charged to the endpoint, as before the side was looked at.
func peerGone(*net.TCPConn) (gone, ok bool) { return false, false }
