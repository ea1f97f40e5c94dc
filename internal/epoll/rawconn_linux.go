package epoll

import (
	"net"
	"os"
	"sync"
	"syscall"
)

// RawConn returns a TCP connection whose Write uses Send (a raw system
// call, see rawio_linux.go): what crypto/tls writes for the engine's TLS
// connections, and HTTP/2 connections' frames. Their writes went through
// net.Conn's, whose syscall.Syscall woke the runtime's sysmon thread; under
// HTTP/2 load on one core sysmon's wake-ups and the thread hand-offs they
// start took about an eighth of the process's CPU time.
//
// Reads stay net.Conn's. Raw reads cost less still, but a connection's
// reader then keeps the processor while the client has bytes for it (no
// system call lets the scheduler in): with one P, h2load's mean latency
// through penstock doubled and its worst grew to hundreds of
// milliseconds, the goroutines of the responses waiting behind it.
//
// The waiting still goes through the runtime's poller: Send runs inside
// the socket's RawConn.Write, whose callback returns false on EAGAIN so
// that the goroutine parks until the socket has room. Deadlines, Close
// from another goroutine and the other methods of *net.TCPConn
// (CloseWrite, SyscallConn, addresses) keep working.
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
	c.writeFn = c.write
	return c
}

// rawConn is RawConn's connection.
type rawConn struct {
	*net.TCPConn
	rc      syscall.RawConn
	writeFn func(fd uintptr) bool

	// wmu makes Write safe for concurrent use, as net.Conn's is (its
	// users serialise their writes already: it is never contended).
	wmu  sync.Mutex
	wp   []byte
	wn   int
	werr syscall.Errno
}

// Write writes all of p, parked in the runtime's poller while the socket's
// buffer is full; it reports the bytes written, also when it fails.
func (c *rawConn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
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
