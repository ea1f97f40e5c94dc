package probe

import (
	"net"
	"sync/atomic"
)

// pollConn is a probe's TCP connection. While nonblock is set (by the
// probe's state machine, between parks), a read that would block returns
// errWouldBlock at once instead of waiting: the probe then parks instead
// of holding a goroutine in the read. Otherwise (connecting, handshakes,
// a socket that cannot be polled) it reads as the net.Conn does, waiting
// up to the connection's deadline. Writes always go to the net.Conn.
type pollConn struct {
	net.Conn
	// fd is the socket's descriptor (-1: none, the reads block).
	fd       int
	nonblock bool
}

func newPollConn(c net.Conn) *pollConn { return &pollConn{Conn: c, fd: socketFD(c)} }

// errWouldBlock is what a non-blocking read that found nothing returns. It
// is a temporary net.Error, so that crypto/tls keeps a connection usable
// after it (a temporary error is not sticky, crypto/tls conn.go
// readRecordOrCCS) and a partial record stays buffered for the next read.
var errWouldBlock error = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "read would block" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

var _ net.Error = wouldBlock{}

// parker is where a probe waits without a goroutine: its state, and its
// socket's registration with the epoll layer (park_linux.go).
type parker struct {
	// state is parkActive while a goroutine runs the probe, parkParked
	// while it waits, and parkWoken when a wake-up came while it ran (the
	// goroutine then looks again instead of parking).
	state atomic.Uint32
	t     *tcpRun
	reg   registration
}

const (
	parkActive uint32 = iota
	parkParked
	parkWoken
)

// wake resumes a parked probe on a new goroutine, or tells a running one
// to look again before it parks. It is called by the epoll layer's
// goroutines (readable, hung up), and when the module's timeout passes or
// the probe's context ends.
func (w *parker) wake() {
	for {
		switch w.state.Load() {
		case parkParked:
			if w.state.CompareAndSwap(parkParked, parkActive) {
				go w.t.run()
				return
			}
		case parkActive:
			if w.state.CompareAndSwap(parkActive, parkWoken) {
				return
			}
		default:
			return
		}
	}
}

// settle is the last step of parking: it reports false when a wake-up came
// since the probe last looked (it must look again).
func (w *parker) settle() bool {
	if w.state.CompareAndSwap(parkActive, parkParked) {
		return true
	}
	w.state.Store(parkActive)
	return false
}
