package h2

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/penstock-dev/penstock/internal/engine"
	"github.com/penstock-dev/penstock/internal/engine/watchctx"
	"github.com/penstock-dev/penstock/internal/exchange"
)

// stream is one request and its response. Streams are pooled: the state
// of a finished one, its buffers and its timer serve the next.
//
// It is the exchange's ResponseWriter (with TrailerWriter and Pusher) and
// its request's TrailerReader.
type stream struct {
	c         *conn
	id        uint32
	pushed    bool
	pushLimit int64
	start     time.Time
	method    string
	authority string

	// Under c.mu.
	sendWindow, recvWindow, recvUnacked int64
	// declLen is the request's Content-Length (-1: none); received
	// counts the body bytes that arrived.
	declLen, received int64
	// remoteEnded: the client sends nothing more on the stream;
	// peerReset: because it reset it.
	remoteEnded, peerReset bool
	// waiting: the handler waits for window.
	waiting bool

	// aborted: the stream was reset (by either side) or its connection
	// ended; nothing more is written on it.
	aborted atomic.Bool
	// eventStream: the response is a server-sent event stream, which a
	// binary upgrade's drain lets run past drain_timeout.
	eventStream atomic.Bool
	ctx         *watchctx.Ctx
	wakeCh      chan struct{}
	timer       *time.Timer

	body body

	// The request as the reader decoded it, for serve: its head, its
	// header fields (a copy the stream owns) and whether it came whole.
	h       head
	fields  []hpack.HeaderField
	ended   bool
	serveFn func() // st.serve, made once per pooled stream

	// The response; the handler's goroutine only.
	hdr, trailer exchange.Header
	status       int
	wroteHeader  bool
	headerSent   bool
	noBody       bool
	wbuf         *[]byte
	written      int64
	overLimit    bool
	stalledSince time.Time
	stallCounted bool
	cookies      []byte
}

var streamPool = sync.Pool{New: func() any {
	st := &stream{wakeCh: make(chan struct{}, 1)}
	st.body.st = st
	st.body.signal = make(chan struct{}, 1)
	return st
}}

// wbufSize is how much response body a stream gathers before sending it:
// one DATA frame of the default size.
const wbufSize = 16 << 10

var wbufPool = sync.Pool{New: func() any {
	b := make([]byte, 0, wbufSize)
	return &b
}}

func getStream(c *conn, id uint32) *stream {
	st := streamPool.Get().(*stream)
	if st.serveFn == nil {
		// Made here, not in the pool's New: serve leads back to the
		// pool (putStream), an initialization cycle.
		st.serveFn = st.serve
	}
	st.c, st.id = c, id
	st.start = time.Now()
	st.declLen = -1
	if st.ctx == nil || st.ctx.Err() != nil {
		st.ctx = watchctx.New()
	}
	return st
}

func putStream(st *stream) {
	st.c = nil
	st.id, st.pushed, st.pushLimit = 0, false, 0
	st.method, st.authority = "", ""
	st.sendWindow, st.recvWindow, st.recvUnacked = 0, 0, 0
	st.declLen, st.received = -1, 0
	st.remoteEnded, st.peerReset, st.waiting = false, false, false
	st.aborted.Store(false)
	st.eventStream.Store(false)
	select {
	case <-st.wakeCh:
	default:
	}
	st.body.reset()
	st.hdr.Reset()
	st.trailer.Reset()
	st.status, st.wroteHeader, st.headerSent, st.noBody = 0, false, false, false
	if st.wbuf != nil {
		*st.wbuf = (*st.wbuf)[:0]
		wbufPool.Put(st.wbuf)
		st.wbuf = nil
	}
	st.written, st.overLimit = 0, false
	st.stalledSince, st.stallCounted = time.Time{}, false
	st.cookies = st.cookies[:0]
	clear(st.fields)
	st.fields, st.h, st.ended = st.fields[:0], head{}, false
	streamPool.Put(st)
}

func (st *stream) wake() {
	select {
	case st.wakeCh <- struct{}{}:
	default:
	}
}

// abort ends the stream: its context is cancelled, its body reads fail
// with err and writes stop. From outside the handler's goroutine it is
// called under c.mu, so that the stream is not recycled meanwhile.
func (st *stream) abort(err error) {
	if !st.aborted.CompareAndSwap(false, true) {
		return
	}
	st.body.closeWith(err)
	st.ctx.Cancel()
	st.wake()
}

// reset aborts the stream and tells the client with RST_STREAM.
func (st *stream) reset(code http2.ErrCode) {
	if st.aborted.Load() {
		return
	}
	st.abort(errStreamReset)
	c := st.c
	if c.lockWrite() {
		c.fr.WriteRSTStream(st.id, code)
		c.unlockFlush()
	}
}

