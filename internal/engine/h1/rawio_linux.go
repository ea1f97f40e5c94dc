package h1

import (
	"io"
	"os"
	"syscall"
	"unsafe"
)

// Reads and writes on a polled plain connection go straight to its
// descriptor with syscall.RawSyscall, and only fall back to the net.Conn
// (whose operations wait in the runtime's poller, with deadlines) when the
// socket would block.
//
// Why not the net.Conn every time: it enters the system call through
// syscall.Syscall, which tells the scheduler a goroutine may block. When
// the process had gone idle, that notice wakes the runtime's monitor
// thread (sysmon), which then polls every 20 µs for a while; at the rate of
// a busy proxy that goes idle between bursts, the monitor never settles, and
// on one core its wake-ups took about a tenth of the CPU time (perf,
// bench/peers.sh). Go's sockets are non-blocking, so a read or write
// returns at once and needs none of that bookkeeping; cloudwego/netpoll
// makes the same choice for the same reason.
//
// Safety: only the goroutine that owns the connection (an active one) reads
// and writes it, and only that goroutine closes an active connection
// (Shutdown and the idle sweeper close idle ones, kill sets a deadline), so
// the descriptor number cannot be closed and reused under a raw call.

// rawRead reads into p from c's descriptor without blocking. again reports
// that nothing was ready (EAGAIN): the caller waits through the net.Conn.
func (c *conn) rawRead(p []byte) (n int, again bool, err error) {
	if len(p) == 0 {
		return 0, false, nil
	}
	for {
		r, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(c.fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch e {
		case 0:
			if r == 0 {
				return 0, false, io.EOF
			}
			return int(r), false, nil
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return 0, true, nil
		}
		return 0, false, os.NewSyscallError("read", e)
	}
}

// rawWrite writes as much of p as the socket takes without blocking.
func (c *conn) rawWrite(p []byte) (n int, err error) {
	for n < len(p) {
		r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(c.fd), uintptr(unsafe.Pointer(&p[n])), uintptr(len(p)-n))
		switch e {
		case 0:
			n += int(r)
			continue
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return n, nil
		}
		return n, os.NewSyscallError("write", e)
	}
	return n, nil
}
