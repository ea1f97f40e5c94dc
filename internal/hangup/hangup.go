// Package hangup tells when the peer of an idle socket closes or resets it,
// without a system call at the moment the socket is about to be used.
//
// A keep-alive connection taken from a pool may have been closed by its
// peer while it sat there. Asking the socket (a non-blocking read) costs a
// system call on every reuse; instead, each socket is registered once with
// an epoll instance of this package for EPOLLRDHUP only, edge-triggered, and
// a goroutine marks its Watch when the peer's FIN or RST arrives. Data
// arriving does not wake that goroutine: EPOLLIN is not asked for.
//
// On platforms without epoll, Start reports false and the caller keeps
// whatever check it had.
package hangup
