package h1

import (
	"crypto/tls"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The poller parks idle keep-alive connections.
//
// Go's runtime already polls every socket with epoll, but only on behalf of
// a goroutine blocked in Read, and a blocked Read needs a buffer: an idle
// connection would cost a goroutine stack (8 KiB at least) plus a read
// buffer. Instead each plain connection's descriptor is registered, once
// and edge-triggered, with one of the polling instances of the server's
// epoll.IO (IO.Poll). While idle a connection is just its conn struct: no
// goroutine, no buffer. When its descriptor becomes readable the IO tells
// the connection (Event), which goes to a worker goroutine through the
// instance's hand-off; the worker takes a pooled buffer, reads, serves what
// arrived, returns the buffer and lets the connection go idle (goIdle: a
// state change, no system call). Events for an active connection are
// recorded (conn.ready) and wake its worker if it waits for the socket
// (waitFD). The one registration also reports the client hanging up
// (EPOLLRDHUP); TLS connections, which have their own goroutine and are not
// polled, are watched for that by the IO's hang-up watcher (IO.Watch) and
// told the same way.
//
// Workers are reused: an idle worker waits on its hand-off channel, so
// dispatching a request allocates nothing once warm (a go statement would
// allocate its closure). Workers beyond the need of the moment exit after
// workerIdle.

// handoff passes the connections of one polling instance to worker
// goroutines: a server has one per instance of its IO, so the channel is
// shared by a GOMAXPROCS-th of the connections, never by all.
type handoff struct {
	work chan *conn
}

func newHandoffs(n int) []handoff {
	h := make([]handoff, n)
	for i := range h {
		h[i].work = make(chan *conn)
	}
	return h
}

// Event is how the server's IO tells c of events for its descriptor: from
// the polling instance inst, or (inst -1) from the hang-up watcher for a
// TLS connection, whose client closed its side or whose connection failed.
// It runs on the IO's goroutine.
func (c *conn) Event(inst int, ev uint32) {
	if inst < 0 {
		c.peerClosed()
		return
	}
	c.srv.handoffs[inst].event(c, ev)
}

// workerIdle is how long a spare worker goroutine waits for work before it
// exits.
const workerIdle = 10 * time.Second

// polling reports whether the server's plain connections wait in its IO.
func (s *Server) polling() bool { return s.io != nil && !s.noPoller }

// startPolling registers a new plain connection as idle (waiting for its
// first request). It returns false when the connection must have its own
// goroutine instead.
func startPolling(c *conn) bool {
	if !c.srv.polling() {
		return false
	}
	return pollFD(c, connFD(c.nc))
}

// connFD returns the descriptor of nc's socket, or -1.
func connFD(nc net.Conn) int {
	fd := -1
	if sc, ok := nc.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			rc.Control(func(f uintptr) { fd = int(f) })
		}
	}
	return fd
}

// pollFD registers c, whose descriptor is fd, as idle.
func pollFD(c *conn, fd int) bool {
	if fd < 0 {
		return false
	}
	c.fd = fd
	if c.srv.o.IdleTimeout > 0 {
		c.srv.idle.start(c.srv)
	}
	// Published to the IO and the closers from here on: the registration
	// happens under mu so nobody closes the descriptor meanwhile.
	c.mu.Lock()
	defer c.mu.Unlock()
	// The registration publishes these to whoever takes the connection
	// through the IO (the state's CAS).
	c.wentIdle()
	c.raw = true
	c.state.Store(connIdle)
	// Registered once for the connection's life, edge-triggered: no
	// epoll_ctl per request.
	if !c.srv.io.Poll(&c.reg, fd, c) {
		// Served by its own goroutine instead.
		c.raw = false
		c.idleTick.Store(0)
		c.state.Store(connActive)
		return false
	}
	return true
}

// idleResult is what goIdle did.
type idleResult uint8

const (
	idleParked idleResult = iota // waiting in the poller
	idleAgain                    // an event came meanwhile: serve again
	idleEnd                      // shutting down or killed: close
)

// goIdle parks c in the poller until its next request. Its registration is
// edge-triggered and stays armed, so this costs no system call; but an edge
// that came while the connection was active (a next request arriving before
// the worker let go) was only recorded in ready, so goIdle takes the
// connection back if ready was set. The poller does the mirror image (sets
// ready, then tries the state), so one of the two always sees the other.
func (c *conn) goIdle() idleResult {
	if c.srv.shuttingDown.Load() || c.killed.Load() {
		return idleEnd
	}
	c.wentIdle()
	if !c.state.CompareAndSwap(connActive, connIdle) {
		return idleEnd
	}
	if c.ready.Swap(false) && c.state.CompareAndSwap(connIdle, connActive) {
		return idleAgain
	}
	return idleParked
}

// event handles an event for a connection of p's instance: an idle
// connection with something to read goes to a worker; for an active one the
// event is recorded (ready) and its waiting worker, if any, woken.
func (p *handoff) event(c *conn, ev uint32) {
	if ev&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		c.peerClosed()
	}
	in := ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0
	if in && c.state.CompareAndSwap(connIdle, connActive) {
		p.dispatch(c)
		return
	}
	if !in && c.state.Load() == connIdle {
		// Room to write (the registration's first event, say): only a
		// worker waiting to write cares, and an idle connection has none.
		return
	}
	c.ready.Store(true)
	if w := c.waiter.Load(); w != nil {
		w.wake()
	}
	// The worker may have gone idle after the first try and before it
	// could see ready.
	if in && c.state.CompareAndSwap(connIdle, connActive) {
		p.dispatch(c)
	}
	// Otherwise the connection is active, or closing (idle timeout,
	// shutdown) won the race.
}

// dispatch hands c to an idle worker, or starts one.
func (p *handoff) dispatch(c *conn) {
	select {
	case p.work <- c:
	default:
		go p.worker(c)
	}
}

// worker serves connections handed over by p until it has had nothing to
// do for a whole workerIdle period (it exits after one to two periods
// without work). The timer runs on its own rather than being reset after
// every request: a Reset per request was about 1 % of a proxied request's
// CPU time.
func (p *handoff) worker(c *conn) {
	t := time.NewTimer(workerIdle)
	defer t.Stop()
	for {
		if c != nil {
			c.servePolled()
		}
		select {
		case c = <-p.work:
		case <-t.C:
			if c == nil {
				return
			}
			c = nil
			t.Reset(workerIdle)
		}
	}
}

// servePolled serves a connection the poller found readable.
func (c *conn) servePolled() {
	for {
		switch c.serveReady() {
		case outIdle:
			switch c.goIdle() {
			case idleParked:
				return
			case idleAgain:
				continue
			}
			c.close()
		case outH2:
			c.unregister()
			c.serveH2()
		case outHijacked:
			// detach took it out of the poller before the handler got it.
		default:
			c.close()
		}
		return
	}
}

// watchTLS registers a TLS connection (which has its own goroutine and
// never waits in a polling instance) with the IO's hang-up watcher, once for
// its life.
func (c *conn) watchTLS(tc *tls.Conn) {
	c.srv.io.Watch(&c.reg, connFD(tc.NetConn()), c)
}

// unregister takes c out of the IO (hijack, HTTP/2, close). It must run
// before the descriptor is closed: afterwards its number may belong to
// another connection.
func (c *conn) unregister() {
	c.srv.io.Remove(&c.reg)
	c.raw = false
}
