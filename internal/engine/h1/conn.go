package h1

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"github.com/penstock-dev/penstock/internal/engine/h2"
	"github.com/penstock-dev/penstock/internal/engine/watchctx"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/penstock-dev/penstock/internal/epoll"
	"github.com/penstock-dev/penstock/internal/exchange"
)

// conn is one client connection speaking HTTP/1.x.
//
// Its life is a loop of exchanges. Between exchanges a keep-alive connection
// is idle: on plain TCP (Linux) it is parked in the poller with no goroutine
// and no buffer, and a worker goroutine picks it up when the socket becomes
// readable; on TLS it keeps its goroutine (crypto/tls reads records itself)
// but still returns its read buffer while idle.
type conn struct {
	srv *Server
	// nc is the connection, or nil for a plain one the engine accepted
	// itself and serves through its descriptor fd (fdconn_linux.go).
	nc     net.Conn
	tls    *tls.ConnectionState // nil on plain connections
	remote netip.AddrPort
	kind   connKind

	// state is connActive while a goroutine owns the connection,
	// connIdle while it waits for the next request and connClosed at the
	// end; Shutdown and the idle sweeper race the poller on it with CAS.
	state atomic.Int32
	// streaming is set while the connection's response is an event
	// stream: a drain in a binary upgrade lets it run past drain_timeout.
	streaming atomic.Bool

	// Read buffer: rbuf[r:w] are bytes received and not consumed.
	rb   *buffer
	rbuf []byte
	r, w int
	// bodyBase is where the current request's header section ends in
	// rbuf; body bytes are buffered after it, so the header strings the
	// handler holds stay intact.
	bodyBase int
	// one receives the first byte of the next request while a TLS
	// connection waits without a read buffer.
	one [1]byte

	first bool // no request read yet (h2c preface check)
	// h2up is the request that asked to switch to h2c, for serveH2.
	h2up *h2.Upgrade

	// act is the state of the exchange in progress, from a pool: an
	// idle connection holds none.
	act *active

	// reg is the descriptor's registration with the server's IO: a
	// plain connection waiting in a polling instance (poll_linux.go), or a
	// TLS connection watched for the client hanging up. It records the
	// hang-up (reg.HungUp, reg.Reset); bodyDone records whether the
	// current request has been read in full: only then does a hang-up
	// cancel the exchange, as with net/http.
	reg epoll.Registration
	// waiter is set while the goroutine of an fd-only connection (nc
	// nil, see fdconn_linux.go) waits for its descriptor.
	waiter atomic.Pointer[waiter]
	// fd is the descriptor of a polled or fd-only connection.
	fd int
	// ready records a poller event that came while the connection was
	// active (its registration is edge-triggered: the event is not
	// repeated); see goIdle and waitFD.
	ready atomic.Bool
	// raw: reads and writes try the descriptor fd directly first (see
	// rawio_linux.go); set while a plain connection is polled.
	raw bool
	// headDeadline: the header timeout is set on nc for the head being
	// read.
	headDeadline bool
	bodyDone     atomic.Bool
	// idleTick is the sweeper's tick when the connection last went idle
	// in the poller (see idle.go); 0 before that.
	idleTick atomic.Uint32
	// mu orders the registration against closing by others and guards
	// act for the hang-up watch and kill; per connection.
	mu     sync.Mutex
	closed atomic.Bool
	killed atomic.Bool
	// counted: the connection was reported to ConnOpened (see
	// Server.opened).
	counted bool
}

// connKind is what a connection carries (a byte, not two strings: an idle
// connection is mostly its conn struct).
type connKind uint8

const (
	kindTCP connKind = iota // plain TCP, HTTP/1.x or h2c
	kindTLS                 // HTTP/1.1 over TLS
	kindH2                  // HTTP/2 over TLS
)

func (c *conn) scheme() string {
	if c.kind == kindTCP {
		return "http"
	}
	return "https"
}

