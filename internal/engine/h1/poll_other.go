//go:build !linux

package h1

import (
	"crypto/tls"
	"net"
	"net/netip"
	"time"
)

// Without epoll every connection keeps its own goroutine, and hang-ups are
// noticed only when a read or write fails.

type handoff struct{}

func newHandoffs(int) []handoff { return nil }

func (s *Server) polling() bool { return false }

func startPolling(*conn) bool { return false }

func (c *conn) unregister() {}

func (c *conn) watchTLS(*tls.Conn) {}

func (s *Server) acceptFD(fd int, remote netip.AddrPort) {}

func (c *conn) promote() error { return nil }

// Every connection has a net.Conn here (nc is never nil), so the fd-only
// operations are not reached.

func (c *conn) readFD([]byte, time.Time) (int, error)  { return 0, net.ErrClosed }
func (c *conn) writeFD([]byte, time.Time) (int, error) { return 0, net.ErrClosed }
func (c *conn) closeFD()                               {}
func (c *conn) shutdownFD()                            {}

type waiter struct{}

func (w *waiter) wake() {}
