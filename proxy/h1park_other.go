//go:build !linux

package proxy

import (
	"errors"
	"net"
)

// canPark is false here: there is no portable way to wait for a byte
// without reading it, so idle connections keep their buffers.
const canPark = false

func waitReadable(*net.TCPConn) error { return errors.ErrUnsupported }