// label is the protocol label for the connection hooks.
func (c *conn) label() string {
	switch c.kind {
	case kindTLS:
		return "http/1.1"
	case kindH2:
		return "h2"
	}
	return "tcp"
}

// reqFacts are what the response writer needs to know of the request.
type reqFacts struct {
	Proto  exchange.Proto
	Method string
	// header is the request's header while the exchange lasts (the
	// response asks it for "TE: trailers").
	header *exchange.Header
}

const (
	connActive int32 = iota
	connIdle
	connClosed
	connHijacked
)

// maxHeaderFields bounds the number of request header fields (431 beyond):
// enough for any real client, small enough that a flood of tiny fields
// cannot turn into CPU or memory cost.
const maxHeaderFields = 256

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{srv: s, nc: nc, first: true}
	if ta, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		c.remote = ta.AddrPort()
	}
	return c
}

// active is what a connection needs while it serves requests and gives
// back when it goes idle: the request's framing, its body reader and the
// response writer.
type active struct {
	// ctx is the exchanges' context, cancelled when the client hangs up,
	// the connection is killed or closed. One that was not cancelled
	// stays with the struct and serves the next connection: no request
	// was in flight when it went back to the pool.
	ctx *watchctx.Ctx

	req  reqFacts
	head head
	body body
	// bodyRef is the handle exchanges read the body through (see body).
	bodyRef *bodyRef
	resp    response
}

var activePool = sync.Pool{New: func() any { return new(active) }}

// acquireActive gives c its exchange state for the requests it has ready.
func (c *conn) acquireActive() {
	if c.act == nil {
		a := activePool.Get().(*active)
		if a.ctx == nil || a.ctx.Err() != nil {
			a.ctx = watchctx.New()
		}
		a.body.mu.Lock()
		a.body.c = c
		a.body.mu.Unlock()
		a.resp.c = c
		// Under mu: the hang-up watch and kill cancel c.act's context
		// from other goroutines.
		c.mu.Lock()
		c.act = a
		c.mu.Unlock()
	}
}

// cancelExchange cancels the context of the exchange in progress, if any.
func (c *conn) cancelExchange() {
	c.mu.Lock()
	if a := c.act; a != nil {
		a.ctx.Cancel()
	}
	c.mu.Unlock()
}

// releaseActive gives the exchange state back (idle, closed, hijacked).
// A body handle a reader may still hold fails its reads: detach moved the
// body's sequence number on.
func (c *conn) releaseActive() {
	if a := c.act; a != nil {
		a.resp.putBuffer()
		a.resp.c = nil
		c.mu.Lock()
		c.act = nil
		c.mu.Unlock()
		activePool.Put(a)
	}
}

// keepAlive reports whether the current exchange leaves the connection open
// for another request.
func (c *conn) keepAlive() bool {
	return c.act.head.keepAlive && !c.act.head.connect && !c.srv.shuttingDown.Load() && !c.killed.Load() && !c.reg.HungUp()
}

// outcome of serving the requests a connection has ready.
type outcome uint8

const (
	outClose    outcome = iota // close the connection
	outIdle                    // keep-alive, nothing buffered: wait for the next request
	outHijacked                // a handler took the connection
	outH2                      // the client speaks HTTP/2 (h2c preface)
)

// serveReady serves requests until the connection has nothing buffered and
// must wait, or must be closed.
func (c *conn) serveReady() outcome {
	for {
		out := c.serveOne()
		if out != outIdle {
			return out
		}
		// Move pipelined bytes to the front for the next request.
		if c.r < c.w {
			c.w = copy(c.rbuf, c.rbuf[c.r:c.w])
			c.r = 0
			continue
		}
		c.r, c.w = 0, 0
		c.releaseRead()
		c.releaseActive()
		return outIdle
	}
}

