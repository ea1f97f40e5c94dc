package h1

import (
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/penstock-dev/penstock/internal/epoll"
)

// Reads and writes on a polled plain connection go straight to its
// descriptor (epoll.Recv and epoll.Send: recvfrom and sendto through
// syscall.RawSyscall, whose package comment says why). Only when the socket
// would block does the connection wait: in the runtime's poller through its
// net.Conn, or, for a connection the engine accepted itself
// (fdconn_linux.go, no net.Conn), in the server's IO (waitFD).
//
// Safety: only the goroutine that owns the connection (an active one) reads
// and writes it, and only that goroutine closes an active connection
// (Shutdown and the idle sweeper close idle ones, kill interrupts), so the
// descriptor number cannot be closed and reused under a raw call.

// rawRead reads into p from c's descriptor without blocking. again reports
// that nothing was ready (EAGAIN).
func (c *conn) rawRead(p []byte) (n int, again bool, err error) {
	if len(p) == 0 {
		return 0, false, nil
	}
	n, errno := epoll.Recv(c.fd, p)
	switch errno {
	case 0:
		if n == 0 {
			return 0, false, io.EOF
		}
		return n, false, nil
	case syscall.EAGAIN:
		return 0, true, nil
	}
	return 0, false, os.NewSyscallError("recvfrom", errno)
}

// rawWrite writes as much of p as the socket takes without blocking.
func (c *conn) rawWrite(p []byte) (int, error) {
	n, errno := epoll.Send(c.fd, p)
	if errno != 0 && errno != syscall.EAGAIN {
		return n, os.NewSyscallError("sendto", errno)
	}
	return n, nil
}

// read reads into p, straight from the descriptor when the connection is
// raw, waiting for readiness when nothing is there.
func (c *conn) read(p []byte) (int, error) {
	if !c.raw {
		return c.nc.Read(p)
	}
	if c.nc == nil {
		return c.readFD(p, time.Time{})
	}
	if c.killed.Load() {
		return 0, net.ErrClosed
	}
	if n, again, err := c.rawRead(p); !again {
		return n, err
	}
	return c.nc.Read(p)
}

// write writes p in full, straight to the descriptor when the connection is
// raw, waiting for room when the socket takes no more.
func (c *conn) write(p []byte) (int, error) {
	if !c.raw {
		return c.nc.Write(p)
	}
	if c.nc == nil {
		return c.writeFD(p, time.Time{})
	}
	if c.killed.Load() {
		return 0, net.ErrClosed
	}
	n, err := c.rawWrite(p)
	if err != nil || n == len(p) {
		return n, err
	}
	m, err := c.nc.Write(p[n:])
	return n + m, err
}

// headWait is how reading one request head has gone so far.
type headWait struct {
	waited   bool      // a read found nothing ready
	deadline time.Time // header timeout, once waited (fd-only connections)
}

// readHeadBytes reads more of a request head. A raw connection reads its
// descriptor; once a read finds nothing ready the header timeout applies
// (slowloris protection): from the first wait rather than the first byte,
// so a head that arrives whole sets and clears no timer.
func (c *conn) readHeadBytes(p []byte, hw *headWait) (int, error) {
	timeout := c.srv.o.ReadHeaderTimeout
	for c.raw && (c.nc == nil || !hw.waited) {
		if hw.waited && !hw.deadline.IsZero() && time.Now().After(hw.deadline) {
			return 0, os.ErrDeadlineExceeded
		}
		n, again, err := c.rawRead(p)
		if !again {
			return n, err
		}
		if !hw.waited && c.r == c.w {
			// Woken for nothing (an edge for bytes already read, or
			// room to write): back to the poller.
			return 0, errNoRequest
		}
		hw.waited = true
		if c.nc != nil {
			break
		}
		if hw.deadline.IsZero() && timeout > 0 {
			hw.deadline = time.Now().Add(timeout)
		}
		if err := c.waitFD(hw.deadline); err != nil {
			return 0, err
		}
	}
	hw.waited = true
	if !c.headDeadline && timeout > 0 {
		c.headDeadline = true
		c.nc.SetReadDeadline(time.Now().Add(timeout))
	}
	return c.nc.Read(p)
}

// readFD reads into p from an fd-only connection, waiting in the poller
// until deadline (zero: no deadline).
func (c *conn) readFD(p []byte, deadline time.Time) (int, error) {
	for {
		if c.killed.Load() {
			return 0, net.ErrClosed
		}
		n, again, err := c.rawRead(p)
		if !again {
			return n, err
		}
		if err := c.waitFD(deadline); err != nil {
			return 0, err
		}
	}
}

// writeFD writes p in full to an fd-only connection, waiting in the poller
// for room until deadline (zero: no deadline).
func (c *conn) writeFD(p []byte, deadline time.Time) (int, error) {
	n := 0
	for {
		if c.killed.Load() {
			return n, net.ErrClosed
		}
		m, err := c.rawWrite(p[n:])
		n += m
		if err != nil || n == len(p) {
			return n, err
		}
		if err := c.waitFD(deadline); err != nil {
			return n, err
		}
	}
}
