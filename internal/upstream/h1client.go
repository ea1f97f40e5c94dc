package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/epoll"
	"github.com/penstock-dev/penstock/internal/exchange"
)

// H1Client is penstock's HTTP/1.1 client for one endpoint: a pool of
// keep-alive connections and the code that writes requests to them and
// parses responses from them.
//
// Unlike net/http's Transport, which runs a reader and a writer goroutine
// per connection and hands every request and response across channels, the
// goroutine that serves the client request writes the upstream request and
// reads the response itself, and nothing is allocated per request once the
// pool is warm: the request head is written from penstock's own header list
// into the connection's buffer, and the response head is parsed into a
// reused exchange.Header.
type H1Client struct {
	e           *Endpoint
	tls         *tls.Config
	maxIdle     int
	maxConns    int
	idleTimeout time.Duration
	// io watches plain connections for hang-ups; nil means epoll.Shared().
	io *epoll.IO

	mu   sync.Mutex
	idle []*h1Conn // a stack: the most recently used connection is reused first
	// open counts connections dialing, busy, idle or upgraded, against
	// maxConns.
	open int
	// waiters are requests waiting for a connection when open reached
	// maxConns. Each gets a connection, or nil meaning "a slot is free,
	// dial".
	waiters    []chan *h1Conn
	sweep      *time.Timer
	sweepArmed bool

	// probes counts the reads that checked an idle connection before its
	// reuse, for tests.
	probes atomic.Int64
}

func newH1Client(e *Endpoint, u *config.Upstream, tlsConf *tls.Config, io *epoll.IO) *H1Client {
	c := &H1Client{
		e:           e,
		io:          io,
		maxIdle:     u.Pool.MaxIdlePerEndpoint,
		maxConns:    u.Pool.MaxPerEndpoint,
		idleTimeout: u.Pool.IdleTimeout.D(),
	}
	if c.maxIdle <= 0 {
		c.maxIdle = config.DefaultMaxIdlePerEndpoint
	}
	if tlsConf != nil {
		c.tls = tlsConf.Clone()
		c.tls.NextProtos = []string{"http/1.1"}
		if c.tls.ServerName == "" {
			if e.network == "unix" {
				c.tls.ServerName = "localhost"
			} else if host, _, err := net.SplitHostPort(e.dialAddr); err == nil {
				c.tls.ServerName = host
			}
		}
	}
	return c
}

// RoundTrip implements Client. It sends req on a pooled or new connection
// and reads the response head into resp.
//
// A connection taken from the pool may have been closed by the upstream
// while idle (the race RFC 9112 §9.3.1 asks clients to expect); when such a
// reused connection fails before any byte of a response arrived, the
// request is sent again on another connection if that is safe: the request
// is idempotent (RFC 9110 §9.2.2) and no byte of its body was consumed, or
// the upstream accepted no byte of the request at all. A proxy must not
// retry a non-idempotent request that may have been applied (RFC 9112
// §9.3.1). Like net/http's Transport, it goes on while the connection that
// failed was a reused one: every pooled connection may have been closed at
// once (an upstream restart), and a new connection failing ends it. A
// timeout is not such a failure (the upstream is slow, not gone). A 408
// read on a reused connection counts as such a failure: the upstream timed
// the connection out; when sending again is not safe, the 408 is returned.
func (c *H1Client) RoundTrip(ctx context.Context, req *Request, resp *Response) error {
	for {
		// A request cancelled before it was sent (an HTTP/2 client's
		// rapid reset) takes no connection from the pool: closing one for
		// it would make every reset cost the upstream a new connection.
		if err := ctx.Err(); err != nil {
			return c.e.errorf(ctxKind(ctx), context.Cause(ctx))
		}
		conn, reused, err := c.get(ctx, req)
		if err != nil {
			return err
		}
		err = c.send(ctx, conn, req, resp)
		if err == errNotSent {
			return c.e.errorf(ctxKind(ctx), context.Cause(ctx))
		}
		if err == nil && resp.Status != 408 {
			return nil
		}
		// The upstream may not have acted on the request, and sending it
		// again is harmless.
		safe := reused && req.BodyRead == 0 && (conn.cw.n == 0 || req.idempotent())
		if err == nil {
			// A 408 on a reused connection, before any of the response
			// went to the client, says the upstream timed the connection
			// out as the request arrived: like a connection closed
			// before the response, and retried like one (net/http's
			// Transport does the same). RFC 9110 §15.5.9 lets a client
			// repeat the request on a new connection. When that is not
			// safe, the 408 is relayed and the client decides.
			if !safe {
				return nil
			}
			resp.Discard()
			continue
		}
		gotByte := resp.gotByte
		resp.Discard()
		var bre *bodyReadError
		switch {
		case ctx.Err() != nil:
			return c.e.errorf(ctxKind(ctx), context.Cause(ctx))
		case errors.As(err, &bre):
			return c.e.errorf(KindClientBody, bre.err)
		}
		kind := exchangeKind(err, gotByte)
		if safe && kind == KindReset {
			// Only a connection that broke is the stale-connection race;
			// a response header timeout means a slow upstream, and
			// sending again would double its wait and its load.
			continue
		}
		return c.e.errorf(kind, err)
	}
}

