//go:build linux && (amd64 || arm64)

package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"syscall"
	"time"
	"unsafe"
)

// The Go runtime's timers wake an idle process with millisecond granularity
// on Linux (epoll_wait takes a timeout in milliseconds), which at a few
// thousand requests per second would add up to a millisecond of schedule
// error to every latency. A periodic timerfd is a kernel high-resolution
// timer whose expirations arrive through the same poller as the sockets, so
// the scheduler wakes within microseconds of each tick without blocking a
// thread.

const (
	clockMonotonic = 1 // CLOCK_MONOTONIC
	tfdNonblock    = syscall.O_NONBLOCK
	tfdCloexec     = syscall.O_CLOEXEC
)

type itimerspec struct {
	interval syscall.Timespec
	value    syscall.Timespec
}

type ticker struct {
	f   *os.File
	buf [8]byte
}

// newTicker returns a ticker that fires every period, first after one period.
func newTicker(period time.Duration) (*ticker, error) {
	fd, _, errno := syscall.Syscall(syscall.SYS_TIMERFD_CREATE,
		uintptr(clockMonotonic), uintptr(tfdNonblock|tfdCloexec), 0)
	if errno != 0 {
		return nil, fmt.Errorf("timerfd_create: %w", errno)
	}
	spec := itimerspec{
		interval: syscall.NsecToTimespec(period.Nanoseconds()),
		value:    syscall.NsecToTimespec(period.Nanoseconds()),
	}
	_, _, errno = syscall.Syscall6(syscall.SYS_TIMERFD_SETTIME,
		fd, 0, uintptr(unsafe.Pointer(&spec)), 0, 0, 0)
	if errno != 0 {
		syscall.Close(int(fd))
		return nil, fmt.Errorf("timerfd_settime: %w", errno)
	}
	// A non-blocking descriptor is registered with the runtime's poller, so
	// Read parks the goroutine rather than a thread.
	return &ticker{f: os.NewFile(fd, "timerfd")}, nil
}

// wait blocks until the next tick and returns how many ticks passed since
// the previous wait.
func (t *ticker) wait() (uint64, error) {
	if _, err := t.f.Read(t.buf[:]); err != nil {
		return 0, err
	}
	return binary.NativeEndian.Uint64(t.buf[:]), nil
}

func (t *ticker) stop() { _ = t.f.Close() }
