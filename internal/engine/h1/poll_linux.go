package h1

import (
	"crypto/tls"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The poller parks idle keep-alive connections.
//
// Go's runtime already polls every socket with epoll, but only on behalf of
// a goroutine blocked in Read, and a blocked Read needs a buffer: an idle
// connection would cost a goroutine stack (8 KiB at least) plus a read
// buffer. Instead each plain connection's descriptor is also registered,
// EPOLLONESHOT, with one of a few epoll instances of penstock's own. While
// idle a connection is just its conn struct: no goroutine, no buffer. When
// its descriptor becomes readable the poller hands it to a worker goroutine,
// which takes a pooled buffer, reads through the net.Conn as usual (so
// writes that hit EAGAIN wait in the runtime's poller, and deadlines work),
// serves what arrived, returns the buffer and re-arms the descriptor.
//
// Workers are reused: an idle worker waits on its poller's hand-off
// channel, so dispatching a request allocates nothing once warm (a go
// statement would allocate its closure). Workers beyond the need of the
// moment exit after workerIdle.
type poller struct {
	epfd int
	work chan *conn
	file *os.File // keeps epfd open and registered with the runtime
	rc   syscall.RawConn
}

// workerIdle is how long a spare worker goroutine waits for work before it
// exits.
const workerIdle = 10 * time.Second

var (
	pollersOnce sync.Once
	pollers     []*poller
	pollersErr  error
	nextPoller  atomic.Uint32

	// conns maps descriptors to connections for the pollers, in pages
	// allocated on demand: a registration touches the page's slot only.
	fdPages   [1 << 10]atomic.Pointer[fdPage]
	fdPagesMu sync.Mutex
)

const fdPageSize = 1 << 10

type fdPage [fdPageSize]atomic.Pointer[conn]

func startPollers() {
	// One per P: connections are spread over them, so the hand-off
	// channel a poller shares with its workers is shared by a
	// GOMAXPROCS-th of the connections, never by all.
	n := max(1, runtime.GOMAXPROCS(0))
	for range n {
		fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			pollersErr = err
			return
		}
		// The epoll descriptor is itself pollable: wrapped in an
		// os.File it joins the runtime's poller, so a poller goroutine
		// waits parked like any goroutine blocked on a socket instead
		// of holding a thread in epoll_wait.
		if err := unix.SetNonblock(fd, true); err != nil {
			unix.Close(fd)
			pollersErr = err
			return
		}
		f := os.NewFile(uintptr(fd), "epoll")
		rc, err := f.SyscallConn()
		if err != nil {
			f.Close()
			pollersErr = err
			return
		}
		p := &poller{epfd: fd, work: make(chan *conn), file: f, rc: rc}
		pollers = append(pollers, p)
		go p.loop()
	}
}

func fdSlot(fd int) *atomic.Pointer[conn] {
	pi := fd / fdPageSize
	if pi >= len(fdPages) {
		return nil
	}
	pg := fdPages[pi].Load()
	if pg == nil {
		fdPagesMu.Lock()
		if pg = fdPages[pi].Load(); pg == nil {
			pg = new(fdPage)
			fdPages[pi].Store(pg)
		}
		fdPagesMu.Unlock()
	}
	return &pg[fd%fdPageSize]
}

// startPolling registers a new plain connection as idle (waiting for its
// first request). It returns false when the connection must have its own
// goroutine instead.
func startPolling(c *conn) bool {
	pollersOnce.Do(startPollers)
	if pollersErr != nil || len(pollers) == 0 {
		return false
	}
	sc, ok := c.nc.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	fd := -1
	rc.Control(func(f uintptr) { fd = int(f) })
	slot := fdSlot(fd)
	if fd < 0 || slot == nil {
		return false
	}
	p := pollers[nextPoller.Add(1)%uint32(len(pollers))]
	c.fd, c.poll, c.gen = fd, p, nextGen.Add(1)
	if d := c.srv.o.IdleTimeout; d > 0 {
		c.idleT = time.AfterFunc(d, c.idleExpired)
	}
	// Published to the poller and the closers from here on: the
	// registration happens under mu so nobody closes the descriptor
	// meanwhile.
	c.mu.Lock()
	defer c.mu.Unlock()
	slot.Store(c)
	c.state.Store(connIdle)
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(fd), Pad: int32(c.gen)}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		slot.CompareAndSwap(c, nil)
		c.poll = nil
		c.cancelIdleTimer()
		c.state.Store(connActive)
		return false
	}
	return true
}

// nextGen tells registrations of a reused descriptor number apart, so an
// event for a closed connection is never taken for its successor's.
var nextGen atomic.Uint32

// rearm parks c in the poller until its next request. It holds mu so that
// a closer (idle timer, Shutdown), which may act as soon as the state says
// idle, cannot close the descriptor while it is being re-armed: the number
// could already name another connection.
func (c *conn) rearm() bool {
	if c.srv.shuttingDown.Load() || c.killed.Load() {
		return false
	}
	if d := c.srv.o.IdleTimeout; d > 0 && c.idleT != nil {
		c.idleT.Reset(d)
	}
	p, fd := c.poll, c.fd
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(fd), Pad: int32(c.gen)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.state.CompareAndSwap(connActive, connIdle) {
		return false
	}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, fd, &ev); err != nil {
		// No event can come: the connection is still ours.
		c.state.Store(connActive)
		return false
	}
	return true
}