// serve runs the handler for a request the client opened.
func (st *stream) serve() {
	c, h, ended := st.c, st.h, st.ended
	x := exchange.Acquire()
	r := &x.Req
	r.Proto = exchange.HTTP2
	r.Method = h.method
	r.Scheme = c.scheme
	r.Host = h.authority
	if i := strings.IndexByte(h.path, '?'); i >= 0 {
		r.Path, r.Query = h.path[:i], h.path[i+1:]
	} else {
		r.Path = h.path
	}
	st.method, st.authority = h.method, h.authority
	cookies := 0
	for _, hf := range st.fields {
		switch {
		case len(hf.Name) > 0 && hf.Name[0] == ':':
		case hf.Name == "host":
			if r.Host == "" {
				r.Host = hf.Value
			}
		case hf.Name == "cookie":
			// Cookies split over fields are one field again for
			// HTTP/1.1 upstreams (RFC 9113 §8.2.3).
			if cookies > 0 {
				st.cookies = append(st.cookies, "; "...)
			}
			st.cookies = append(st.cookies, hf.Value...)
			cookies++
		default:
			r.Header.Add(hf.Name, hf.Value)
		}
	}
	if cookies > 0 {
		r.Header.Add("cookie", unsafeString(st.cookies))
	}
	r.ContentLength = st.declLen
	r.Body = &st.body
	if ended {
		r.Body, r.ContentLength = http.NoBody, 0
	} else if r.ContentLength < 0 && bodyUnexpected(h.method) && !st.body.peek() {
		// A GET that declared no length almost always has none: wait
		// for its first byte or its end, so that it is not forwarded
		// with a chunked empty body (strict upstreams refuse that).
		r.Body, r.ContentLength = http.NoBody, 0
	}
	r.Trailer = st
	r.RemoteAddr = c.remote
	r.TLS = c.tls
	st.run(x)
}

// bodyUnexpected reports the methods whose requests have no body in
// practice (RFC 9110 §9.3 gives one no meaning for them).
func bodyUnexpected(method string) bool {
	switch method {
	case "GET", "HEAD", "DELETE", "OPTIONS", "TRACE":
		return true
	}
	return false
}

// run hands x to the pipeline and completes the response.
func (st *stream) run(x *exchange.Exchange) {
	c := st.c
	x.W = st
	x.Ctx = st.ctx
	x.Start = st.start
	defer func() {
		if p := recover(); p != nil {
			c.srv.debug("HTTP/2 handler panicked", c, "stream", st.id, "panic", p)
			st.reset(http2.ErrCodeInternal)
		}
		exchange.Release(x)
		st.unstall()
		c.streamDone(st)
		putStream(st)
	}()
	c.srv.h.ServeExchange(x)
	st.finish(x.State.Aborted || st.overLimit)
}

// serveStatus answers a request the engine refuses itself.
func (st *stream) serveStatus(code int) {
	defer func() {
		st.c.streamDone(st)
		putStream(st)
	}()
	st.WriteHeader(code)
	st.finish(false)
}

// finish completes the response once the handler has returned: what is
// buffered, then END_STREAM (on the last DATA frame, or on the trailers).
func (st *stream) finish(aborted bool) {
	if st.aborted.Load() {
		return
	}
	if aborted {
		st.reset(http2.ErrCodeInternal)
		return
	}
	if !st.wroteHeader {
		st.WriteHeader(http.StatusOK)
	}
	trailers := st.trailer.Len() > 0
	pending := st.pending()
	if !st.headerSent && len(pending) == 0 && !trailers {
		st.sendHead(true)
		st.c.flushSoon()
	} else {
		if err := st.sendHead(false); err != nil {
			return
		}
		if len(pending) > 0 || !trailers {
			if err := st.sendData(pending, !trailers); err != nil {
				return
			}
			st.clearPending()
		}
		if trailers {
			c := st.c
			if !c.lockWrite() {
				return
			}
			c.writeHeaderBlock(st.id, 0, &st.trailer, true)
			c.unlockFlushSoon()
		}
	}
	st.c.mu.Lock()
	open := !st.remoteEnded
	st.c.mu.Unlock()
	if open {
		// The response is complete but the client still sends: it
		// need not (RFC 9113 §8.1).
		st.reset(http2.ErrCodeNo)
	}
}

func (c *conn) flush() {
	if c.lockWrite() {
		c.unlockFlush()
	}
}

