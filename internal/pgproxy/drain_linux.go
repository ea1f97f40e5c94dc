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

// rawWriter is the io.Writer under a pgproto3 Backend or Frontend: on a
// TCP connection it writes with epoll.Send (sendto as a raw system call)
// inside RawConn.Write, which waits for the socket to be writable when its
// buffer is full; other connections are written through conn.
type rawWriter struct {
	conn net.Conn
	rc   syscall.RawConn
}

func newRawWriter(conn net.Conn) *rawWriter {
	return &rawWriter{conn: conn, rc: rawConnOf(conn)}
}

func (w *rawWriter) Write(p []byte) (int, error) {
	if w.rc == nil || len(p) == 0 {
		return w.conn.Write(p)
	}
	n := 0
	var werr error
	err := w.rc.Write(func(fd uintptr) bool {
		k, e := epoll.Send(int(fd), p[n:])
		n += k
		switch e {
		case 0:
			return true
		case syscall.EAGAIN:
			return false
		}
		werr = os.NewSyscallError("sendto", e)
		return true
	})
	if werr == nil {
		werr = err
	}
	return n, werr
}
