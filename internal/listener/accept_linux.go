package listener

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"github.com/penstock-dev/penstock/internal/epoll"
	"golang.org/x/sys/unix"
)

// fdAcceptor accepts connections on a TCP listener as bare descriptors
// (accept4, non-blocking, close-on-exec), for the engine that serves plain
// connections without a net.Conn (internal/engine/h1, fdconn_linux.go).
//
// The listener's own poll descriptor gives no readiness to raw callers
// (net's RawConn refuses Read on a listener), so the descriptor is also
// registered, level-triggered, with an epoll instance of the acceptor's own,
// whose descriptor waits in the runtime's poller like a socket. accept4
// runs under RawConn.Control, which holds the listener's descriptor open
// for the call: a listener closed meanwhile fails the call instead of
// leaving its number to another socket. A closed listener leaves the epoll
// instance silent, so a wait lasts at most a second before the listener is
// asked again; wake ends a wait at once.
type fdAcceptor struct {
	rc    syscall.RawConn
	ep    *epoll.Instance
	delay time.Duration

	// Results of acceptFn, which is bound once.
	nfd      int
	sa       unix.Sockaddr
	aerr     error
	acceptFn func(uintptr)
}

func newFDAcceptor(tl *net.TCPListener) (*fdAcceptor, error) {
	rc, err := tl.SyscallConn()
	if err != nil {
		return nil, err
	}
	ep, err := epoll.New("accept-epoll")
	if err != nil {
		return nil, err
	}
	var regErr error
	if err := rc.Control(func(fd uintptr) {
		regErr = ep.Ctl(unix.EPOLL_CTL_ADD, int(fd), unix.EPOLLIN, 0)
	}); err != nil || regErr != nil {
		ep.Close()
		return nil, errors.Join(err, regErr)
	}
	a := &fdAcceptor{rc: rc, ep: ep}
	a.acceptFn = a.acceptOnce
	return a, nil
}

func (a *fdAcceptor) acceptOnce(fd uintptr) {
	for {
		a.nfd, a.sa, a.aerr = unix.Accept4(int(fd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if a.aerr != unix.EINTR && a.aerr != unix.ECONNABORTED {
			return
		}
	}
}

// accept returns the next connection's descriptor and peer address, or
// net.ErrClosed once the listener is closed or wake was called.
func (a *fdAcceptor) accept() (int, netip.AddrPort, error) {
	for {
		if err := a.rc.Control(a.acceptFn); err != nil {
			return -1, netip.AddrPort{}, net.ErrClosed
		}
		switch a.aerr {
		case nil:
			a.delay = 0
			setConnOptions(a.nfd)
			return a.nfd, sockaddrAddrPort(a.sa), nil
		case unix.EAGAIN:
		case unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM:
			// Out of descriptors or memory: back off as net/http does
			// rather than spin.
			a.delay = min(max(2*a.delay, 5*time.Millisecond), time.Second)
			time.Sleep(a.delay)
			continue
		default:
			return -1, netip.AddrPort{}, os.NewSyscallError("accept4", a.aerr)
		}
		if err := a.ep.WaitReady(time.Now().Add(time.Second)); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			return -1, netip.AddrPort{}, net.ErrClosed
		}
	}
}

// wake ends a wait in accept for good.
func (a *fdAcceptor) wake() { a.ep.Close() }

// setConnOptions gives an accepted socket what net.TCPListener.Accept
// gives one: no Nagle delay, and TCP keep-alive probes after 15 s idle,
// every 15 s, 9 of them (Go's defaults for accepted connections).
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

// closeFD closes a descriptor nobody will serve.
func closeFD(fd int) { unix.Close(fd) }