// serveOne reads one request head, runs the handler and completes the
// response.
func (c *conn) serveOne() outcome {
	end, perr, err := c.readHead()
	if err != nil {
		switch err {
		case errH2Preface:
			return outH2
		case errNoRequest:
			return outIdle
		}
		return outClose
	}
	if perr != nil {
		c.reject(perr)
		return outClose
	}
	c.first = false
	c.acquireActive()

	x := exchange.Acquire()
	x.Req.Scheme = c.scheme()
	x.Req.RemoteAddr = c.remote
	x.Req.TLS = c.tls
	h, perr := parseHead(c.rbuf[c.r:end], &x.Req, maxHeaderFields)
	if perr != nil {
		exchange.Release(x)
		c.reject(perr)
		return outClose
	}
	if h.h2c && c.srv.o.H2C && c.tls == nil && !h.chunked && h.contentLength <= 0 && !h.expectContinue {
		// "Upgrade: h2c" on a listener that speaks h2c: the request
		// is answered over HTTP/2 (h2.go).
		if up := h2cUpgrade(&x.Req, h.h2Settings); up != nil {
			exchange.Release(x)
			c.r = end
			c.h2up = up
			c.releaseActive()
			return outH2
		}
	}
	c.r, c.bodyBase = end, end
	if c.headDeadline {
		c.headDeadline = false
		c.nc.SetReadDeadline(time.Time{})
	}
	c.act.head = h
	c.act.req = reqFacts{Proto: x.Req.Proto, Method: x.Req.Method, header: &x.Req.Header}
	c.act.body.reset(c, &c.act.head)
	c.act.resp.reset()
	if c.act.body.complete() {
		x.Req.Body = http.NoBody
	} else {
		if c.act.bodyRef == nil {
			c.act.bodyRef = &bodyRef{b: &c.act.body}
		}
		c.act.bodyRef.seq = c.act.body.seq
		x.Req.Body = c.act.bodyRef
		if c.act.body.mode == bodyChunked {
			x.Req.Trailer = c.act.bodyRef
		}
	}
	x.W = &c.act.resp
	x.Ctx = c.act.ctx
	x.Start = time.Now()
	c.bodyDone.Store(false)
	if c.act.body.complete() {
		c.bodyCompleted()
	}

	c.srv.h.ServeExchange(x)
	c.streaming.Store(false)
	if !c.act.body.complete() {
		// The handler did not read the body to its end, so a reader may
		// still hold the handle (see body): it keeps an outdated one,
		// and the next body gets a new handle.
		c.act.bodyRef = nil
	}
	c.act.body.detach()

	aborted := x.State.Aborted
	if c.act.resp.hijacked {
		exchange.Release(x)
		// The hijacker may go on using the context; it stays its own.
		c.act.ctx = nil
		c.releaseActive()
		c.releaseRead()
		return outHijacked
	}
	if !c.act.body.complete() && !c.act.resp.committed {
		// An unread body the engine will not wait for: announce the
		// close in this response.
		if c.act.body.expectContinue && !c.act.body.sentContinue || c.act.body.mode == bodyLength && c.act.body.remain > maxDrain {
			c.act.resp.closeAfter = true
		}
	}
	// A response whose head promised keep-alive keeps the connection
	// even if a drain began meanwhile: closing it now would meet the
	// client's next request. It goes idle, and the drain answers that
	// request with "Connection: close" (Server.Shutdown).
	keep := c.act.resp.finish(aborted) && !c.act.resp.closeSent && c.act.head.keepAlive && !c.act.head.connect &&
		!c.killed.Load() && !c.reg.HungUp()
	if keep {
		keep = c.act.body.drain()
	}
	exchange.Release(x)
	if !keep {
		if !c.act.body.complete() {
			c.lingerClose()
		}
		return outClose
	}
	return outIdle
}

// errH2Preface reports the HTTP/2 client preface on a plain connection.
var errH2Preface = errors.New("h1: HTTP/2 preface")

