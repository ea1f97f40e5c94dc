package h1

import (
	"net"
	"time"

	"github.com/penstock-dev/penstock/internal/engine/h2"
	"github.com/penstock-dev/penstock/internal/epoll"
)

// serveH2 hands the connection to the HTTP/2 engine (internal/engine/h2):
// a TLS connection that negotiated "h2", or a plain one that opened with
// the h2c preface (whose bytes, already read, are passed on). From here
// the HTTP/2 engine owns the connection and reports its close.
func (c *conn) serveH2() {
	c.unregister()
	hs := c.srv.h2()
	if hs == nil {
		c.close()
		return
	}
	if err := c.promote(); err != nil {
		c.close()
		return
	}
	var prefix []byte
	if c.w > c.r {
		prefix = append([]byte(nil), c.rbuf[c.r:c.w]...)
	}
	c.r, c.w = 0, 0
	c.releaseRead()
	c.nc.SetDeadline(time.Time{})
	if !c.state.CompareAndSwap(connActive, connHijacked) {
		c.close()
		return
	}
	// The HTTP/2 engine tracks the connection from now on.
	c.srv.mu.Lock()
	delete(c.srv.conns, c)
	if len(c.srv.conns) == 0 && c.srv.allGone != nil {
		close(c.srv.allGone)
		c.srv.allGone = nil
	}
	c.srv.mu.Unlock()
	// Its own goroutine: a polled connection arrives here on a worker
	// that must go back to its poller. The close is reported from what
	// it needs only: an idle HTTP/2 connection keeps this closure for its
	// life, and the conn struct is not needed any more.
	srv, label := c.srv, c.label()
	go hs.ServeConn(h2.Conn{
		// A plain connection's writes use raw system calls from here
		// on, as the TLS ones' do (epoll.RawConn).
		NC:     epoll.RawConn(c.nc),
		Prefix: prefix,
		TLS:    c.tls,
		Remote: c.remote,
		Closed: func() {
			if srv.o.ConnOpened != nil && srv.o.ConnClosed != nil {
				srv.o.ConnClosed(label)
			}
		},
	})
}

// prefixConn is a connection whose first reads return bytes already taken
// from it.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.prefix) > 0 {
		n := copy(b, p.prefix)
		p.prefix = p.prefix[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}
