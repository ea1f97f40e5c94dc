//go:build !linux

package listener

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
)

// Descriptors are accepted bare on Linux only; elsewhere every connection
// is a net.Conn.

type fdAcceptor struct{}

func newFDAcceptor(*net.TCPListener) (*fdAcceptor, error) {
	return nil, errors.New("bare descriptors are accepted on Linux only")
}

func (a *fdAcceptor) accept() (int, netip.AddrPort, error) {
	return -1, netip.AddrPort{}, net.ErrClosed
}

func (a *fdAcceptor) wake() {}

func closeFD(fd int) { syscall.Close(fd) }
