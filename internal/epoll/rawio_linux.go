package epoll

import (
	"syscall"
	"unsafe"
)

// Recv and Send are how penstock reads and writes plain sockets that it
// polls itself (the engine's client connections) or whose waiting it
// leaves to the runtime's poller (the upstream client's connections, inside
// RawConn callbacks).
//
// Both go through syscall.RawSyscall: Go keeps its sockets non-blocking, so
// the calls return at once and need none of the scheduler's bookkeeping
// that syscall.Syscall does (entersyscall, which wakes the sysmon thread
// whenever every P had gone idle: at the rate of a busy proxy that goes
// idle between bursts, sysmon never settled, and on one core its wake-ups
// took about a tenth of the CPU time; cloudwego/netpoll makes the same
// choice). They are recvfrom and sendto rather than read and write: on a
// socket they skip the file layer (vfs_read, the file position lock), as
// NGINX's recv and send do, and sendto's MSG_NOSIGNAL turns a write to a
// closed connection into EPIPE without a SIGPIPE.
//
// The caller must own the descriptor for the call: nobody may close it (and
// so free its number for another socket) meanwhile.

// Recv reads into p, which must not be empty, from the socket fd without
// blocking. It returns the bytes read (0 with errno 0: the peer closed its
// side) or the error: EAGAIN when nothing is there yet. EINTR is retried.
func Recv(fd int, p []byte) (int, syscall.Errno) {
	for {
		n, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), 0, 0, 0)
		if e != syscall.EINTR {
			if e != 0 {
				return 0, e
			}
			return int(n), 0
		}
	}
}

// Send writes as much of p as the socket fd takes without blocking. It
// returns the bytes written and, when that is less than len(p), why:
// EAGAIN when the socket's buffer is full, another errno when the write
// failed. EINTR is retried.
func Send(fd int, p []byte) (int, syscall.Errno) {
	n := 0
	for n < len(p) {
		r, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&p[n])), uintptr(len(p)-n), syscall.MSG_NOSIGNAL, 0, 0)
		switch e {
		case 0:
			n += int(r)
		case syscall.EINTR:
		default:
			return n, e
		}
	}
	return n, 0
}
