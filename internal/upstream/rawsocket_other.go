//go:build !linux

package upstream

import (
	"net"
	"syscall"
)

// rawSocket is Linux only: elsewhere connections read and write through
// net.Conn.
type rawSocket struct {
	reads int
	await bool
}

func newRawSocket(net.Conn) *rawSocket { return nil }

func (s *rawSocket) Read(p []byte) (int, error)  { panic("unreachable") }
func (s *rawSocket) Write(p []byte) (int, error) { panic("unreachable") }

// socketFD returns the descriptor of a socket's RawConn, or -1.
func socketFD(rc syscall.RawConn) int {
	fd := -1
	rc.Control(func(f uintptr) { fd = int(f) })
	return fd
}