// errNotSent is send's report of a context that ended before the request
// was written: the connection went back to the pool unused.
var errNotSent = errors.New("request not sent")

// ctxKind is the kind of a failure caused by the request's context ending.
func ctxKind(ctx context.Context) ErrorKind {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return KindTimeout
	}
	return KindCanceled
}

// exchangeKind classifies a failure on a connection that was made.
func exchangeKind(err error, gotByte bool) ErrorKind {
	var pe *ProtocolError
	switch {
	case errors.Is(err, ErrResponseHeaderTimeout), isTimeout(err):
		return KindTimeout
	case errors.As(err, &pe):
		return KindProtocol
	case !gotByte:
		return KindReset
	}
	return KindProtocol
}

// send writes req on conn and reads the first response head that is not a
// 100 (Continue).
func (c *H1Client) send(ctx context.Context, conn *h1Conn, req *Request, resp *Response) error {
	resp.c, resp.req, resp.conn, resp.std = c, req, conn, nil
	resp.gotByte, resp.bodySent, resp.keepAlive = false, false, false
	resp.watch = ctxWatch{}
	if ctx.Done() != nil {
		if ctx.Err() != nil {
			// Nothing was written: the connection is as good as it was.
			resp.conn = nil
			c.put(conn)
			return errNotSent
		}
		// The request is served on this goroutine, so nothing else would
		// notice the context ending: let it expire the connection's
		// deadlines, which fails the blocked read or write at once.
		resp.watch.start(ctx, conn.abort)
	}
	var hd time.Time
	hasBody := req.Body != nil && req.ContentLength != 0
	if !hasBody {
		hd = headDeadline(req)
		// Set before the request is written, so the write can go on to
		// wait for the response (rawSocket.writeAwait). A request with
		// a body sets it after the body: the upload is not the
		// response's delay.
		conn.setHeadDeadline(hd, headGrain(req))
	}
	conn.setWriteDeadline(req.Deadline)
	err := conn.writeRequest(req, resp)
	if hasBody {
		hd = headDeadline(req)
	}
	if err != nil {
		var bre *bodyReadError
		if errors.As(err, &bre) {
			return err
		}
		// The upstream may have answered and closed without reading the
		// whole body (413, 401): relay that answer rather than the broken
		// pipe. The connection is not reused.
		if conn.cw.n > 0 && c.readHeadBy(resp, hd) == nil {
			resp.keepAlive = false
			return nil
		}
		return err
	}
	return c.readHeadBy(resp, hd)
}

// headDeadline is when the response head must have arrived: the response
// header timeout from now, or the request's deadline if sooner.
func headDeadline(req *Request) time.Time {
	hd := req.Deadline
	if req.ResponseHeaderTimeout > 0 {
		t := time.Now().Add(req.ResponseHeaderTimeout)
		if hd.IsZero() || t.Before(hd) {
			hd = t
		}
	}
	return hd
}

// readFinalHead reads response heads until one that is not 100 Continue,
// under the response header timeout.
func (c *H1Client) readFinalHead(resp *Response) error {
	return c.readHeadBy(resp, headDeadline(resp.req))
}