func (p *poller) loop() {
	events := make([]unix.EpollEvent, 256)
	var n int
	var werr error
	wait := func(fd uintptr) bool {
		n, werr = unix.EpollWait(int(fd), events, 0)
		// Nothing ready: let the runtime park us until the epoll
		// descriptor is readable.
		return n != 0 || werr != nil && werr != unix.EINTR
	}
	for {
		if err := p.rc.Read(wait); err != nil || werr != nil {
			// An epoll instance does not fail once created; stop
			// rather than spin if it somehow does.
			return
		}
		for i := range n {
			ev := &events[i]
			slot := fdSlot(int(ev.Fd))
			if slot == nil {
				continue
			}
			c := slot.Load()
			if c == nil || c.gen != uint32(ev.Pad) {
				continue
			}
			if c.ownGoroutine {
				// Only ever registered for the hang-up watch.
				if c.state.Load() == connActive {
					c.killed.Store(true)
					c.cancel()
				}
				continue
			}
			if !c.state.CompareAndSwap(connIdle, connActive) {
				// Closing (idle timeout, shutdown) won the race, or
				// this is the hang-up watch of a running exchange.
				if ev.Events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 && c.state.Load() == connActive {
					c.killed.Store(true)
					c.cancel()
				}
				continue
			}
			p.dispatch(c)
		}
	}
}

// dispatch hands c to an idle worker, or starts one.
func (p *poller) dispatch(c *conn) {
	select {
	case p.work <- c:
	default:
		go p.worker(c)
	}
}

func (p *poller) worker(c *conn) {
	t := time.NewTimer(workerIdle)
	defer t.Stop()
	for {
		c.servePolled()
		t.Reset(workerIdle)
		select {
		case c = <-p.work:
		case <-t.C:
			return
		}
	}
}

// servePolled serves a connection the poller found readable.
func (c *conn) servePolled() {
	switch c.serveReady() {
	case outIdle:
		if c.rearm() {
			return
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
}

// watchHangup asks the poller to report the client closing its side while
// the handler runs, so the exchange's context is cancelled as net/http does
// (an upstream request for a client that left is abandoned). It is armed
// only once the request has been read in full: from then on the connection
// has nothing to say but a next request (which does not trigger it) or a
// hang-up.
//
// A connection with its own goroutine (TLS) is registered for the
// duration of the handler only (watchTLS, unwatch).
func (c *conn) watchHangup() {
	if c.poll != nil {
		ev := unix.EpollEvent{Events: unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(c.fd), Pad: int32(c.gen)}
		unix.EpollCtl(c.poll.epfd, unix.EPOLL_CTL_MOD, c.fd, &ev)
		return
	}
	if c.watchPoll == nil {
		return
	}
	slot := fdSlot(c.fd)
	slot.Store(c)
	ev := unix.EpollEvent{Events: unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(c.fd), Pad: int32(c.gen)}
	if unix.EpollCtl(c.watchPoll.epfd, unix.EPOLL_CTL_ADD, c.fd, &ev) == nil {
		c.watching = true
	} else {
		slot.CompareAndSwap(c, nil)
	}
}

// unwatch ends watchHangup on a connection with its own goroutine.
func (c *conn) unwatch() {
	if !c.watching {
		return
	}
	c.watching = false
	unix.EpollCtl(c.watchPoll.epfd, unix.EPOLL_CTL_DEL, c.fd, nil)
	fdSlot(c.fd).CompareAndSwap(c, nil)
}

// watchTLS prepares the hang-up watch for a TLS connection: its TCP
// descriptor and a poller.
func (c *conn) watchTLS(tc *tls.Conn) {
	pollersOnce.Do(startPollers)
	if pollersErr != nil || len(pollers) == 0 {
		return
	}
	sc, ok := tc.NetConn().(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	fd := -1
	rc.Control(func(f uintptr) { fd = int(f) })
	if fd < 0 || fdSlot(fd) == nil {
		return
	}
	c.fd, c.gen = fd, nextGen.Add(1)
	c.watchPoll = pollers[nextPoller.Add(1)%uint32(len(pollers))]
}

// unregister takes c out of its poller (hijack, HTTP/2, close). It must run
// before the descriptor is closed: afterwards its number may belong to
// another connection.
func (c *conn) unregister() {
	if c.poll == nil {
		return
	}
	unix.EpollCtl(c.poll.epfd, unix.EPOLL_CTL_DEL, c.fd, nil)
	if slot := fdSlot(c.fd); slot != nil {
		slot.CompareAndSwap(c, nil)
	}
	c.poll = nil
}

// idleExpired runs on the idle timer: a connection still idle is closed.
func (c *conn) idleExpired() { c.closeIfIdle() }
