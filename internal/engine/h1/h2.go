package h1

import (
	"net"
	"sync"
	"time"
)

// serveH2 hands the connection to net/http's HTTP/2 server: a TLS
// connection that negotiated "h2", or a plain one that opened with the h2c
// preface (whose bytes, already read, are replayed). From here net/http owns
// the connection; its ConnState hook reports the close.
func (c *conn) serveH2() {
	c.unregister()
	ln := c.srv.h2()
	if ln == nil {
		c.close()
		return
	}
	if err := c.promote(); err != nil {
		c.close()
		return
	}
	nc := c.nc
	if c.w > c.r {
		nc = &prefixConn{Conn: c.nc, prefix: append([]byte(nil), c.rbuf[c.r:c.w]...)}
	}
	c.r, c.w = 0, 0
	c.releaseRead()
	c.nc.SetDeadline(time.Time{})
	if !c.state.CompareAndSwap(connActive, connHijacked) {
		c.close()
		return
	}
	// net/http tracks the connection from now on; its close is reported
	// by the HTTP/2 server's ConnState hook.
	c.srv.mu.Lock()
	delete(c.srv.conns, c)
	if len(c.srv.conns) == 0 && c.srv.allGone != nil {
		close(c.srv.allGone)
		c.srv.allGone = nil
	}
	c.srv.mu.Unlock()
	if !ln.deliver(nc) {
		nc.Close()
		c.srv.closed(c)
	}
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

// chanListener is a net.Listener fed with connections by the engine, for
// net/http's HTTP/2 server.
type chanListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newChanListener() *chanListener {
	return &chanListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) deliver(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return &net.TCPAddr{} }
