package h1

import (
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/penstock-dev/penstock/internal/listener"
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
	nc, err := listener.FDConn(c.fd)
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
// call, which may find nothing yet and wait again.
func (c *conn) waitFD(deadline time.Time) error {
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

// closeFD closes an fd-only connection's descriptor (after unregister).
func (c *conn) closeFD() {
	if c.fd >= 0 {
		unix.Close(c.fd)
	}
}

// shutdownFD closes an fd-only connection's sending side.
func (c *conn) shutdownFD() { unix.Shutdown(c.fd, unix.SHUT_WR) }
