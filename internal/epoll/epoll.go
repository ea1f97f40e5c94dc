// Package epoll is the thin layer over Linux epoll that penstock's pollers
// share: the engine's poller of idle client connections
// (internal/engine/h1), the hang-up watch of idle upstream connections
// (internal/hangup) and the accept loop that hands out bare descriptors
// (internal/listener).
//
// An Instance's own descriptor waits in the Go runtime's poller, so a
// goroutine waiting for its events is parked like one blocked on a socket
// instead of holding a thread in epoll_wait. epoll_ctl and the zero-timeout
// epoll_pwait go through syscall.RawSyscall: neither blocks, and
// syscall.Syscall would wake the runtime's sysmon thread whenever the
// process had been idle (docs/architecture.md). A Table maps descriptor
// numbers to what is registered for them, without a lock per lookup.
//
// The package is for Linux; elsewhere its users fall back to goroutines
// and net.Conn.
package epoll
