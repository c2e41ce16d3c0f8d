//go:build !linux

package proxy

import "net"

// newSysConn returns c: raw system calls are Linux only (sysconn_linux.go).
func newSysConn(c *net.TCPConn) net.Conn { return c }
