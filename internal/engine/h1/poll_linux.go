package h1

import (
	"crypto/tls"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/penstock-dev/penstock/internal/epoll"
	"golang.org/x/sys/unix"
)

// The poller parks idle keep-alive connections.
//
// Go's runtime already polls every socket with epoll, but only on behalf of
// a goroutine blocked in Read, and a blocked Read needs a buffer: an idle
// connection would cost a goroutine stack (8 KiB at least) plus a read
// buffer. Instead each plain connection's descriptor is registered, once
// and edge-triggered, with one of a few epoll instances of penstock's own.
// While idle a connection is just its conn struct: no goroutine, no buffer.
// When its descriptor becomes readable the poller hands it to a worker
// goroutine, which takes a pooled buffer, reads, serves what arrived, returns
// the buffer and lets the connection go idle (goIdle: a state change, no
// system call). Events for an active connection are recorded (conn.ready)
// and wake its worker if it waits for the socket (waitFD).
//
// Workers are reused: an idle worker waits on its poller's hand-off
// channel, so dispatching a request allocates nothing once warm (a go
// statement would allocate its closure). Workers beyond the need of the
// moment exit after workerIdle.
type poller struct {
	ep   *epoll.Instance
	work chan *conn
	// hup is a second epoll instance where TLS connections (which have
	// their own goroutine and are not polled) stay registered,
	// edge-triggered, for EPOLLRDHUP only: the client closing its side
	// while a handler runs cancels the exchange's context (as net/http's
	// background read does) at no cost per request. Polled connections
	// get the same from their one registration (event).
	hup *epoll.Instance
}

// conns maps descriptors to the connections registered for them, for the
// pollers' events.
var conns epoll.Table[conn]

// lookup returns the connection an event is for, or nil: the generation
// (the event's data) tells a connection from an earlier one that had the
// same descriptor number.
func lookup(ev *unix.EpollEvent) *conn {
	if slot := conns.Slot(int(ev.Fd)); slot != nil {
		if c := slot.Load(); c != nil && c.gen == uint32(ev.Pad) {
			return c
		}
	}
	return nil
}

// onEvent handles an event of the poller's main instance.
func (p *poller) onEvent(ev *unix.EpollEvent) {
	if c := lookup(ev); c != nil {
		p.event(c, ev.Events)
	}
}

// onHangUp handles an event of the hang-up instance: the client closed its
// side of a TLS connection (EPOLLRDHUP), or the connection failed.
func onHangUp(ev *unix.EpollEvent) {
	if c := lookup(ev); c != nil {
		c.peerClosed(ev.Events&(unix.EPOLLHUP|unix.EPOLLERR) != 0)
	}
}

// workerIdle is how long a spare worker goroutine waits for work before it
// exits.
const workerIdle = 10 * time.Second

var (
	pollersOnce sync.Once
	pollers     []*poller
	pollersErr  error
	nextPoller  atomic.Uint32
)

func startPollers() {
	// One per P: connections are spread over them, so the hand-off
	// channel a poller shares with its workers is shared by a
	// GOMAXPROCS-th of the connections, never by all.
	n := max(1, runtime.GOMAXPROCS(0))
	for range n {
		e, err := epoll.New("h1-poller")
		if err != nil {
			pollersErr = err
			return
		}
		hup, err := epoll.New("h1-hangup")
		if err != nil {
			pollersErr = err
			return
		}
		p := &poller{ep: e, work: make(chan *conn), hup: hup}
		pollers = append(pollers, p)
		go e.Run(256, p.onEvent)
		go hup.Run(128, onHangUp)
	}
}

