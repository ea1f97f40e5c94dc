package h1

import (
	"io"
	"net"
	"strings"
	"time"

	"golang.org/x/net/http2/hpack"

	"github.com/penstock-dev/penstock/internal/engine/h2"
	"github.com/penstock-dev/penstock/internal/epoll"
	"github.com/penstock-dev/penstock/internal/exchange"
)

// serveH2 hands the connection to the HTTP/2 engine (internal/engine/h2):
// a TLS connection that negotiated "h2", a plain one that opened with the
// h2c preface (whose bytes, already read, are passed on), or one whose
// request asked to upgrade to h2c (c.h2up: answered 101 here, then served
// on stream 1 by the engine). From here
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
	up := c.h2up
	c.h2up = nil
	if up != nil {
		c.nc.SetWriteDeadline(time.Now().Add(c.srv.o.ReadHeaderTimeout))
		_, err := io.WriteString(c.nc, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
		c.nc.SetWriteDeadline(time.Time{})
		if err != nil {
			c.close()
			return
		}
	}
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
		NC:      epoll.RawConn(c.nc),
		Prefix:  prefix,
		TLS:     c.tls,
		Remote:  c.remote,
		Upgrade: up,
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

// h2cUpgrade makes the HTTP/2 engine's Upgrade of a request that asked for
// h2c, or nil when its HTTP2-Settings is not valid (the request is then
// served over HTTP/1.1, RFC 7540 §3.2.1). Its strings are copied: req's
// alias the read buffer, which goes back to its pool.
func h2cUpgrade(req *exchange.Request, settings []byte) *h2.Upgrade {
	payload, ok := h2.ParseUpgradeSettings(settings)
	if !ok {
		return nil
	}
	path := req.Path
	if req.Query != "" {
		path += "?" + req.Query
	}
	u := &h2.Upgrade{
		Settings:  payload,
		Method:    strings.Clone(req.Method),
		Authority: strings.Clone(req.Host),
		Path:      strings.Clone(path),
	}
	req.Header.Range(func(name, value string) bool {
		name = strings.ToLower(name)
		switch name {
		case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "http2-settings", "host":
			return true
		case "te":
			if !strings.EqualFold(value, "trailers") {
				return true
			}
		}
		u.Fields = append(u.Fields, hpack.HeaderField{Name: name, Value: strings.Clone(value)})
		return true
	})
	return u
}
