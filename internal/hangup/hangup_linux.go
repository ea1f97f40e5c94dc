package hangup

import (
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

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
	slot := fdSlot(fd)
	if slot == nil {
		return false
	}
	w.fd, w.gen = int32(fd), nextGen.Add(1)
	// Published before the registration: an event may come at once.
	slot.Store(w)
	ev := unix.EpollEvent{Events: unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(fd), Pad: int32(w.gen)}
	// epoll_ctl never blocks: a raw system call leaves the runtime's
	// sysmon thread asleep (syscall.Syscall would wake it).
	_, _, e := syscall.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(ep.fd), unix.EPOLL_CTL_ADD, uintptr(fd),
		uintptr(unsafe.Pointer(&ev)), 0, 0)
	if e != 0 {
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
	if slot := fdSlot(int(w.fd)); slot != nil {
		slot.CompareAndSwap(w, nil)
	}
}

// epoll is the package's epoll instance. Its descriptor is itself
// pollable: wrapped in an os.File it joins the runtime's poller, so the
// goroutine waiting for events is parked like one blocked on a socket
// rather than holding a thread in epoll_wait.
type epoll struct {
	fd   int
	file *os.File
	rc   syscall.RawConn
}

var (
	once sync.Once
	ep   *epoll

	// nextGen tells registrations of a reused descriptor number apart.
	nextGen atomic.Uint32

	// fdPages maps descriptors to watches, in pages allocated on demand.
	fdPages   [1 << 10]atomic.Pointer[fdPage]
	fdPagesMu sync.Mutex
)

const fdPageSize = 1 << 10

type fdPage [fdPageSize]atomic.Pointer[Watch]

func fdSlot(fd int) *atomic.Pointer[Watch] {
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

func start() {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return
	}
	f := os.NewFile(uintptr(fd), "hangup-epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return
	}
	ep = &epoll{fd: fd, file: f, rc: rc}
	go ep.run()
}

// run marks the watches whose sockets hung up, forever.
func (e *epoll) run() {
	events := make([]unix.EpollEvent, 128)
	var n int
	var errno syscall.Errno
	wait := func(fd uintptr) bool {
		// A zero timeout never blocks: a raw system call, as in Start.
		r, _, en := syscall.RawSyscall6(unix.SYS_EPOLL_PWAIT, fd, uintptr(unsafe.Pointer(&events[0])),
			uintptr(len(events)), 0, 0, 0)
		n, errno = int(r), en
		if en == unix.EINTR {
			n, errno = 0, 0
			return false
		}
		// Nothing ready: the runtime parks this goroutine until the epoll
		// descriptor is readable.
		return n != 0 || en != 0
	}
	for {
		if err := e.rc.Read(wait); err != nil || errno != 0 {
			// An epoll instance does not fail once created; stop rather
			// than spin if it somehow does. Watches then report no
			// hang-ups, and their users' fallbacks still hold.
			return
		}
		for i := range n {
			ev := &events[i]
			slot := fdSlot(int(ev.Fd))
			if slot == nil {
				continue
			}
			if w := slot.Load(); w != nil && w.gen == uint32(ev.Pad) {
				w.hup.Store(true)
			}
		}
	}
}