// startPolling registers a new plain connection as idle (waiting for its
// first request). It returns false when the connection must have its own
// goroutine instead.
func startPolling(c *conn) bool {
	if !pollersReady() {
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

// pollersReady starts the pollers on first use and reports whether there
// are any.
func pollersReady() bool {
	pollersOnce.Do(startPollers)
	return pollersErr == nil && len(pollers) > 0
}

// pollFD registers c, whose descriptor is fd, as idle.
func pollFD(c *conn, fd int) bool {
	slot := conns.Slot(fd)
	if slot == nil {
		return false
	}
	p := pollers[nextPoller.Add(1)%uint32(len(pollers))]
	c.fd, c.poll, c.gen = fd, p, nextGen.Add(1)
	if c.srv.o.IdleTimeout > 0 {
		c.srv.idle.start(c.srv)
	}
	// Published to the poller and the closers from here on: the
	// registration happens under mu so nobody closes the descriptor
	// meanwhile.
	c.mu.Lock()
	defer c.mu.Unlock()
	slot.Store(c)
	// Storing the state publishes the fields above to whoever takes
	// the connection through the poller (its CAS reads it).
	c.wentIdle()
	c.raw = true
	c.state.Store(connIdle)
	// Registered once for the connection's life, edge-triggered: no
	// epoll_ctl per request. The one registration also reports the
	// client hanging up (EPOLLRDHUP) and room to write (EPOLLOUT, for a
	// worker waiting in waitFD).
	if err := p.ep.Ctl(unix.EPOLL_CTL_ADD, fd, unix.EPOLLIN|unix.EPOLLOUT|unix.EPOLLRDHUP|unix.EPOLLET, c.gen); err != nil {
		// Served by its own goroutine instead.
		slot.CompareAndSwap(c, nil)
		c.poll, c.raw = nil, false
		c.idleTick.Store(0)
		c.state.Store(connActive)
		return false
	}
	return true
}

// watchHangups registers c's descriptor with p's hang-up instance, once
// for the connection's life; closing the descriptor removes it.
func (c *conn) watchHangups(p *poller) {
	if p.hup.Ctl(unix.EPOLL_CTL_ADD, c.fd, unix.EPOLLRDHUP|unix.EPOLLET, c.gen) == nil {
		c.hupPoll = p
	}
}

// nextGen tells registrations of a reused descriptor number apart, so an
// event for a closed connection is never taken for its successor's.
var nextGen atomic.Uint32

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
	if c.srv.drained.Load() || c.killed.Load() {
		return idleEnd
	}
	c.wentIdle()
	if !c.state.CompareAndSwap(connActive, connIdle) {
		return idleEnd
	}
	if c.ready.Swap(false) && c.state.CompareAndSwap(connIdle, connActive) {
		return idleAgain
	}
	// The end of a drain (Server.closeIdle) may have passed this
	// connection over while it was still active.
	if c.srv.drained.Load() && c.state.CompareAndSwap(connIdle, connActive) {
		return idleEnd
	}
	return idleParked
}

// event handles an event for one of p's connections: an idle connection
// with something to read goes to a worker; for an active one the event is
// recorded (ready) and its waiting worker, if any, woken.
func (p *poller) event(c *conn, ev uint32) {
	if ev&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		c.peerClosed(ev&(unix.EPOLLHUP|unix.EPOLLERR) != 0)
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
func (p *poller) dispatch(c *conn) {
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
func (p *poller) worker(c *conn) {
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
// never waits in a poller) for the hang-up watch.
func (c *conn) watchTLS(tc *tls.Conn) {
	if !pollersReady() {
		return
	}
	fd := connFD(tc.NetConn())
	slot := conns.Slot(fd)
	if slot == nil {
		return
	}
	c.fd, c.gen = fd, nextGen.Add(1)
	slot.Store(c)
	c.watchHangups(pollers[nextPoller.Add(1)%uint32(len(pollers))])
}

// unregister takes c out of its poller (hijack, HTTP/2, close). It must run
// before the descriptor is closed: afterwards its number may belong to
// another connection.
func (c *conn) unregister() {
	if c.hupPoll != nil {
		c.hupPoll.hup.Ctl(unix.EPOLL_CTL_DEL, c.fd, 0, 0)
		c.hupPoll = nil
		conns.Slot(c.fd).CompareAndSwap(c, nil)
	}
	if c.poll == nil {
		return
	}
	c.poll.ep.Ctl(unix.EPOLL_CTL_DEL, c.fd, 0, 0)
	if slot := conns.Slot(c.fd); slot != nil {
		slot.CompareAndSwap(c, nil)
	}
	c.poll, c.raw = nil, false
}