// flushSoon is flush by unlockFlushSoon.
func (c *conn) flushSoon() {
	if c.lockWrite() {
		c.unlockFlushSoon()
	}
}

func (st *stream) pending() []byte {
	if st.wbuf == nil {
		return nil
	}
	return *st.wbuf
}

func (st *stream) clearPending() {
	if st.wbuf != nil {
		*st.wbuf = (*st.wbuf)[:0]
	}
}

// sendHead writes the response's HEADERS frame if it has not gone yet; it
// is flushed with what follows.
func (st *stream) sendHead(endStream bool) error {
	if st.headerSent {
		return nil
	}
	if st.aborted.Load() {
		return errStreamReset
	}
	st.headerSent = true
	c := st.c
	if !c.lockWrite() {
		return errConnClosed
	}
	err := c.writeHeaderBlock(st.id, st.status, &st.hdr, endStream)
	c.wmu.Unlock()
	return err
}

// sendData writes p as DATA frames as the flow-control windows allow, the
// last with END_STREAM if end, and has them flushed soon (flush.go).
func (st *stream) sendData(p []byte, end bool) error {
	c := st.c
	for {
		n := 0
		if len(p) > 0 {
			var err error
			if n, err = st.takeWindow(len(p)); err != nil {
				return err
			}
		}
		last := end && n == len(p)
		if !c.lockWrite() {
			return errConnClosed
		}
		if st.aborted.Load() {
			c.wmu.Unlock()
			return errStreamReset
		}
		if err := c.fr.WriteData(st.id, last, p[:n]); err != nil {
			c.writeFailed(err)
			c.wmu.Unlock()
			return err
		}
		p = p[n:]
		if len(p) == 0 {
			return c.unlockFlushSoon()
		}
		c.wmu.Unlock()
	}
}

// takeWindow waits until the stream and the connection may send, and
// takes up to want bytes (at most a frame) of both windows.
func (st *stream) takeWindow(want int) (int, error) {
	c := st.c
	maxFrame := int64(c.peerMaxFrame.Load())
	c.mu.Lock()
	for {
		if st.aborted.Load() || c.closed {
			c.mu.Unlock()
			return 0, errStreamReset
		}
		if n := min(int64(want), st.sendWindow, c.sendWindow, maxFrame); n > 0 {
			st.sendWindow -= n
			c.sendWindow -= n
			if st.waiting {
				st.waiting = false
				c.waiting--
			}
			c.mu.Unlock()
			st.unstall()
			return int(n), nil
		}
		if !st.waiting {
			st.waiting = true
			c.waiting++
		}
		c.mu.Unlock()
		// What this stream wrote so far (its HEADERS) goes out first.
		c.flush()
		if err := st.stall(); err != nil {
			if c.srv.o.SendTimedOut != nil {
				c.srv.o.SendTimedOut()
			}
			c.srv.debug("HTTP/2 stream reset: no flow-control window", c, "stream", st.id, "error", err.Error())
			st.reset(http2.ErrCodeCancel)
			return 0, err
		}
		c.mu.Lock()
	}
}

// stall waits for a window update, the stream's end or its send timeout.
func (st *stream) stall() error {
	s := st.c.srv
	if !st.stallCounted {
		st.stallCounted = true
		st.stalledSince = time.Now()
		if s.stalled.Add(1) > int64(s.o.MaxStalledStreams) {
			return errTooManyStalls
		}
	}
	d := s.o.SendTimeout
	if d <= 0 {
		select {
		case <-st.wakeCh:
		case <-st.ctx.Done():
		}
		return nil
	}
	left := d - time.Since(st.stalledSince)
	if left <= 0 {
		return errSendTimeout
	}
	if st.timer == nil {
		st.timer = time.NewTimer(left)
	} else {
		st.timer.Reset(left)
	}
	select {
	case <-st.wakeCh:
	case <-st.ctx.Done():
	case <-st.timer.C:
	}
	st.timer.Stop()
	return nil
}

// unstall ends a stall: the stream made progress or ended.
func (st *stream) unstall() {
	if st.stallCounted {
		st.stallCounted = false
		st.stalledSince = time.Time{}
		st.c.srv.stalled.Add(-1)
	}
}

// Header implements exchange.ResponseWriter.
func (st *stream) Header() *exchange.Header { return &st.hdr }

