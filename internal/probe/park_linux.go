package probe

import (
	"io"
	"net"
	"os"
	"syscall"

	"github.com/penstock-dev/penstock/internal/epoll"
	"golang.org/x/sys/unix"
)

// registration is the socket's membership in the epoll layer.
type registration struct {
	io  *epoll.IO
	reg epoll.Registration
	// noPoll is set when the socket could not be registered: the probe
	// then reads blocking.
	noPoll bool
}

// Read reads without blocking while nonblock is set: one recvfrom on the
// socket (internal/epoll's Recv), which fails with EAGAIN when nothing is
// there. Its errors read as net.Conn's would.
func (c *pollConn) Read(p []byte) (int, error) {
	if !c.nonblock || c.fd < 0 || len(p) == 0 {
		return c.Conn.Read(p)
	}
	n, errno := epoll.Recv(c.fd, p)
	switch {
	case errno == syscall.EAGAIN:
		return 0, errWouldBlock
	case errno != 0:
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError("read", errno)}
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// pollable reports whether the probe's socket can be read without
// blocking: it has a descriptor and is registered, or can be.
func (w *parker) pollable(t *tcpRun) bool { return !w.reg.noPoll && t.src.fd >= 0 }

// park registers the probe's socket at its first park (once for its life,
// edge-triggered: epoll_ctl reports at once what is already readable) and
// parks the probe. It reports false when the probe must look again (a
// wake-up came since it last did) or cannot park (no epoll layer, no
// descriptor): it then reads blocking.
func (w *parker) park(t *tcpRun) bool {
	if !w.reg.reg.Registered() {
		w.t = t
		pio := t.p.Poller
		if pio == nil {
			pio = epoll.Shared()
		}
		if t.src.fd < 0 || !pio.Poll(&w.reg.reg, t.src.fd, t) {
			w.reg.noPoll = true
			return false
		}
		w.reg.io = pio
	}
	return w.settle()
}

// release ends the registration; call it before the socket is closed.
func (w *parker) release() {
	w.reg.io.Release(&w.reg.reg)
}

// Event is the epoll layer telling the probe about its socket: anything
// readable, or a hang-up, wakes it; the write edges do not.
func (t *tcpRun) Event(_ int, events uint32) {
	if events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		t.wait.wake()
	}
}

// socketFD is the descriptor of a TCP connection, or -1.
func socketFD(c net.Conn) int {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return -1
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1
	}
	fd := -1
	rc.Control(func(f uintptr) { fd = int(f) })
	return fd
}