// readHeadBy is readFinalHead with the head's deadline hd.
func (c *H1Client) readHeadBy(resp *Response, hd time.Time) error {
	conn, req := resp.conn, resp.req
	if conn == nil {
		return errors.New("upstream response: connection already released")
	}
	conn.setHeadDeadline(hd, headGrain(req))
	for {
		err := resp.readHead(conn.br, req.Method)
		if err != nil {
			// Whatever follows on the connection cannot be trusted.
			resp.err = err
			if errors.Is(err, os.ErrDeadlineExceeded) && req.ResponseHeaderTimeout > 0 && !hd.Equal(req.Deadline) {
				return ErrResponseHeaderTimeout
			}
			if err == io.EOF {
				return io.ErrUnexpectedEOF
			}
			return err
		}
		if resp.Status != 100 {
			break
		}
	}
	conn.setBodyDeadline(req.Deadline)
	return nil
}

// headGrain is how late a response head's deadline may fire
// (h1Conn.setHeadDeadline): an eighth of the response header timeout, at
// most 100 ms; none without that timeout (the request's own deadline is
// then kept exactly).
func headGrain(req *Request) time.Duration {
	return min(req.ResponseHeaderTimeout/8, 100*time.Millisecond)
}

// Discard ends a failed or abandoned exchange: the connection is closed,
// never pooled.
func (r *Response) Discard() {
	if r.std != nil {
		r.std.close(r)
		return
	}
	r.watch.end()
	if r.conn != nil {
		r.conn.close()
		r.conn = nil
	}
}

// get returns an idle connection (reused = true) or dials a new one,
// waiting for a free slot when the endpoint is at max_per_endpoint.
func (c *H1Client) get(ctx context.Context, req *Request) (conn *h1Conn, reused bool, err error) {
	for {
		c.mu.Lock()
		if n := len(c.idle); n > 0 {
			conn = c.idle[n-1]
			c.idle[n-1] = nil
			c.idle = c.idle[:n-1]
			c.mu.Unlock()
			now := time.Now().UnixNano()
			if c.idleTimeout > 0 && now-conn.idleSince > int64(c.idleTimeout) || !conn.idleAlive(now) {
				conn.close()
				continue
			}
			return conn, true, nil
		}
		if c.maxConns <= 0 || c.open < c.maxConns {
			c.open++
			c.mu.Unlock()
			conn, err = c.dial(ctx, req)
			return conn, false, err
		}
		ch := make(chan *h1Conn, 1)
		c.waiters = append(c.waiters, ch)
		c.mu.Unlock()
		// Waiting is the slow path: a timer here costs nothing per request.
		var expired <-chan time.Time
		if !req.Deadline.IsZero() {
			t := time.NewTimer(time.Until(req.Deadline))
			defer t.Stop()
			expired = t.C
		}
		var waitErr error
		select {
		case conn = <-ch:
			if conn != nil {
				return conn, true, nil
			}
			// A slot was handed over.
			conn, err = c.dial(ctx, req)
			return conn, false, err
		case <-ctx.Done():
			waitErr = context.Cause(ctx)
		case <-expired:
			waitErr = context.DeadlineExceeded
		}
		c.giveUp(ch)
		// Not a connect failure: the endpoint is busy, not failing, and
		// another endpoint would not be tried any sooner.
		kind := KindTimeout
		if ctx.Err() != nil {
			kind = ctxKind(ctx)
		}
		return nil, false, c.e.errorf(kind, fmt.Errorf("waiting for a connection (max_per_endpoint %d): %w",
			c.maxConns, waitErr))
	}
}

// giveUp withdraws a waiter. A connection or slot handed over meanwhile is
// passed on.
func (c *H1Client) giveUp(ch chan *h1Conn) {
	c.mu.Lock()
	for i, w := range c.waiters {
		if w == ch {
			c.waiters = append(c.waiters[:i], c.waiters[i+1:]...)
			break
		}
	}
	c.mu.Unlock()
	select {
	case conn := <-ch:
		if conn != nil {
			c.put(conn)
		} else {
			c.release()
		}
	default:
	}
}

// dial opens a connection in a slot already counted in open.
func (c *H1Client) dial(ctx context.Context, req *Request) (*h1Conn, error) {
	d := net.Dialer{KeepAlive: 30 * time.Second, Timeout: req.ConnectTimeout, Deadline: req.Deadline}
	nc, err := d.DialContext(ctx, c.e.network, c.e.dialAddr)
	if err != nil {
		c.release()
		return nil, c.e.errorf(dialKind(err), fmt.Errorf("dial: %w", err))
	}
	socket := nc
	nc = c.e.track(nc)
	if c.tls != nil {
		tc := tls.Client(nc, c.tls)
		hctx := ctx
		if req.ConnectTimeout > 0 {
			var cancel context.CancelFunc
			hctx, cancel = context.WithTimeout(ctx, req.ConnectTimeout)
			defer cancel()
		}
		if err := tc.HandshakeContext(hctx); err != nil {
			nc.Close()
			c.release()
			// A handshake that fails is a failure to connect: nothing was
			// sent, and the next endpoint may do better.
			return nil, c.e.errorf(dialKind(err), fmt.Errorf("tls handshake: %w", err))
		}
		nc = tc
	}
	return newH1Conn(c, nc, socket), nil
}

