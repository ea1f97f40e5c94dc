//go:build !linux

package h1

import "time"

// Without the poller every connection has a net.Conn and its own
// goroutine.

func (c *conn) read(p []byte) (int, error) { return c.nc.Read(p) }

func (c *conn) write(p []byte) (int, error) { return c.nc.Write(p) }

type headWait struct{}

func (c *conn) readHeadBytes(p []byte, _ *headWait) (int, error) {
	if !c.headDeadline && c.srv.o.ReadHeaderTimeout > 0 {
		c.headDeadline = true
		c.nc.SetReadDeadline(time.Now().Add(c.srv.o.ReadHeaderTimeout))
	}
	return c.nc.Read(p)
}
