//go:build linux

package loadtest

import (
	"os"
	"syscall"
	"time"
	"unsafe"
)

// The Go runtime's timers wake an idle process with millisecond granularity
// on Linux (the poller waits in whole milliseconds), which at a few thousand
// requests per second would add up to a millisecond of schedule error to
// every latency. A timerfd is a kernel high-resolution timer whose expiry
// arrives through the same poller as the sockets: the scheduler wakes within
// tens of microseconds without blocking a thread.

type sleeper struct {
	f   *os.File
	fd  uintptr
	buf [8]byte
}

type itimerspec struct {
	interval syscall.Timespec
	value    syscall.Timespec
}

func newSleeper() *sleeper {
	const clockMonotonic = 1
	fd, _, errno := syscall.Syscall(syscall.SYS_TIMERFD_CREATE, clockMonotonic, syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if errno != 0 {
		return &sleeper{}
	}
	// A non-blocking descriptor is registered with the runtime's poller, so
	// a read parks the goroutine, not a thread.
	return &sleeper{f: os.NewFile(fd, "timerfd"), fd: fd}
}

// sleep waits for d (> 0).
func (s *sleeper) sleep(d time.Duration) {
	if s.f == nil {
		time.Sleep(d)
		return
	}
	spec := itimerspec{value: syscall.NsecToTimespec(d.Nanoseconds())}
	if _, _, errno := syscall.Syscall6(syscall.SYS_TIMERFD_SETTIME, s.fd, 0, uintptr(unsafe.Pointer(&spec)), 0, 0, 0); errno != 0 {
		time.Sleep(d)
		return
	}
	if _, err := s.f.Read(s.buf[:]); err != nil {
		time.Sleep(d)
	}
}

func (s *sleeper) close() {
	if s.f != nil {
		_ = s.f.Close()
	}
}