// WriteHeader implements exchange.ResponseWriter. An informational status
// (103 Early Hints) is sent at once; the final one with the first body
// bytes, or alone with END_STREAM if there are none.
func (st *stream) WriteHeader(status int) {
	if st.wroteHeader || st.aborted.Load() {
		return
	}
	if status < 200 {
		if status == http.StatusSwitchingProtocols || status < 100 {
			return // no protocol switch on HTTP/2
		}
		c := st.c
		if c.lockWrite() {
			c.writeHeaderBlock(st.id, status, &st.hdr, false)
			c.unlockFlush()
		}
		return
	}
	st.status = status
	st.wroteHeader = true
	if status == http.StatusOK {
		if ct, ok := st.hdr.Get("Content-Type"); ok && engine.IsEventStream(ct) {
			st.eventStream.Store(true)
		}
	}
	st.noBody = st.method == http.MethodHead || status == http.StatusNoContent || status == http.StatusNotModified
}

var errPushTooLarge = errors.New("h2: pushed response exceeds push.max_bytes")

// Write implements exchange.ResponseWriter.
func (st *stream) Write(p []byte) (int, error) {
	if !st.wroteHeader {
		st.WriteHeader(http.StatusOK)
	}
	if st.aborted.Load() {
		return 0, errStreamReset
	}
	if st.noBody {
		return len(p), nil
	}
	if st.pushLimit > 0 && st.written+int64(len(p)) > st.pushLimit {
		st.overLimit = true
		return 0, errPushTooLarge
	}
	st.written += int64(len(p))
	if st.wbuf == nil {
		st.wbuf = wbufPool.Get().(*[]byte)
	}
	if len(*st.wbuf)+len(p) <= wbufSize {
		*st.wbuf = append(*st.wbuf, p...)
		return len(p), nil
	}
	if err := st.sendHead(false); err != nil {
		return 0, err
	}
	if len(*st.wbuf) > 0 {
		if err := st.sendData(*st.wbuf, false); err != nil {
			return 0, err
		}
		st.clearPending()
	}
	if len(p) >= wbufSize {
		if err := st.sendData(p, false); err != nil {
			return 0, err
		}
	} else {
		*st.wbuf = append(*st.wbuf, p...)
	}
	return len(p), nil
}

// Flush implements exchange.ResponseWriter.
func (st *stream) Flush() error {
	if !st.wroteHeader {
		st.WriteHeader(http.StatusOK)
	}
	if err := st.sendHead(false); err != nil {
		return err
	}
	if p := st.pending(); len(p) > 0 {
		err := st.sendData(p, false)
		st.clearPending()
		return err
	}
	st.c.flushSoon()
	if st.aborted.Load() {
		return errStreamReset
	}
	return nil
}

// Hijack implements exchange.ResponseWriter: HTTP/2 has no connection to
// hand over.
func (st *stream) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return nil, nil, exchange.ErrNotHijackable
}

// Trailer implements exchange.TrailerWriter.
func (st *stream) Trailer() *exchange.Header { return &st.trailer }

// ReadTrailer implements exchange.TrailerReader.
func (st *stream) ReadTrailer(dst *exchange.Header) { st.body.readTrailer(dst) }

// maxPushes bounds the pushed streams open on one connection.
const maxPushes = 32

var (
	errPushRefused   = errors.New("h2: the client does not accept a push now")
	errPushRecursive = errors.New("h2: a pushed stream cannot push")
)

// Push implements exchange.Pusher (RFC 9113 §8.4): a PUSH_PROMISE on this
// stream, then the promised GET served through the pipeline on a stream
// of its own.
func (st *stream) Push(target string, maxBytes int64) error {
	if st.pushed {
		return errPushRecursive
	}
	if target == "" || target[0] != '/' || st.aborted.Load() {
		return errPushRefused
	}
	c := st.c
	c.mu.Lock()
	if !c.peerPush || c.goAway || c.closed || uint32(c.pushes) >= min(c.peerMaxStreams, maxPushes) {
		c.mu.Unlock()
		return errPushRefused
	}
	id := c.nextPushID
	c.nextPushID += 2
	ps := getStream(c, id)
	ps.pushed, ps.pushLimit = true, maxBytes
	ps.sendWindow = c.initialWindow
	ps.remoteEnded = true
	ps.method, ps.authority = http.MethodGet, st.authority
	c.streams[id] = ps
	c.pushes++
	c.mu.Unlock()
	if !c.lockWrite() {
		c.streamDone(ps)
		putStream(ps)
		return errConnClosed
	}
	c.hbuf.Reset()
	c.henc.WriteField(hpack.HeaderField{Name: ":method", Value: http.MethodGet})
	c.henc.WriteField(hpack.HeaderField{Name: ":scheme", Value: c.scheme})
	c.henc.WriteField(hpack.HeaderField{Name: ":authority", Value: st.authority})
	c.henc.WriteField(hpack.HeaderField{Name: ":path", Value: target})
	err := c.fr.WritePushPromise(http2.PushPromiseParam{StreamID: st.id, PromiseID: id, BlockFragment: c.hbuf.Bytes(), EndHeaders: true})
	if err != nil {
		c.writeFailed(err)
	}
	c.unlockFlush()
	if err != nil {
		c.streamDone(ps)
		putStream(ps)
		return err
	}
	// The target outlives the caller's buffers.
	go ps.servePush(strings.Clone(target))
	return nil
}