// errNoRequest reports a polled connection handed to a worker with nothing
// to read after all: it goes back to the poller.
var errNoRequest = errors.New("h1: nothing to read")

var h2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

// readHead reads until rbuf holds a complete header section and returns its
// end. perr is a protocol error to answer; err a connection failure.
func (c *conn) readHead() (end int, perr *ProtocolError, err error) {
	c.acquireRead()
	limit := c.srv.maxHeader
	scanned := c.r
	lineOK := false
	var hw headWait
	for {
		if c.w > c.r {
			if c.first && c.srv.o.H2C {
				n := min(c.w-c.r, len(h2Preface))
				if bytes.Equal(c.rbuf[c.r:c.r+n], h2Preface[:n]) {
					if n == len(h2Preface) {
						return 0, nil, errH2Preface
					}
					goto read
				}
			}
			if c.first && !c.srv.o.HTTP1 {
				// An h2c-only listener: anything but the preface ends
				// the connection.
				return 0, nil, io.EOF
			}
			if e := headerEnd(c.rbuf[c.r:c.w], scanned-c.r); e >= 0 {
				return c.r + e, nil, nil
			}
			if perr := earlyHeadError(c.rbuf[c.r:c.w], scanned-c.r, &lineOK); perr != nil {
				return 0, perr, nil
			}
			scanned = c.w
			if c.w-c.r >= limit {
				if bytes.IndexByte(c.rbuf[c.r:c.w], '\n') < 0 {
					return 0, errURITooLong, nil
				}
				return 0, errHeaderTooLarge, nil
			}
		}
	read:
		if c.killed.Load() {
			return 0, nil, net.ErrClosed
		}
		if c.w == len(c.rbuf) {
			c.growRead(limit)
		}
		n, rerr := c.readHeadBytes(c.rbuf[c.w:], &hw)
		c.w += n
		if rerr != nil && n == 0 {
			if c.w > c.r && isTimeout(rerr) {
				// A request begun and not finished in time (a
				// slowloris client): answered, as NGINX and HAProxy do.
				return 0, errHeadTimeout, nil
			}
			return 0, nil, rerr
		}
	}
}

// isTimeout reports whether err is a deadline passing.
func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// growRead makes room in rbuf for a header section larger than the pooled
// buffer, up to limit plus some slack for body bytes.
func (c *conn) growRead(limit int) {
	if c.r > 0 {
		c.w = copy(c.rbuf, c.rbuf[c.r:c.w])
		c.r = 0
		if c.w < len(c.rbuf) {
			return
		}
	}
	nb := make([]byte, min(2*len(c.rbuf), limit+bufferSize))
	copy(nb, c.rbuf[:c.w])
	putBuffer(c.rb)
	c.rb = &buffer{b: nb[:0]}
	c.rbuf = nb
}

// fillBody reads more body bytes into the space after the header section.
func (c *conn) fillBody() error {
	if c.r == c.w {
		c.r, c.w = c.bodyBase, c.bodyBase
	}
	if len(c.rbuf)-c.w < 512 {
		// The header section left no room: the header strings alias
		// the old buffer, which stays alive as long as they do.
		nb := make([]byte, len(c.rbuf)+bufferSize)
		copy(nb, c.rbuf[:c.w])
		c.rb = &buffer{b: nb[:0]}
		c.rbuf = nb
	}
	n, err := c.read(c.rbuf[c.w:])
	c.w += n
	if n > 0 {
		return nil
	}
	if err == io.EOF || err == nil {
		err = io.ErrUnexpectedEOF
	}
	return err
}

func (c *conn) acquireRead() {
	if c.rb == nil {
		c.rb = getBuffer()
		c.rbuf = c.rb.b[:cap(c.rb.b)]
	}
}

func (c *conn) releaseRead() {
	if c.rb != nil && c.r == c.w {
		putBuffer(c.rb)
		c.rb, c.rbuf = nil, nil
		c.r, c.w = 0, 0
	}
}

