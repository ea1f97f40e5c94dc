package pgproxy

import (
	"net"
	"os"
	"syscall"

	"github.com/penstock-dev/penstock/internal/epoll"
)

// rawConnOf returns the socket of a TCP connection, nil for other
// connections (TLS, whose bytes are not the socket's).
func rawConnOf(conn net.Conn) syscall.RawConn {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// readFD is one recvfrom(2), made with epoll.Recv (a raw system call: see
// there why); EAGAIN is errDrained.
func readFD(fd int, p []byte) (int, error) {
	n, e := epoll.Recv(fd, p)
	switch e {
	case 0:
		return n, nil
	case syscall.EAGAIN:
		return 0, errDrained
	}
	return 0, os.NewSyscallError("recvfrom", e)
}