func (ps *stream) servePush(target string) {
	c := ps.c
	x := exchange.Acquire()
	r := &x.Req
	r.Proto = exchange.HTTP2
	r.Method = http.MethodGet
	r.Scheme = c.scheme
	r.Host = ps.authority
	if i := strings.IndexByte(target, '?'); i >= 0 {
		r.Path, r.Query = target[:i], target[i+1:]
	} else {
		r.Path = target
	}
	r.Body, r.ContentLength = http.NoBody, 0
	r.RemoteAddr = c.remote
	r.TLS = c.tls
	ps.run(x)
}

// body is a request body: DATA frames' payloads, copied in by the
// connection's reader, read by the handler. It holds at most the stream's
// flow-control window.
type body struct {
	st     *stream
	mu     sync.Mutex
	buf    []byte
	r      int
	err    error
	closed bool // the handler closed it: data is dropped
	trail  exchange.Header
	signal chan struct{}
}

func (b *body) notify() {
	select {
	case b.signal <- struct{}{}:
	default:
	}
}

// write keeps data for the handler and returns how much it kept.
func (b *body) write(data []byte) int {
	b.mu.Lock()
	if b.closed || b.err != nil {
		b.mu.Unlock()
		return 0
	}
	if b.r > 0 && len(b.buf)+len(data) > cap(b.buf) {
		n := copy(b.buf, b.buf[b.r:])
		b.buf, b.r = b.buf[:n], 0
	}
	b.buf = append(b.buf, data...)
	b.mu.Unlock()
	b.notify()
	return len(data)
}

func (b *body) closeWith(err error) {
	b.mu.Lock()
	if b.err == nil {
		b.err = err
	}
	b.mu.Unlock()
	b.notify()
}

func (b *body) setTrailers(fields []hpack.HeaderField) {
	b.mu.Lock()
	for _, f := range fields {
		b.trail.Add(f.Name, f.Value)
	}
	if b.err == nil {
		b.err = io.EOF
	}
	b.mu.Unlock()
	b.notify()
}

func (b *body) readTrailer(dst *exchange.Header) {
	b.mu.Lock()
	if b.err == io.EOF {
		b.trail.Range(func(name, value string) bool {
			dst.Add(name, value)
			return true
		})
	}
	b.mu.Unlock()
}

// peek waits for the body's first byte or its end, and reports whether
// there is a byte.
func (b *body) peek() bool {
	for {
		b.mu.Lock()
		data, err := b.r < len(b.buf), b.err
		b.mu.Unlock()
		if data {
			return true
		}
		if err != nil {
			return err != io.EOF
		}
		<-b.signal
	}
}

// Read implements io.Reader; what it returns is given back to the client
// as flow-control window.
func (b *body) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		b.mu.Lock()
		if b.r < len(b.buf) {
			n := copy(p, b.buf[b.r:])
			b.r += n
			if b.r == len(b.buf) {
				b.buf, b.r = b.buf[:0], 0
			}
			b.mu.Unlock()
			b.st.c.credit(b.st, n)
			return n, nil
		}
		if b.closed {
			b.mu.Unlock()
			return 0, http.ErrBodyReadAfterClose
		}
		if err := b.err; err != nil {
			b.mu.Unlock()
			return 0, err
		}
		b.mu.Unlock()
		<-b.signal
	}
}

// Close implements io.Closer: the data that arrives from now on is
// dropped.
func (b *body) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	n := b.dropLocked()
	b.mu.Unlock()
	b.st.c.credit(nil, n)
	return nil
}

// drop discards what is buffered and returns its length.
func (b *body) drop() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.dropLocked()
}

func (b *body) dropLocked() int {
	n := len(b.buf) - b.r
	b.buf, b.r = b.buf[:0], 0
	b.closed = true
	return n
}

func (b *body) reset() {
	b.mu.Lock()
	if cap(b.buf) > 64<<10 {
		b.buf = nil
	}
	b.buf, b.r = b.buf[:0], 0
	b.err = nil
	b.closed = false
	b.trail.Reset()
	b.mu.Unlock()
	select {
	case <-b.signal:
	default:
	}
}

func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}
