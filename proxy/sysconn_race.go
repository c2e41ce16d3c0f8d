//go:build linux && race

package proxy

import (
	"runtime"
	"unsafe"
)

// What syscall.Read and syscall.Write tell the race detector, which
// RawSyscall does not (sysconn_linux.go): the kernel wrote the bytes read
// and read the bytes written, and a write orders the goroutine doing it
// before a later read. The sync point is our own (syscall's is private),
// so it orders sysConn I/O among itself, not against other files.

var sysIOSync byte

func raceReadDone(b []byte) {
	if len(b) > 0 {
		runtime.RaceWriteRange(unsafe.Pointer(&b[0]), len(b))
	}
	runtime.RaceAcquire(unsafe.Pointer(&sysIOSync))
}

func raceWriteStart(b []byte) {
	runtime.RaceReleaseMerge(unsafe.Pointer(&sysIOSync))
	if len(b) > 0 {
		runtime.RaceReadRange(unsafe.Pointer(&b[0]), len(b))
	}
}
