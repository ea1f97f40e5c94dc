// Package epoll is penstock's Linux I/O layer: everything that reaches
// past Go's net package to the kernel for speed lives here.
//
//   - Instance is one epoll instance whose own descriptor waits in the Go
//     runtime's poller, so a goroutine waiting for its events is parked
//     like one blocked on a socket instead of holding a thread in
//     epoll_wait. The listener's accept loop (internal/listener) uses one
//     directly.
//   - IO is the object a server owns (NewIO, Close): a few instances for
//     the engine's polled client connections (internal/engine/h1) and
//     the HTTP/2 engine's idle ones (internal/engine/h2, IO.Arm), one
//     hang-up watcher for sockets that are not otherwise polled (the
//     engine's TLS connections, the upstream client's idle connections,
//     internal/upstream), and the descriptor table that maps their events
//     to Registrations. Its goroutines end when it is closed.
//   - Recv and Send are the raw recvfrom and sendto that the engine and the
//     upstream client read and write plain sockets with.
//   - RawConn wraps a TCP connection so that its Write uses Send: what
//     crypto/tls writes for the engine's TLS connections (HTTP/1.1 and
//     HTTP/2), and HTTP/2's frames on plain ones.
//
// epoll_ctl, the zero-timeout epoll_pwait, recvfrom and sendto go through
// syscall.RawSyscall: none of them blocks (Go's sockets are non-blocking),
// and syscall.Syscall would wake the runtime's sysmon thread whenever the
// process had been idle (docs/http1.md).
//
// The package is for Linux; elsewhere NewIO fails, Shared returns nil, and
// the users fall back to goroutines and net.Conn.
package epoll