// reject answers a request the parser refused and closes the connection.
func (c *conn) reject(perr *ProtocolError) {
	c.srv.logDebug("bad request", perr, c)
	c.writeWithin(errorResponse(perr.Status), time.Second)
	c.lingerClose()
}

// lingerTime is how long lingerClose reads what the client still sends
// after an error response.
const lingerTime = 500 * time.Millisecond

// lingerClose closes the write side and reads (and discards) for a moment
// before closing, so the response is not destroyed by a TCP reset when the
// client's unread bytes hit a closed socket (RFC 9112 §9.6).
func (c *conn) lingerClose() {
	type closeWriter interface{ CloseWrite() error }
	if c.nc == nil {
		c.shutdownFD()
	} else if cw, ok := c.nc.(closeWriter); ok {
		cw.CloseWrite()
	} else {
		return
	}
	deadline := time.Now().Add(lingerTime)
	var scratch [512]byte
	for range 128 {
		if _, err := c.readBy(scratch[:], deadline); err != nil {
			break
		}
	}
}

// readBy reads into p, giving up at deadline (error paths).
func (c *conn) readBy(p []byte, deadline time.Time) (int, error) {
	if c.nc == nil {
		return c.readFD(p, deadline)
	}
	c.nc.SetReadDeadline(deadline)
	return c.nc.Read(p)
}

// writeWithin writes p, giving up after d (error responses).
func (c *conn) writeWithin(p []byte, d time.Duration) {
	deadline := time.Now().Add(d)
	if c.nc == nil {
		c.writeFD(p, deadline)
		return
	}
	c.nc.SetWriteDeadline(deadline)
	c.nc.Write(p)
}

// interrupt makes the I/O of a killed connection fail at once.
func (c *conn) interrupt() {
	if c.nc != nil {
		c.nc.SetDeadline(time.Unix(1, 0))
	} else if w := c.waiter.Load(); w != nil {
		w.wake()
	}
}

// closeSocket closes the connection's socket (after unregister).
func (c *conn) closeSocket() {
	if c.nc != nil {
		c.nc.Close()
	} else {
		c.closeFD()
	}
}

// errorResponse is the complete response for a refused request.
func errorResponse(status int) []byte {
	switch status {
	case 408:
		return resp408
	case 414:
		return resp414
	case 417:
		return resp417
	case 431:
		return resp431
	case 501:
		return resp501
	case 505:
		return resp505
	}
	return resp400
}

func makeErrorResponse(status int, text string) []byte {
	body := text + "\n"
	return []byte("HTTP/1.1 " + text + "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: " +
		itoa(len(body)) + "\r\n\r\n" + body)
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

var (
	resp400 = makeErrorResponse(400, "400 Bad Request")
	resp408 = makeErrorResponse(408, "408 Request Timeout")
	resp414 = makeErrorResponse(414, "414 URI Too Long")
	resp417 = makeErrorResponse(417, "417 Expectation Failed")
	resp431 = makeErrorResponse(431, "431 Request Header Fields Too Large")
	resp501 = makeErrorResponse(501, "501 Not Implemented")
	resp505 = makeErrorResponse(505, "505 HTTP Version Not Supported")
)

// detach takes the connection out of the engine's hands for a hijack.
func (c *conn) detach() error {
	if !c.state.CompareAndSwap(connActive, connHijacked) {
		return net.ErrClosed
	}
	c.unregister()
	c.srv.forget(c)
	return nil
}

// close ends the connection once.
func (c *conn) close() {
	if c.closed.Swap(true) {
		return
	}
	c.state.Store(connClosed)
	if c.act != nil {
		c.act.ctx.Cancel()
	}
	c.unregister()
	c.closeSocket()
	c.releaseActive()
	if c.rb != nil {
		putBuffer(c.rb)
		c.rb, c.rbuf = nil, nil
	}
	c.srv.forget(c)
}

// peerClosed is called from the IO once c.reg reports the client hanging
// up: it closed its side of the connection, or (reg.Reset) the connection
// was reset or failed.
func (c *conn) peerClosed() {
	if c.bodyDone.Load() && c.state.Load() == connActive {
		c.hangUp()
	}
}

// bodyCompleted records that the request was read in full; a client that
// hung up before is gone for good.
func (c *conn) bodyCompleted() {
	c.bodyDone.Store(true)
	if c.reg.HungUp() {
		c.hangUp()
	}
}

// hangUp ends the exchange of a client that hung up after sending its
// request: its context is cancelled, as net/http's background read does,
// so a handler stops waiting for an upstream. A client that only closed its
// sending side (a half-close, FIN) may still be reading: what the handler
// writes is sent, then the connection closes (keepAlive). A reset
// connection can take nothing more, and its I/O fails at once.
func (c *conn) hangUp() {
	if c.reg.Reset() {
		c.killed.Store(true)
	}
	c.cancelExchange()
}

// closeIfIdle closes c if it is idle, on behalf of someone other than its
// owner (Shutdown). It reports whether it did.
func (c *conn) closeIfIdle() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.state.CompareAndSwap(connIdle, connClosed) {
		return false
	}
	c.close()
	return true
}

