package h3

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// SO_RCVBUFFORCE and SO_SNDBUFFORCE (Linux, CAP_NET_ADMIN).
const (
	forceRcv = syscall.SO_RCVBUFFORCE
	forceSnd = syscall.SO_SNDBUFFORCE
)

// reusePort sets SO_REUSEPORT so that, in a binary upgrade, the new process
// binds the same UDP port while the old one drains its connections (UDP
// sockets are not handed over; the TCP listener's bind still fails if
// another program holds the port).
func reusePort(_, _ string, c syscall.RawConn) error {
	var err error
	if cerr := c.Control(func(fd uintptr) {
		err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}); cerr != nil {
		return cerr
	}
	return err
}
