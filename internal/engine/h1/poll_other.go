//go:build !linux

package h1

import (
	"crypto/tls"
	"net/netip"
	"time"
)

// Without epoll every connection keeps its own goroutine, and hang-ups are
// noticed only when a read or write fails.

type poller struct{}

func startPolling(*conn) bool { return false }

func (c *conn) unregister() {}

func (c *conn) idleExpired() {}

func (c *conn) watchTLS(*tls.Conn) {}

func pollersReady() bool { return false }

func (s *Server) acceptFD(fd int, remote netip.AddrPort) {}

func (c *conn) promote() error { return nil }

func (c *conn) interrupt() { c.nc.SetDeadline(time.Unix(1, 0)) }

func (c *conn) closeSocket() { c.nc.Close() }

func (c *conn) writeWithin(p []byte, d time.Duration) {
	c.nc.SetWriteDeadline(time.Now().Add(d))
	c.nc.Write(p)
}

func (c *conn) lingerClose() {
	type closeWriter interface{ CloseWrite() error }
	if cw, ok := c.nc.(closeWriter); ok {
		cw.CloseWrite()
		c.nc.SetReadDeadline(time.Now().Add(lingerTime))
		var scratch [512]byte
		for range 128 {
			if _, err := c.nc.Read(scratch[:]); err != nil {
				break
			}
		}
	}
}

type waiter struct{}

func (w *waiter) wake() {}
