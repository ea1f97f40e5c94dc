//go:build unix

package upstream

import "syscall"

// probe is the body of the idle-connection check: one non-blocking read on
// the socket (Go keeps its sockets non-blocking). Nothing should arrive on
// an idle connection, so any result but "would block" condemns it: 0 bytes
// means the upstream closed it, data means it spoke out of turn (an
// unsolicited 408, say), and a consumed byte does no harm to a connection
// that is closed anyway.
func (hc *h1Conn) probe(fd uintptr) bool {
	_, err := syscall.Read(int(fd), hc.num[:1])
	hc.probeOK = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
	return true
}
