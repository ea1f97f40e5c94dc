package epoll

import (
	"io"
	"net"
	"os"
	"syscall"
)

// RawConn returns a TCP connection whose Read and Write use Recv and Send
// (raw system calls, see rawio_linux.go) for what the engine reads and
// writes through crypto/tls: a TLS connection is a net.Conn the engine
// cannot poll itself, and its records went through net.Conn's read and
// write, whose syscall.Syscall woke the runtime's sysmon thread. Under
// HTTP/2 load on one core, sysmon's wake-ups and the thread hand-offs
// they start took about an eighth of the process's CPU time.
//
// The waiting still goes through the runtime's poller: the calls run
// inside the socket's RawConn.Read and Write, whose callbacks return false
// on EAGAIN so that the goroutine parks until the socket is ready.
// Deadlines, Close from another goroutine and the other methods of
// *net.TCPConn (CloseWrite, SyscallConn, addresses) keep working.
//
// A connection that is not a *net.TCPConn is returned as it is.
func RawConn(nc net.Conn) net.Conn {
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return nc
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nc
	}
	c := &rawConn{TCPConn: tc, rc: rc}
	c.readFn, c.writeFn = c.read, c.write
	return c
}

// rawConn is RawConn's connection. One Read and one Write may run at once
// (each has its own fields), as with crypto/tls, which serialises its
// reads and its writes.
type rawConn struct {
	*net.TCPConn
	rc      syscall.RawConn
	readFn  func(fd uintptr) bool
	writeFn func(fd uintptr) bool

	rp   []byte
	rn   int
	rerr syscall.Errno

	wp   []byte
	wn   int
	werr syscall.Errno
}

func (c *rawConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rp, c.rn, c.rerr = p, 0, 0
	err := c.rc.Read(c.readFn)
	c.rp = nil
	switch {
	case err != nil:
		return 0, err
	case c.rerr != 0:
		return 0, c.opError("read", c.rerr)
	case c.rn == 0:
		return 0, io.EOF
	}
	return c.rn, nil
}

// read is the RawConn.Read callback: false only when there is nothing to
// read yet.
func (c *rawConn) read(fd uintptr) bool {
	n, e := Recv(int(fd), c.rp)
	switch e {
	case 0:
		c.rn = n
		return true
	case syscall.EAGAIN:
		return false
	}
	c.rerr = e
	return true
}

// Write writes all of p, parked in the runtime's poller while the socket's
// buffer is full; it reports the bytes written, also when it fails.
func (c *rawConn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.wp, c.wn, c.werr = p, 0, 0
	err := c.rc.Write(c.writeFn)
	c.wp = nil
	switch {
	case err != nil:
		return c.wn, err
	case c.werr != 0:
		return c.wn, c.opError("write", c.werr)
	}
	return c.wn, nil
}

// write is the RawConn.Write callback: false while the socket's buffer is
// full.
func (c *rawConn) write(fd uintptr) bool {
	n, e := Send(int(fd), c.wp)
	c.wn += n
	c.wp = c.wp[n:]
	switch e {
	case 0:
		return true
	case syscall.EAGAIN:
		return false
	}
	c.werr = e
	return true
}

// opError wraps errno as net.Conn's Read and Write would.
func (c *rawConn) opError(op string, errno syscall.Errno) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(),
		Err: os.NewSyscallError(op, errno)}
}
