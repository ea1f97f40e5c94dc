package listener

import (
	"errors"
	"net"
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
	ln        net.Listener
	current   atomic.Pointer[View]
	once      sync.Once
	closed    chan struct{}
	detached  atomic.Bool
	loopDone  chan struct{}
	closeOnce sync.Once
}

// NewSocket takes ownership of ln.
func NewSocket(ln net.Listener) *Socket {
	return &Socket{ln: ln, closed: make(chan struct{}), loopDone: make(chan struct{})}
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
	v := &View{sock: s, conns: make(chan net.Conn), done: make(chan struct{})}
	s.current.Store(v)
	s.once.Do(func() { go s.acceptLoop() })
	return v
}

// Close closes the socket itself.
func (s *Socket) Close() error {
	s.closeOnce.Do(func() { close(s.closed) })
	return s.ln.Close()
}

func (s *Socket) acceptLoop() {
	defer close(s.loopDone)
	for {
		c, err := s.ln.Accept()
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

// deliver hands c to the current View, retrying if that View was closed in
// the meantime (a newer one has been installed, or none will come).
func (s *Socket) deliver(c net.Conn) {
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
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

// Accept waits for the next connection for this View.
func (v *View) Accept() (net.Conn, error) {
	select {
	case c := <-v.conns:
		return c, nil
	case <-v.done:
		return nil, net.ErrClosed
	case <-v.sock.closed:
		return nil, net.ErrClosed
	}
}

// Close stops this View from accepting. The socket stays open.
func (v *View) Close() error {
	v.once.Do(func() { close(v.done) })
	return nil
}

// Addr is the socket's address.
func (v *View) Addr() net.Addr { return v.sock.Addr() }
