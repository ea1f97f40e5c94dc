//go:build !linux

package pgproxy

import (
	"errors"
	"net"
	"syscall"
)

// rawConnOf: connections are read through net.Conn on this system.
func rawConnOf(net.Conn) syscall.RawConn { return nil }

func readFD(int, []byte) (int, error) { return 0, errors.ErrUnsupported }
