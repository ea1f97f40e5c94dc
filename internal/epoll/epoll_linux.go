package epoll

import (
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Instance is one epoll instance.
type Instance struct {
	fd   int
	file *os.File
	rc   syscall.RawConn
}

// New creates an instance; name labels its descriptor (as an os.File).
func New(name string) (*Instance, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	f := os.NewFile(uintptr(fd), name)
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &Instance{fd: fd, file: f, rc: rc}, nil
}

// Ctl adds (unix.EPOLL_CTL_ADD), changes or removes the registration of
// fd; data travels with each event (Event.Pad), typically a generation
// number that tells a registration from an earlier one of the same
// descriptor number.
func (e *Instance) Ctl(op, fd int, events, data uint32) error {
	ev := unix.EpollEvent{Events: events, Fd: int32(fd), Pad: int32(data)}
	_, _, errno := syscall.RawSyscall6(syscall.SYS_EPOLL_CTL, uintptr(e.fd), uintptr(op), uintptr(fd),
		uintptr(unsafe.Pointer(&ev)), 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// waitNow is a zero-timeout epoll_pwait.
func waitNow(epfd uintptr, events []unix.EpollEvent) (int, syscall.Errno) {
	for {
		n, _, errno := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, epfd, uintptr(unsafe.Pointer(&events[0])),
			uintptr(len(events)), 0, 0, 0)
		if errno != syscall.EINTR {
			return int(n), errno
		}
	}
}

// Run calls fn for each event, batch after batch, until the instance is
// closed (or, which does not happen, fails). It is one RawConn.Read that
// does not return: the callback drains the instance (until a wait returns
// fewer events than batch holds) and handles the events, then returns
// false, which parks the goroutine until the instance's descriptor
// signals again. The runtime resets a descriptor's readiness only when a
// read starts, so an event that arrives while fn runs makes the next wait
// return at once; returning after each batch would instead cost an
// epoll_pwait that finds nothing, to re-check after that reset, every time
// the goroutine goes back to sleep.
//
// fn runs on Run's goroutine and must not block.
func (e *Instance) Run(batch int, fn func(ev *unix.EpollEvent)) {
	events := make([]unix.EpollEvent, batch)
	e.rc.Read(func(epfd uintptr) bool {
		for {
			n, errno := waitNow(epfd, events)
			if errno != 0 {
				return true
			}
			for i := range n {
				fn(&events[i])
			}
			if n < len(events) {
				return false
			}
		}
	})
}

// WaitReady waits until the instance has an event to report (without
// taking it), deadline passes (os.ErrDeadlineExceeded; zero: no deadline)
// or the instance is closed (an error wrapping os.ErrClosed).
func (e *Instance) WaitReady(deadline time.Time) error {
	e.file.SetReadDeadline(deadline)
	var probe [1]unix.EpollEvent
	// A level-triggered registration reports again what this look takes.
	return e.rc.Read(func(epfd uintptr) bool {
		n, errno := waitNow(epfd, probe[:])
		return n > 0 || errno != 0
	})
}

// Close closes the instance; a Run or WaitReady in progress returns.
func (e *Instance) Close() error { return e.file.Close() }

// table maps descriptor numbers to the objects registered for them, in
// pages of 1024 allocated on first use (numbers up to about a million).
// Lookups and stores are atomic; a zero table is ready.
type table[T any] struct {
	pages [1 << 10]atomic.Pointer[[pageSize]atomic.Pointer[T]]
	mu    sync.Mutex // allocating a page
}

const pageSize = 1 << 10

// slot returns fd's slot, or nil when fd is out of range.
func (t *table[T]) slot(fd int) *atomic.Pointer[T] {
	if fd < 0 {
		return nil
	}
	pi := fd / pageSize
	if pi >= len(t.pages) {
		return nil
	}
	pg := t.pages[pi].Load()
	if pg == nil {
		t.mu.Lock()
		if pg = t.pages[pi].Load(); pg == nil {
			pg = new([pageSize]atomic.Pointer[T])
			t.pages[pi].Store(pg)
		}
		t.mu.Unlock()
	}
	return &pg[fd%pageSize]
}
