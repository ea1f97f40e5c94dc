package upstream

import (
	"io"
	"net"
	"os"
	"syscall"

	"github.com/penstock-dev/penstock/internal/epoll"
)

// rawSocket reads and writes a plain (non-TLS) upstream socket with raw
// system calls (epoll.Recv and epoll.Send, whose package comment says why).
// The waiting still goes through the runtime's poller: the calls run inside
// the socket's RawConn.Read and Write, whose callback returns false on
// EAGAIN so that the goroutine parks until the socket is ready. Deadlines,
// SetDeadline(aLongTimeAgo) aborts and a concurrent Close keep working as
// with net.Conn, since RawConn holds the descriptor's reference while the
// callback runs.
//
// It is used by one goroutine at a time, like its h1Conn. The callbacks are
// bound once, so a read or write allocates nothing.
type rawSocket struct {
	nc      net.Conn // the socket, for addresses in errors
	rc      syscall.RawConn
	readFn  func(fd uintptr) bool
	writeFn func(fd uintptr) bool
	awaitFn func(fd uintptr) bool

	// await: the next Write is the request's last; see writeAwait.
	await   bool
	waiting bool

	rp    []byte
	rn    int
	rerr  syscall.Errno
	wp    []byte
	wn    int
	werr  syscall.Errno
	reads int // system calls, for tests
}

// newRawSocket returns nil when socket offers no RawConn.
func newRawSocket(socket net.Conn) *rawSocket {
	sc, ok := socket.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	s := &rawSocket{nc: socket, rc: rc}
	s.readFn, s.writeFn, s.awaitFn = s.read, s.write, s.writeAwait
	return s
}

func (s *rawSocket) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	s.rp, s.rn, s.rerr = p, 0, 0
	err := s.rc.Read(s.readFn)
	s.rp = nil
	switch {
	case err != nil:
		return 0, err
	case s.rerr != 0:
		return 0, s.opError("read", s.rerr)
	case s.rn == 0:
		return 0, io.EOF
	}
	return s.rn, nil
}

// read is the RawConn.Read callback: it returns false only when the socket
// has nothing to read yet.
func (s *rawSocket) read(fd uintptr) bool {
	s.reads++
	n, e := epoll.Recv(int(fd), s.rp)
	switch e {
	case 0:
		s.rn = n
		return true
	case syscall.EAGAIN:
		return false
	}
	s.rerr = e
	return true
}

// Write writes all of p, waiting in the runtime's poller while the socket's
// buffer is full. It reports the bytes the socket accepted, also when it
// fails.
func (s *rawSocket) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	s.wp, s.wn, s.werr = p, 0, 0
	if s.await {
		s.waiting = false
		// The wait's own error (deadline, close) is the response
		// read's to report: that read fails the same way at once.
		s.rc.Read(s.awaitFn)
		if s.werr != 0 || len(s.wp) == 0 {
			s.wp = nil
			if s.werr != 0 {
				return s.wn, s.opError("write", s.werr)
			}
			return s.wn, nil
		}
		// The socket took only part of it: the rest waits for room.
	}
	err := s.rc.Write(s.writeFn)
	s.wp = nil
	switch {
	case err != nil:
		return s.wn, err
	case s.werr != 0:
		return s.wn, s.opError("write", s.werr)
	}
	return s.wn, nil
}

// write is the RawConn.Write callback: it writes until all is accepted or
// the socket's buffer is full (false: wait, then come back).
func (s *rawSocket) write(fd uintptr) bool {
	n, e := epoll.Send(int(fd), s.wp)
	s.wn += n
	s.wp = s.wp[n:]
	switch e {
	case 0:
		return true
	case syscall.EAGAIN:
		return false
	}
	s.werr = e
	return true
}

// writeAwait is a RawConn.Read callback that writes a request's last bytes
// and then waits for the response. Go's poller forgets a socket's
// readiness when a read starts, so a read must be tried before it can
// wait, and the read right after a request is written nearly always finds
// nothing (EAGAIN): one wasted system call per request. Here the read
// starts first (RawConn.Read resets the readiness), the request is written
// inside it, and returning false waits for the readiness that only the
// response can bring. The read that follows then finds the response. If
// the socket does not take all of it, the write is finished the usual way.
func (s *rawSocket) writeAwait(fd uintptr) bool {
	if s.waiting {
		return true
	}
	if !s.write(fd) || s.werr != 0 {
		return true
	}
	s.waiting = true
	return false
}

// opError wraps errno as net.Conn's Read and Write would.
func (s *rawSocket) opError(op string, errno syscall.Errno) error {
	return &net.OpError{Op: op, Net: s.nc.LocalAddr().Network(), Source: s.nc.LocalAddr(), Addr: s.nc.RemoteAddr(),
		Err: os.NewSyscallError(op, errno)}
}

// socketFD returns the descriptor of a socket's RawConn, or -1.
func socketFD(rc syscall.RawConn) int {
	fd := -1
	rc.Control(func(f uintptr) { fd = int(f) })
	return fd
}
