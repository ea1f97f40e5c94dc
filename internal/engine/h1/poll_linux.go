package h1

import (
	"crypto/tls"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

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
	epfd int
	work chan *conn
	file *os.File // keeps epfd open and registered with the runtime
	rc   syscall.RawConn
	// hup is a second epoll instance where TLS connections (which have
	// their own goroutine and are not polled) stay registered,
	// edge-triggered, for EPOLLRDHUP only: the client closing its side
	// while a handler runs cancels the exchange's context (as net/http's
	// background read does) at no cost per request. Polled connections
	// get the same from their one registration (event).
	hup *epoll
}

// epoll is an epoll instance whose descriptor waits in the runtime's poller.
type epoll struct {
	fd   int
	file *os.File
	rc   syscall.RawConn
}

// newEpoll creates an epoll instance. Its descriptor is itself pollable:
// wrapped in an os.File it joins the runtime's poller, so a goroutine
// waiting for events is parked like one blocked on a socket instead of
// holding a thread in epoll_wait.
func newEpoll() (*epoll, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &epoll{fd: fd, file: f, rc: rc}, nil
}

// run waits for events and calls fn for each connection they name, forever.
//
// It is one RawConn.Read that never returns: the callback drains the
// instance (a zero-timeout epoll_pwait until fewer events than the buffer
// holds) and handles the events, then returns false, which parks the
// goroutine until the epoll descriptor signals again. The runtime resets a
// descriptor's readiness only when a Read starts, so an event that arrives
// while the callback runs is not lost: its edge makes the wait return at
// once. Returning after each batch instead would cost an epoll_pwait that
// finds nothing, to re-check after that reset, every time the poller goes
// back to sleep (about one per request at moderate rates).
func (e *epoll) run(fn func(c *conn, events uint32)) {
	events := make([]unix.EpollEvent, 256)
	drain := func(fd uintptr) bool {
		for {
			n, err := epollWaitNow(int(fd), events)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return true
			}
			for i := range n {
				ev := &events[i]
				slot := fdSlot(int(ev.Fd))
				if slot == nil {
					continue
				}
				// The generation tells this connection from an
				// earlier one that had the same descriptor number.
				if c := slot.Load(); c != nil && c.gen == uint32(ev.Pad) {
					fn(c, ev.Events)
				}
			}
			if n < len(events) {
				return false
			}
		}
	}
	// An epoll instance does not fail once created; if it somehow does,
	// or its descriptor is closed, stop rather than spin.
	e.rc.Read(drain)
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
		e, err := newEpoll()
		if err != nil {
			pollersErr = err
			return
		}
		hup, err := newEpoll()
		if err != nil {
			pollersErr = err
			return
		}
		p := &poller{epfd: e.fd, work: make(chan *conn), file: e.file, rc: e.rc, hup: hup}
		pollers = append(pollers, p)
		go e.run(p.event)
		go hup.run(hungUp)
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
	if !pollersReady() {
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
	return pollFD(c, fd)
}

// pollersReady starts the pollers on first use and reports whether there
// are any.
func pollersReady() bool {
	pollersOnce.Do(startPollers)
	return pollersErr == nil && len(pollers) > 0
}

// pollFD registers c, whose descriptor is fd, as idle.
func pollFD(c *conn, fd int) bool {
	slot := fdSlot(fd)
	if fd < 0 || slot == nil {
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
	// Registered once for the connection's life, edge-triggered: no
	// epoll_ctl per request. The one registration also reports the
	// client hanging up (EPOLLRDHUP) and room to write (EPOLLOUT, for a
	// worker waiting in waitFD).
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(fd), Pad: int32(c.gen)}
	// Storing the state publishes the fields above to whoever takes
	// the connection through the poller (its CAS reads it).
	c.wentIdle()
	c.raw = true
	c.state.Store(connIdle)
	if err := epollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
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
	ev := unix.EpollEvent{Events: unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(c.fd), Pad: int32(c.gen)}
	if unix.EpollCtl(p.hup.fd, unix.EPOLL_CTL_ADD, c.fd, &ev) == nil {
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

// event handles an event for one of p's connections: an idle connection
// with something to read goes to a worker; for an active one the event is
// recorded (ready) and its waiting worker, if any, woken.
func (p *poller) event(c *conn, ev uint32) {
	if ev&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		c.peerClosed()
	}
	in := ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0
	if in && c.state.CompareAndSwap(connIdle, connActive) {
		p.dispatch(c)
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

// hungUp reports the client closing its side of c (EPOLLRDHUP, or the
// connection failing), for connections in the hang-up instance (TLS).
func hungUp(c *conn, _ uint32) { c.peerClosed() }

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
	fdSlot(fd).Store(c)
	c.watchHangups(pollers[nextPoller.Add(1)%uint32(len(pollers))])
}

// unregister takes c out of its poller (hijack, HTTP/2, close). It must run
// before the descriptor is closed: afterwards its number may belong to
// another connection.
func (c *conn) unregister() {
	if c.hupPoll != nil {
		unix.EpollCtl(c.hupPoll.hup.fd, unix.EPOLL_CTL_DEL, c.fd, nil)
		c.hupPoll = nil
		fdSlot(c.fd).CompareAndSwap(c, nil)
	}
	if c.poll == nil {
		return
	}
	unix.EpollCtl(c.poll.epfd, unix.EPOLL_CTL_DEL, c.fd, nil)
	if slot := fdSlot(c.fd); slot != nil {
		slot.CompareAndSwap(c, nil)
	}
	c.poll, c.raw = nil, false
}

// epollCtl and epollWaitNow are epoll_ctl and a zero-timeout epoll_pwait
// through syscall.RawSyscall: neither blocks, so neither needs the
// scheduler's system-call bookkeeping (see rawio_linux.go for why that
// matters).
func epollCtl(epfd, op, fd int, ev *unix.EpollEvent) error {
	_, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(ev)), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

func epollWaitNow(epfd int, events []unix.EpollEvent) (int, error) {
	r, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}
