package listener

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
)

// Socket is a bound listening socket that outlives the servers using it.
//
// A reload that changes a listener's settings (TLS, limits, protocols)
// starts a new server on the same socket and drains the old one; a binary
// upgrade hands the socket to a new process. Neither may close the socket,
// or connections arriving in between would be refused. So one accept loop
// owns the socket and hands each connection to the current View; a server
// serves a View, and closing a View stops that server's accepting without
// touching the socket.
type Socket struct {
	ln net.Listener
	// fds accepts bare descriptors for Views that ask for them
	// (AcceptFD); nil where that is not possible.
	fds       *fdAcceptor
	current   atomic.Pointer[View]
	once      sync.Once
	closed    chan struct{}
	detached  atomic.Bool
	loopDone  chan struct{}
	closeOnce sync.Once
}

// NewSocket takes ownership of ln.
func NewSocket(ln net.Listener) *Socket {
	s := &Socket{ln: ln, closed: make(chan struct{}), loopDone: make(chan struct{})}
	if tl, ok := ln.(*net.TCPListener); ok {
		s.fds, _ = newFDAcceptor(tl)
	}
	return s
}

// Detach stops this process from accepting on the socket, for a binary
// upgrade: it closes this process's descriptor (the new process holds its
// own, so the socket stays open and connections queue for it) and waits
// until the accept loop has handed over its last connection. The current
// View keeps serving the connections it has.
func (s *Socket) Detach() {
	if s.detached.Swap(true) {
		return
	}
	s.ln.Close()
	if s.fds != nil {
		s.fds.wake()
	}
	if s.current.Load() != nil {
		<-s.loopDone
	}
}

// Addr is the socket's bound address.
func (s *Socket) Addr() net.Addr { return s.ln.Addr() }

// Dup returns a duplicate of the socket's file descriptor, for handing to
// another process, without touching the socket's blocking mode (unlike
// File, whose Fd would make every duplicate blocking). The caller closes it.
func (s *Socket) Dup() (int, error) {
	sc, ok := s.ln.(syscall.Conn)
	if !ok {
		return -1, errors.New("listener has no file descriptor")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	nfd := -1
	var dupErr error
	if err := rc.Control(func(fd uintptr) {
		nfd, dupErr = syscall.Dup(int(fd))
		if dupErr == nil {
			syscall.CloseOnExec(nfd)
		}
	}); err != nil {
		return -1, err
	}
	return nfd, dupErr
}

// NewView returns a View that receives the socket's connections from now
// on; the previous View, if any, receives no more (its server drains).
func (s *Socket) NewView() *View {
	v := &View{sock: s, conns: make(chan Accepted), done: make(chan struct{})}
	s.current.Store(v)
	s.once.Do(func() { go s.acceptLoop() })
	return v
}

// Close closes the socket itself.
func (s *Socket) Close() error {
	s.closeOnce.Do(func() { close(s.closed) })
	err := s.ln.Close()
	if s.fds != nil {
		s.fds.wake()
	}
	return err
}

func (s *Socket) acceptLoop() {
	defer close(s.loopDone)
	for {
		// The form the current View asks for; a View installed while
		// the loop waits gets the other form converted (View.Accept) or
		// as it is (View.AcceptFD).
		var c Accepted
		var err error
		if v := s.current.Load(); v != nil && v.wantFD.Load() && s.fds != nil {
			c.FD, c.Remote, err = s.fds.accept()
		} else {
			c.FD = -1
			c.Conn, err = s.ln.Accept()
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if s.detached.Load() {
				return
			}
			// The socket is closed (or broken): tell every View.
			s.Close()
			return
		}
		s.deliver(c)
	}
}

// Accepted is one accepted connection: a net.Conn, or (Conn nil) a bare
// non-blocking descriptor FD and its peer's address.
type Accepted struct {
	Conn   net.Conn
	FD     int
	Remote netip.AddrPort
}

// Close closes the connection, whichever its form.
func (c Accepted) Close() {
	if c.Conn != nil {
		c.Conn.Close()
	} else {
		closeFD(c.FD)
	}
}

// netConn returns c as a net.Conn (see FDConn).
func (c Accepted) netConn() (net.Conn, error) {
	if c.Conn != nil {
		return c.Conn, nil
	}
	return FDConn(c.FD)
}

// FDConn turns a bare socket descriptor into a net.Conn: a duplicate of it
// in the runtime's poller. fd itself is closed, whatever the outcome.
func FDConn(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "tcp")
	nc, err := net.FileConn(f)
	f.Close()
	return nc, err
}

// deliver hands c to the current View, retrying if that View was closed in
// the meantime (a newer one has been installed, or none will come).
func (s *Socket) deliver(c Accepted) {
	for {
		v := s.current.Load()
		if v == nil {
			c.Close()
			return
		}
		select {
		case v.conns <- c:
			return
		case <-v.done:
			if s.current.Load() == v {
				// Closed and not replaced: nobody serves this socket.
				c.Close()
				return
			}
		case <-s.closed:
			c.Close()
			return
		}
	}
}

// View is one server's share of a Socket: a net.Listener whose Close stops
// accepting for that server only.
type View struct {
	sock  *Socket
	conns chan Accepted
	done  chan struct{}
	once  sync.Once
	// wantFD: the server asked for bare descriptors (AcceptFD).
	wantFD atomic.Bool
}

// Accept waits for the next connection for this View.
func (v *View) Accept() (net.Conn, error) {
	for {
		c, err := v.next()
		if err != nil {
			return nil, err
		}
		if nc, err := c.netConn(); err == nil {
			return nc, nil
		}
		// The descriptor could not become a net.Conn (out of
		// descriptors): that connection is lost, not the listener.
	}
}

// AcceptFD waits for the next connection for this View, as a bare
// descriptor where the socket allows (Linux, TCP) and otherwise as a
// net.Conn (c.Conn set). Calling it makes the socket accept descriptors
// for this View from then on.
func (v *View) AcceptFD() (Accepted, error) {
	v.wantFD.Store(true)
	return v.next()
}

func (v *View) next() (Accepted, error) {
	select {
	case c := <-v.conns:
		return c, nil
	case <-v.done:
		return Accepted{FD: -1}, net.ErrClosed
	case <-v.sock.closed:
		return Accepted{FD: -1}, net.ErrClosed
	}
}

// Close stops this View from accepting. The socket stays open.
func (v *View) Close() error {
	v.once.Do(func() { close(v.done) })
	return nil
}

// Addr is the socket's address.
func (v *View) Addr() net.Addr { return v.sock.Addr() }

// FDListener is a TCP listener whose AcceptFD returns bare descriptors, for
// a server used without a Socket.
type FDListener struct {
	*net.TCPListener
	fds *fdAcceptor
}

// FDs wraps tl; it fails where descriptors cannot be accepted bare (not
// Linux).
func FDs(tl *net.TCPListener) (*FDListener, error) {
	a, err := newFDAcceptor(tl)
	if err != nil {
		return nil, err
	}
	return &FDListener{TCPListener: tl, fds: a}, nil
}

// AcceptFD waits for the next connection, as a bare descriptor.
func (l *FDListener) AcceptFD() (Accepted, error) {
	fd, remote, err := l.fds.accept()
	if err != nil {
		return Accepted{FD: -1}, err
	}
	return Accepted{FD: fd, Remote: remote}, nil
}

// Close closes the listener and ends a wait in AcceptFD.
func (l *FDListener) Close() error {
	err := l.TCPListener.Close()
	l.fds.wake()
	return err
}
