package hangup

import (
	"sync"
	"sync/atomic"

	"github.com/penstock-dev/penstock/internal/epoll"
	"golang.org/x/sys/unix"
)

// Watch reports whether the peer of one socket hung up. The zero value
// watches nothing; a Watch must not be copied after Start.
type Watch struct {
	fd  int32
	gen uint32
	on  bool
	hup atomic.Bool
}

// Start registers the socket fd, once for its life. It reports false when
// the watch is unavailable (the epoll instance could not be made, fd is out
// of range, or the registration failed); the Watch then never reports a
// hang-up. fd must be a descriptor that no other Watch is watching.
func (w *Watch) Start(fd int) bool {
	once.Do(start)
	if ep == nil || fd < 0 {
		return false
	}
	slot := watches.Slot(fd)
	if slot == nil {
		return false
	}
	w.fd, w.gen = int32(fd), nextGen.Add(1)
	// Published before the registration: an event may come at once.
	slot.Store(w)
	if ep.Ctl(unix.EPOLL_CTL_ADD, fd, unix.EPOLLRDHUP|unix.EPOLLET, w.gen) != nil {
		slot.CompareAndSwap(w, nil)
		return false
	}
	w.on = true
	return true
}

// Watching reports whether Start succeeded and Stop was not called yet.
// It is for the goroutine that called them.
func (w *Watch) Watching() bool { return w.on }

// HungUp reports whether the peer closed its side of the connection
// (EPOLLRDHUP), or the connection failed (reset, EPOLLHUP or EPOLLERR),
// since Start. It costs an atomic load. The news lags the peer by the time
// the runtime takes to run the watching goroutine: a hang-up that arrived
// microseconds ago may not be reported yet.
func (w *Watch) HungUp() bool { return w.hup.Load() }

// Stop ends the watch. Call it before closing the descriptor: afterwards
// its number may name another socket. The kernel drops the registration
// itself when the socket is closed, so Stop makes no system call; the
// generation number carried by each event keeps a late event for this
// socket from being taken for a later one with the same number.
func (w *Watch) Stop() {
	if !w.on {
		return
	}
	w.on = false
	if slot := watches.Slot(int(w.fd)); slot != nil {
		slot.CompareAndSwap(w, nil)
	}
}

var (
	once sync.Once
	// ep is the package's epoll instance.
	ep *epoll.Instance

	// nextGen tells registrations of a reused descriptor number apart.
	nextGen atomic.Uint32

	// watches maps descriptors to watches.
	watches epoll.Table[Watch]
)

func start() {
	e, err := epoll.New("hangup-epoll")
	if err != nil {
		return
	}
	ep = e
	// The instance does not fail once created; if it somehow did, Run
	// would return, watches would report no hang-ups, and their users'
	// fallbacks would still hold.
	go e.Run(128, func(ev *unix.EpollEvent) {
		if slot := watches.Slot(int(ev.Fd)); slot != nil {
			if w := slot.Load(); w != nil && w.gen == uint32(ev.Pad) {
				w.hup.Store(true)
			}
		}
	})
}
