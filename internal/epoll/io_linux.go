package epoll

import (
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// IO owns the epoll instances of a server's sockets and the goroutines that
// drain them:
//
//   - polling instances (IO.Poll), where a socket is registered once for
//     its life, edge-triggered, for reading, writing and hang-ups: the
//     engine's plain client connections, which wait there with no
//     goroutine and no buffer while idle (internal/engine/h1);
//   - the same instances also hold one-shot registrations (IO.Arm): a
//     socket that is read by a goroutine while active and waits for its
//     next bytes with none while idle (the HTTP/2 engine's connections,
//     internal/engine/h2);
//   - one hang-up watcher (IO.Watch), where a socket is registered once,
//     edge-triggered, for EPOLLRDHUP only: data arriving does not wake it,
//     the peer's FIN or RST does. The engine's TLS connections (whose
//     client hanging up cancels the exchange) and the upstream client's
//     plain connections (whose reuse reads a flag instead of asking the
//     socket) are watched there.
//
// Both map events to Registrations through one descriptor table, without a
// lock per event. The zero IO is not usable: make one with NewIO, or use
// Shared. A nil *IO registers nothing (Poll and Watch report false).
type IO struct {
	polls []*Instance
	hup   *Instance
	regs  table[Registration]

	// gen tells registrations of a reused descriptor number apart: it
	// travels with each event (EpollEvent.Pad).
	gen  atomic.Uint32
	next atomic.Uint32

	// mu orders epoll_ctl against Close: a closed instance's descriptor
	// number may name another file. Taken per registration, never per
	// request.
	mu     sync.RWMutex
	closed bool
	wg     sync.WaitGroup
}

// Registration is one descriptor's membership in an IO, kept by its owner
// (embedded in the connection). The zero value is not registered. Its
// methods other than HungUp and Reset are for the goroutine that owns the
// connection.
type Registration struct {
	h     Handler
	fd    int32
	gen   uint32
	flags atomic.Uint32
	// inst is the polling instance, or -1 for the hang-up watcher.
	inst int16
	on   bool
}

// Registration flags, set by the IO's goroutines.
const (
	flagHungUp = 1 << iota
	flagReset
)

// Batch sizes of one epoll_pwait: polling instances see every request, the
// hang-up watcher only closes.
const (
	pollBatch = 256
	hupBatch  = 128
)

// NewIO creates an IO with pollers polling instances (0 means one per P:
// GOMAXPROCS, so that no hand-off behind an instance is shared by all
// connections) and starts their goroutines. Close ends them.
func NewIO(pollers int) (*IO, error) {
	if pollers <= 0 {
		pollers = max(1, runtime.GOMAXPROCS(0))
	}
	io := &IO{}
	fail := func(err error) (*IO, error) {
		for _, e := range io.polls {
			e.Close()
		}
		if io.hup != nil {
			io.hup.Close()
		}
		return nil, err
	}
	for range pollers {
		e, err := New("epoll-poll")
		if err != nil {
			return fail(err)
		}
		io.polls = append(io.polls, e)
	}
	hup, err := New("epoll-hangup")
	if err != nil {
		return fail(err)
	}
	io.hup = hup
	for i, e := range io.polls {
		io.wg.Add(1)
		go func() {
			defer io.wg.Done()
			e.Run(pollBatch, func(ev *unix.EpollEvent) { io.deliver(i, ev) })
		}()
	}
	io.wg.Add(1)
	go func() {
		defer io.wg.Done()
		hup.Run(hupBatch, func(ev *unix.EpollEvent) { io.deliver(-1, ev) })
	}()
	return io, nil
}

var (
	sharedOnce sync.Once
	shared     *IO
)

// Shared returns the process's IO for users that were given none, creating
// it on first use (one polling instance per P); it is never closed. It
// returns nil when epoll is unavailable.
func Shared() *IO {
	sharedOnce.Do(func() { shared, _ = NewIO(0) })
	return shared
}

// Pollers reports the number of polling instances (0 for a nil IO).
func (io *IO) Pollers() int {
	if io == nil {
		return 0
	}
	return len(io.polls)
}

// Close closes the instances and waits for their goroutines to end. Events
// are no longer delivered, and later registrations fail. A server closes
// its IO once the connections registered with it are closed.
func (io *IO) Close() error {
	if io == nil {
		return nil
	}
	io.mu.Lock()
	if io.closed {
		io.mu.Unlock()
		return nil
	}
	io.closed = true
	for _, e := range io.polls {
		e.Close()
	}
	io.hup.Close()
	io.mu.Unlock()
	io.wg.Wait()
	return nil
}

// deliver handles one event of instance inst (-1: the hang-up watcher).
func (io *IO) deliver(inst int, ev *unix.EpollEvent) {
	slot := io.regs.slot(int(ev.Fd))
	if slot == nil {
		return
	}
	r := slot.Load()
	if r == nil || r.gen != uint32(ev.Pad) {
		// A registration released since, or an earlier socket that had
		// the same number.
		return
	}
	if ev.Events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		f := uint32(flagHungUp)
		if ev.Events&(unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			f |= flagReset
		}
		r.flags.Or(f)
	}
	if r.h != nil {
		r.h.Event(inst, ev.Events)
	}
}