// put gives a connection whose exchange completed cleanly back to the pool.
func (c *H1Client) put(conn *h1Conn) {
	c.mu.Lock()
	if c.handOff(conn) {
		return
	}
	if len(c.idle) >= c.maxIdle {
		c.mu.Unlock()
		conn.close()
		return
	}
	conn.idleSince = time.Now().UnixNano()
	c.idle = append(c.idle, conn)
	if c.idleTimeout > 0 && !c.sweepArmed {
		c.sweepArmed = true
		if c.sweep == nil {
			c.sweep = time.AfterFunc(c.idleTimeout, c.sweepIdle)
		} else {
			c.sweep.Reset(c.idleTimeout)
		}
	}
	c.mu.Unlock()
}

// handOff gives conn (nil: a free slot) to the longest waiting request, if
// any, and then unlocks mu, which the caller holds. It reports whether it
// did; mu stays locked otherwise.
func (c *H1Client) handOff(conn *h1Conn) bool {
	if len(c.waiters) == 0 {
		return false
	}
	w := c.waiters[0]
	c.waiters = append(c.waiters[:0], c.waiters[1:]...)
	c.mu.Unlock()
	w <- conn
	return true
}

// release frees the slot of a closed connection, handing it to a waiter.
func (c *H1Client) release() {
	c.mu.Lock()
	if c.handOff(nil) {
		return
	}
	c.open--
	c.mu.Unlock()
}

// sweepIdle closes connections idle for longer than idle_timeout. The
// oldest sit at the bottom of the stack.
func (c *H1Client) sweepIdle() {
	now := time.Now().UnixNano()
	var expired []*h1Conn
	c.mu.Lock()
	k := 0
	for k < len(c.idle) && now-c.idle[k].idleSince >= int64(c.idleTimeout) {
		k++
	}
	if k > 0 {
		expired = append(expired, c.idle[:k]...)
		n := copy(c.idle, c.idle[k:])
		clear(c.idle[n:])
		c.idle = c.idle[:n]
	}
	c.sweepArmed = len(c.idle) > 0
	if c.sweepArmed {
		c.sweep.Reset(time.Duration(c.idle[0].idleSince + int64(c.idleTimeout) - now))
	}
	c.mu.Unlock()
	for _, conn := range expired {
		conn.close()
	}
}

// CloseIdle closes the idle connections.
func (c *H1Client) CloseIdle() {
	c.mu.Lock()
	idle := c.idle
	c.idle = nil
	c.mu.Unlock()
	for _, conn := range idle {
		conn.close()
	}
}

// Close implements Client: a native client owns nothing beyond its
// connections, so it closes the idle ones.
func (c *H1Client) Close() { c.CloseIdle() }

// IdleConns reports the connections waiting in the pool.
func (c *H1Client) IdleConns() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.idle)
}

// ctxWatch fails a connection's blocked read or write when the request's
// context ends. The native engine's contexts are watched without
// allocating (exchange.Watcher); others through context.AfterFunc.
type ctxWatch struct {
	w     exchange.Watcher
	token uint64
	stop  func() bool
}

func (s *ctxWatch) start(ctx context.Context, f func()) {
	if w, ok := ctx.(exchange.Watcher); ok {
		s.w, s.token = w, w.Watch(f)
		return
	}
	s.stop = context.AfterFunc(ctx, f)
}

func (s *ctxWatch) active() bool { return s.w != nil || s.stop != nil }

// end removes the watch. It reports false if the function ran (or is
// running): the context ended meanwhile.
func (s *ctxWatch) end() bool {
	ok := true
	switch {
	case s.w != nil:
		ok = s.token != 0 && s.w.Unwatch(s.token)
	case s.stop != nil:
		ok = s.stop()
	}
	*s = ctxWatch{}
	return ok
}
