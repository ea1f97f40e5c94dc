package h1

import (
	"errors"
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

// serveFDs accepts connections on tl's descriptor until the listener
// closes. The listener's own poll descriptor serves no readiness to raw
// callers (net's RawConn refuses Read on listeners), so the descriptor is
// also registered, level-triggered, with an epoll instance of this loop's
// own, and accept4 runs under RawConn.Control, which holds the descriptor
// open for the call: a listener closed meanwhile fails the call rather than
// leaving its number to another socket. Closing the listener leaves that
// epoll instance silent, so the wait has a one-second deadline after which
// the loop asks the listener again; Shutdown wakes it at once.
func (s *Server) serveFDs(tl *net.TCPListener) error {
	rc, err := tl.SyscallConn()
	if err != nil {
		return s.serveConns(tl)
	}
	ep, err := newEpoll()
	if err != nil {
		return s.serveConns(tl)
	}
	defer ep.file.Close()
	var regErr error
	if err := rc.Control(func(fd uintptr) {
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
		regErr = epollCtl(ep.fd, unix.EPOLL_CTL_ADD, int(fd), &ev)
	}); err != nil || regErr != nil {
		return s.serveConns(tl)
	}
	s.mu.Lock()
	if s.shuttingDown.Load() {
		s.mu.Unlock()
		return nil
	}
	s.acceptWake[ep] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.acceptWake, ep)
		s.mu.Unlock()
	}()

	var (
		nfd  int
		sa   unix.Sockaddr
		aerr error
	)
	accept := func(fd uintptr) {
		for {
			nfd, sa, aerr = unix.Accept4(int(fd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
			if aerr != unix.EINTR && aerr != unix.ECONNABORTED {
				return
			}
		}
	}
	events := make([]unix.EpollEvent, 1)
	ready := func(fd uintptr) bool {
		n, err := epollWaitNow(int(fd), events)
		return n > 0 || err != nil && err != unix.EINTR
	}
	var delay time.Duration
	for {
		// Take every connection waiting in the accept queue.
		for {
			if err := rc.Control(accept); err != nil {
				if s.shuttingDown.Load() {
					return nil
				}
				return &net.OpError{Op: "accept", Net: "tcp", Addr: tl.Addr(), Err: err}
			}
			if aerr == unix.EAGAIN {
				break
			}
			if aerr != nil {
				switch aerr {
				case unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM:
					// Out of descriptors or memory: back off as
					// net/http does rather than spin.
					delay = min(max(2*delay, 5*time.Millisecond), time.Second)
					time.Sleep(delay)
					continue
				}
				if s.shuttingDown.Load() {
					return nil
				}
				return &net.OpError{Op: "accept", Net: "tcp", Addr: tl.Addr(), Err: os.NewSyscallError("accept4", aerr)}
			}
			delay = 0
			s.acceptFD(nfd, sa)
		}
		ep.file.SetReadDeadline(time.Now().Add(time.Second))
		if err := ep.rc.Read(ready); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			// Shutdown closed the epoll instance.
			return nil
		}
	}
}

// wakeAcceptLoops ends the accept loops of serveFDs (Shutdown, after the
// listeners closed).
func (s *Server) wakeAcceptLoops() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ep := range s.acceptWake {
		ep.file.Close()
	}
}

// acceptFD takes a descriptor accept4 returned.
func (s *Server) acceptFD(fd int, sa unix.Sockaddr) {
	setConnOptions(fd)
	c := &conn{srv: s, fd: fd, first: true, remote: sockaddrAddrPort(sa)}
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

// setConnOptions gives an accepted socket what net.Listener.Accept gives
// one: no Nagle delay, and TCP keep-alive probes after 15 s idle, every
// 15 s, 9 of them (Go's defaults for accepted connections).
func setConnOptions(fd int) {
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 15)
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 15)
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPCNT, 9)
}

func sockaddrAddrPort(sa unix.Sockaddr) netip.AddrPort {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port))
	}
	return netip.AddrPort{}
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

// waitFD waits until c's descriptor is ready for ev (EPOLLIN or EPOLLOUT),
// the peer hangs up, deadline passes (zero: none) or the connection is
// killed. The descriptor, disarmed while its goroutine serves it (it is
// registered EPOLLONESHOT), is armed for ev for the wait.
func (c *conn) waitFD(ev uint32, deadline time.Time) error {
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
	e := unix.EpollEvent{Events: ev | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(c.fd), Pad: int32(c.gen)}
	if err := epollCtl(c.poll.epfd, unix.EPOLL_CTL_MOD, c.fd, &e); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
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