// Poll registers the socket fd with one of the polling instances, once
// for its life, edge-triggered, for reading, writing and hang-ups
// (EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET): h is told every event. The
// instance is chosen round-robin; h is told its number with each event. It reports false when the registration failed (fd out of
// range, IO closed or nil); r is then not registered.
func (io *IO) Poll(r *Registration, fd int, h Handler) bool {
	if io == nil {
		return false
	}
	inst := int(io.next.Add(1) % uint32(len(io.polls)))
	return io.register(r, fd, h, inst, unix.EPOLLIN|unix.EPOLLOUT|unix.EPOLLRDHUP|unix.EPOLLET)
}

// Watch registers the socket fd with the hang-up watcher, once for its
// life: r reports the peer closing or resetting the connection (HungUp,
// Reset), and h, when not nil, is told too. It reports false when the
// registration failed; r then never reports a hang-up.
func (io *IO) Watch(r *Registration, fd int, h Handler) bool {
	if io == nil {
		return false
	}
	return io.register(r, fd, h, -1, unix.EPOLLRDHUP|unix.EPOLLET)
}

// Arm asks for one event of the socket fd, from one of the polling
// instances: the first time it registers fd (EPOLLIN|EPOLLRDHUP|
// EPOLLONESHOT, instance chosen round-robin), later it re-arms that
// registration (one epoll_ctl either way). h is told of the first event
// that comes (readable, peer closed, error), after which the registration
// stays disarmed, and silent, until the next Arm. Data already waiting
// when Arm is called is reported at once. This is for sockets that spend
// their idle time with no goroutine but are otherwise read by one (the
// HTTP/2 engine's parked connections, internal/engine/h2): while active
// they cost the IO nothing. Release or Remove ends the registration. It
// reports false when the registration failed; r is then not armed.
func (io *IO) Arm(r *Registration, fd int, h Handler) bool {
	if io == nil {
		return false
	}
	const events = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT
	if !r.on {
		inst := int(io.next.Add(1) % uint32(len(io.polls)))
		return io.register(r, fd, h, inst, events)
	}
	if int(r.fd) != fd || r.inst < 0 {
		return false
	}
	e, gen := io.instance(int(r.inst)), r.gen
	io.mu.RLock()
	defer io.mu.RUnlock()
	if io.closed {
		return false
	}
	// Published again, as by register: the goroutine that the event
	// hands the connection to sees whatever its owner did before this
	// Arm (the epoll_ctl is an edge Go's memory model does not know).
	io.regs.slot(fd).Store(r)
	return e.Ctl(unix.EPOLL_CTL_MOD, fd, events, gen) == nil
}

func (io *IO) register(r *Registration, fd int, h Handler, inst int, events uint32) bool {
	if fd < 0 || r.on {
		return false
	}
	slot := io.regs.slot(fd)
	if slot == nil {
		return false
	}
	io.mu.RLock()
	defer io.mu.RUnlock()
	if io.closed {
		return false
	}
	// All of r is written before it is published (the slot, then the
	// registration: an event may come at once, and hand the connection to
	// another goroutine); nothing is written after a registration that
	// worked.
	r.h, r.fd, r.gen, r.inst, r.on = h, int32(fd), io.gen.Add(1), int16(inst), true
	r.flags.Store(0)
	slot.Store(r)
	if io.instance(inst).Ctl(unix.EPOLL_CTL_ADD, fd, events, r.gen) != nil {
		// No event can come for a registration that failed.
		slot.CompareAndSwap(r, nil)
		r.on = false
		return false
	}
	return true
}

func (io *IO) instance(inst int) *Instance {
	if inst < 0 {
		return io.hup
	}
	return io.polls[inst]
}

// Release ends r's registration without a system call: its events are
// ignored from now on. Call it before closing the descriptor (afterwards
// its number may name another socket); closing the descriptor drops the
// kernel's registration, and the generation number each event carries
// keeps a late event for this socket from being taken for a later one with
// the same number.
func (io *IO) Release(r *Registration) {
	if io == nil || !r.on {
		return
	}
	r.on = false
	if slot := io.regs.slot(int(r.fd)); slot != nil {
		slot.CompareAndSwap(r, nil)
	}
}

// Remove ends r's registration and takes the descriptor out of its epoll
// instance (epoll_ctl), for a socket that stays open in other hands (handed
// to net/http, hijacked, duplicated): an epoll registration lives as long
// as the open file, not the descriptor number.
func (io *IO) Remove(r *Registration) {
	if io == nil || !r.on {
		return
	}
	io.mu.RLock()
	if !io.closed {
		io.instance(int(r.inst)).Ctl(unix.EPOLL_CTL_DEL, int(r.fd), 0, 0)
	}
	io.mu.RUnlock()
	io.Release(r)
}

// Registered reports whether r is registered (and not released or
// removed).
func (r *Registration) Registered() bool { return r.on }

// HungUp reports whether the peer closed its side of the connection
// (EPOLLRDHUP) or the connection failed (reset, EPOLLHUP or EPOLLERR) since
// the registration. It costs an atomic load. The news lags the peer by the
// time the runtime takes to run the IO's goroutine: a hang-up that arrived
// microseconds ago may not be reported yet.
func (r *Registration) HungUp() bool { return r.flags.Load()&flagHungUp != 0 }

// Reset reports whether the hang-up was a reset or an error rather than a
// close of the peer's sending side (which may be a half-close: the peer can
// still read).
func (r *Registration) Reset() bool { return r.flags.Load()&flagReset != 0 }
