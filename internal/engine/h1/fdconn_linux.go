package h1

import (
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Plain connections on a TCP listener are accepted by the engine itself
// (accept4 on the listener's descriptor) and never become a net.Conn while
// they speak HTTP/1.x: an idle keep-alive connection is its conn struct, its
// slot in the descriptor table and its epoll registrations, about a third
// of what a net.Conn costs (the netFD, its two addresses and the runtime's
// poll descriptor). Such an "fd-only" connection reads and writes with raw
// system calls (rawio_linux.go) and, when the socket would block, waits in
// penstock's own poller (waitFD). It gets a net.Conn, a duplicate of its
// descriptor, only when it leaves the engine: hijacked for an Upgrade,
// handed to the HTTP/2 server after the h2c preface, or served by its own
// goroutine when it cannot be polled.

// acceptFD takes a descriptor accept4 returned.
func (s *Server) acceptFD(fd int, remote netip.AddrPort) {
	c := &conn{srv: s, fd: fd, first: true, remote: remote}
	if !s.track(c) {
		unix.Close(fd)
		return
	}
	s.opened(c)
	if pollFD(c, fd) {
		return
	}
	if err := c.promote(); err != nil {
		c.close()
		return
	}
	go c.serveGoroutine()
}

// promote gives an fd-only connection a net.Conn: a duplicate of its
// descriptor in the runtime's poller, after which the original is closed.
// The connection must be out of the pollers (unregister) first.
func (c *conn) promote() error {
	if c.nc != nil {
		return nil
	}
	c.unregister()
	f := os.NewFile(uintptr(c.fd), "tcp")
	nc, err := net.FileConn(f)
	f.Close()
	c.fd = -1
	if err != nil {
		return err
	}
	c.nc = nc
	return nil
}

// waiter parks the goroutine of an fd-only connection until the poller
// reports its descriptor ready. Waiters are pooled: an idle connection
// holds none.
type waiter struct {
	ch chan struct{}
	t  *time.Timer
}

var waiterPool = sync.Pool{New: func() any {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &waiter{ch: make(chan struct{}, 1), t: t}
}}

func (w *waiter) wake() {
	select {
	case w.ch <- struct{}{}:
	default:
	}
}

// waitFD waits until the poller reports an event for c's descriptor (it
// stays registered, edge-triggered, for reading, writing and hang-ups),
// deadline passes (zero: none) or the connection is killed. An event that
// came since the last wait counts (ready): the caller retries its system
// call, which may find nothing yet and wait again. ev names what the caller
// waits for (EPOLLIN or EPOLLOUT), for the reader.
func (c *conn) waitFD(ev uint32, deadline time.Time) error {
	_ = ev
	w := waiterPool.Get().(*waiter)
	defer waiterPool.Put(w)
	select {
	case <-w.ch:
	default:
	}
	c.waiter.Store(w)
	defer c.waiter.Store(nil)
	if c.killed.Load() {
		return net.ErrClosed
	}
	if c.ready.Swap(false) {
		return nil
	}
	if deadline.IsZero() {
		<-w.ch
	} else {
		d := time.Until(deadline)
		if d <= 0 {
			return os.ErrDeadlineExceeded
		}
		w.t.Reset(d)
		select {
		case <-w.ch:
			w.t.Stop()
		case <-w.t.C:
			return os.ErrDeadlineExceeded
		}
	}
	c.ready.Store(false)
	if c.killed.Load() {
		return net.ErrClosed
	}
	return nil
}

// interrupt makes the I/O of a killed connection fail at once.
func (c *conn) interrupt() {
	if c.nc != nil {
		c.nc.SetDeadline(time.Unix(1, 0))
		return
	}
	if w := c.waiter.Load(); w != nil {
		w.wake()
	}
}

// closeSocket closes the connection's socket (after unregister).
func (c *conn) closeSocket() {
	if c.nc != nil {
		c.nc.Close()
	} else if c.fd >= 0 {
		unix.Close(c.fd)
	}
}

// writeWithin writes p, giving up after d (error responses).
func (c *conn) writeWithin(p []byte, d time.Duration) {
	if c.nc == nil {
		c.writeBy(p, time.Now().Add(d))
		return
	}
	c.nc.SetWriteDeadline(time.Now().Add(d))
	c.nc.Write(p)
}

// lingerClose closes the write side and reads (and discards) for a moment
// before closing, so the response is not destroyed by a TCP reset when the
// client's unread bytes hit a closed socket (RFC 9112 §9.6).
func (c *conn) lingerClose() {
	var scratch [512]byte
	if c.nc == nil {
		unix.Shutdown(c.fd, unix.SHUT_WR)
		deadline := time.Now().Add(lingerTime)
		for range 128 {
			if _, err := c.readBy(scratch[:], deadline); err != nil {
				break
			}
		}
		return
	}
	type closeWriter interface{ CloseWrite() error }
	if cw, ok := c.nc.(closeWriter); ok {
		cw.CloseWrite()
		c.nc.SetReadDeadline(time.Now().Add(lingerTime))
		for range 128 {
			if _, err := c.nc.Read(scratch[:]); err != nil {
				break
			}
		}
	}
}