// kill ends an active connection from outside (Shutdown past its
// deadline): the handler's context is cancelled and the connection's reads
// and writes fail at once; its owner then closes it.
func (c *conn) kill() {
	c.killed.Store(true)
	c.cancelExchange()
	c.interrupt()
}

// serveGoroutine runs the connection on its own goroutine: TLS connections,
// and plain ones where no poller is available.
func (c *conn) serveGoroutine() {
	defer func() {
		if c.state.Load() != connHijacked {
			c.close()
		}
	}()
	if tc, ok := c.nc.(*tls.Conn); ok {
		if !c.handshake(tc) {
			return
		}
		if c.kind == kindH2 {
			c.serveH2()
			return
		}
		if !c.srv.o.HTTP1 {
			return
		}
	}
	// Waiting for the first request is idling too: no buffer, the idle
	// timeout, and Shutdown may close the connection at once.
	for c.waitIdle() {
		switch c.serveReady() {
		case outIdle:
		case outH2:
			c.serveH2()
			return
		default:
			return
		}
	}
}

// waitIdle blocks until the next request's first byte, holding no read
// buffer, for up to the idle timeout.
func (c *conn) waitIdle() bool {
	if !c.state.CompareAndSwap(connActive, connIdle) {
		return false
	}
	if c.srv.drained.Load() {
		return false
	}
	if d := c.srv.o.IdleTimeout; d > 0 {
		c.nc.SetReadDeadline(time.Now().Add(d))
	} else {
		c.nc.SetReadDeadline(time.Time{})
	}
	n, err := c.nc.Read(c.one[:])
	if !c.state.CompareAndSwap(connIdle, connActive) || n == 0 || err != nil && n == 0 {
		return false
	}
	c.acquireRead()
	c.rbuf[0] = c.one[0]
	c.r, c.w = 0, 1
	return true
}

// handshake completes TLS and records the negotiated protocol.
func (c *conn) handshake(tc *tls.Conn) bool {
	if d := c.srv.o.ReadHeaderTimeout; d > 0 {
		tc.SetDeadline(time.Now().Add(d))
	}
	if err := tc.HandshakeContext(context.Background()); err != nil {
		c.srv.logDebug("TLS handshake failed", err, c)
		return false
	}
	tc.SetDeadline(time.Time{})
	st := tc.ConnectionState()
	c.tls = &st
	c.watchTLS(tc)
	c.kind = kindTLS
	if st.NegotiatedProtocol == "h2" {
		c.kind = kindH2
	}
	c.srv.opened(c)
	return true
}
