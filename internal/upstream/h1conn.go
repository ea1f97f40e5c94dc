package upstream

import (
	"bufio"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/penstock-dev/penstock/internal/epoll"
	"github.com/penstock-dev/penstock/internal/exchange"
)

// Buffer sizes per upstream connection, allocated once when it is dialed.
const (
	// connReadBuffer holds a response head; a single head line longer than
	// this is refused (maxResponseHeadBytes bounds the whole head).
	connReadBuffer  = 16 << 10
	connWriteBuffer = 4 << 10
)

// probeAfterIdle is how long a watched connection may sit idle before its
// reuse asks the socket anyway: the hang-up watch reports FIN and RST, not
// bytes sent out of turn (an unsolicited 408 without a close). Under load a
// connection is reused long before this; one idle for longer costs one
// system call on its next use.
const probeAfterIdle = int64(time.Second)

// noDeadline clears a deadline; aLongTimeAgo fails pending I/O at once.
var (
	noDeadline   time.Time
	aLongTimeAgo = time.Unix(1, 0)
)

// bodyBufPool holds the buffers request bodies are copied through.
var bodyBufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// h1Conn is one keep-alive connection to an endpoint. It is used by one
// request at a time, by the goroutine serving that request: no reader or
// writer goroutine sits behind it.
type h1Conn struct {
	c  *H1Client
	nc net.Conn
	br *bufio.Reader
	bw *bufio.Writer
	cw countingWriter
	// abort is abortNow as a func value, made once so that registering it
	// with context.AfterFunc per request does not allocate it again.
	abort func()
	// rd and wd are the deadlines currently set on nc, so an unchanged
	// deadline costs no system call.
	rd, wd time.Time
	// rdNext is the read deadline to set before the next read from the
	// socket, when rdPending (setBodyDeadline).
	rdNext    time.Time
	rdPending bool
	dr        deadlineReader
	idleSince int64 // Unix nanoseconds
	// trailer holds a request's trailer fields while they are written
	// (writeTrailer), reused so that a chunked body costs no allocation.
	trailer exchange.Header
	// num formats lengths; a local array would escape through the
	// bufio.Writer's io.Writer.
	num    [20]byte
	closed atomic.Bool

	// raw reaches the socket under TLS and the tracking wrapper, for the
	// idle check; nil when the connection type offers no such access.
	raw     syscall.RawConn
	probeFn func(fd uintptr) bool
	probeOK bool

	// rs carries a plain connection's reads and writes without the
	// runtime's entersyscall (Linux); nil means through nc.
	rs *rawSocket
	// hup is the registration of a plain connection's socket with io's
	// hang-up watcher: while registered, reuse checks its flag instead of
	// reading the socket.
	hup epoll.Registration
	io  *epoll.IO
}

// countingWriter counts the bytes the socket accepted for the current
// request, so a request that failed before any byte left can be retried
// whatever its method.
type countingWriter struct {
	w io.Writer
	n int64
}

func (w *countingWriter) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	w.n += int64(n)
	return n, err
}

// newH1Conn wraps a dialed connection: nc is what requests go through
// (the tracked socket, or TLS over it) and socket the bare socket.
func newH1Conn(c *H1Client, nc, socket net.Conn) *h1Conn {
	hc := &h1Conn{c: c, nc: nc}
	if sc, ok := socket.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			hc.raw = raw
			hc.probeFn = hc.probe
		}
	}
	var src io.Reader = nc
	hc.cw.w = nc
	if nc != socket && c.tls == nil {
		// Plain: nc only adds tracking, so the socket can be used directly.
		if rs := newRawSocket(socket); rs != nil {
			hc.rs = rs
			src, hc.cw.w = rs, rs
		}
		if hc.raw != nil {
			hc.io = c.io
			if hc.io == nil {
				hc.io = epoll.Shared()
			}
			hc.io.Watch(&hc.hup, socketFD(hc.raw), nil)
		}
	}
	hc.dr = deadlineReader{hc: hc, r: src}
	hc.br = bufio.NewReaderSize(&hc.dr, connReadBuffer)
	hc.bw = bufio.NewWriterSize(&hc.cw, connWriteBuffer)
	hc.abort = hc.abortNow
	return hc
}

// idleAlive reports whether a connection taken from the pool at now (Unix
// nanoseconds) is still fit to carry a request. This matters most for
// requests that must not be retried: without the check, a POST sent on a
// connection the upstream closed a minute ago would fail with 502.
//
// net/http's Transport learns that an idle connection was closed from the
// reader goroutine it keeps on every connection, NGINX from its event loop.
// Here a plain connection's socket is watched for hang-ups from its dial
// on (epoll.IO.Watch), and reuse reads the registration's flag: no system call.
// Otherwise (TLS, whose close_notify the watch would not see; no epoll; a
// connection idle for over probeAfterIdle) the socket is asked directly:
// one non-blocking read, about a microsecond.
func (hc *h1Conn) idleAlive(now int64) bool {
	if hc.br.Buffered() > 0 || hc.hup.HungUp() {
		return false
	}
	if hc.hup.Registered() && now-hc.idleSince < probeAfterIdle {
		return true
	}
	if hc.raw == nil {
		return true
	}
	hc.c.probes.Add(1)
	hc.probeOK = false
	if !hc.rd.IsZero() {
		// The last head's deadline stays set (setHeadDeadline) and may
		// have passed: the probe's read would fail on it.
		hc.setReadDeadline(noDeadline)
	}
	if err := hc.raw.Read(hc.probeFn); err != nil {
		return false
	}
	return hc.probeOK
}

// abortNow fails the request in progress on the connection: the exchange's
// context ended (client gone, server shutting down).
func (hc *h1Conn) abortNow() { hc.nc.SetDeadline(aLongTimeAgo) }

func (hc *h1Conn) setReadDeadline(t time.Time) {
	hc.rdPending = false
	if !t.Equal(hc.rd) {
		hc.rd = t
		hc.nc.SetReadDeadline(t)
	}
}

// setHeadDeadline sets the read deadline for a response head due by t,
// rounded up to a multiple of grain: the requests of one connection within
// a grain share one deadline, so setting it costs the runtime's timer
// update once per grain instead of once per request. The head may thus
// time out up to grain late.
func (hc *h1Conn) setHeadDeadline(t time.Time, grain time.Duration) {
	if !t.IsZero() && grain > 0 {
		if r := t.UnixNano() % int64(grain); r != 0 {
			t = t.Add(grain - time.Duration(r))
		}
	}
	hc.setReadDeadline(t)
}

// setBodyDeadline makes t the read deadline from the connection's next
// read from the socket on. A body the head's read already buffered (the
// usual small response) is read without one, so the head's deadline can
// stay for the next request (setHeadDeadline) and nothing is set at all.
func (hc *h1Conn) setBodyDeadline(t time.Time) {
	if t.Equal(hc.rd) {
		hc.rdPending = false
		return
	}
	hc.rdNext, hc.rdPending = t, true
}

// deadlineReader is what the connection's bufio.Reader reads the socket
// through: it sets a deferred read deadline (setBodyDeadline) first.
type deadlineReader struct {
	hc *h1Conn
	r  io.Reader
}

func (d *deadlineReader) Read(p []byte) (int, error) {
	if hc := d.hc; hc.rdPending {
		hc.setReadDeadline(hc.rdNext)
	}
	return d.r.Read(p)
}

func (hc *h1Conn) setWriteDeadline(t time.Time) {
	if !t.Equal(hc.wd) {
		hc.wd = t
		hc.nc.SetWriteDeadline(t)
	}
}

// close closes the connection and frees its slot in the endpoint's limit.
func (hc *h1Conn) close() {
	if hc.closed.Swap(true) {
		return
	}
	// Before the descriptor's number can be reused.
	hc.io.Release(&hc.hup)
	hc.nc.Close()
	hc.c.release()
}

// bodyReadError is a failure to read the client's request body (the client
// went away, or the body exceeded a limit): the upstream is not at fault.
type bodyReadError struct{ err error }

func (e *bodyReadError) Error() string { return e.err.Error() }
func (e *bodyReadError) Unwrap() error { return e.err }

// writeRequest writes the request head straight from req's fields, then the
// body: with Content-Length when its length is known, chunked otherwise
// (RFC 9112 §6). A bodiless request's last write waits for the response's
// first bytes (rawSocket.writeAwait), so for one the caller has set the read
// deadline for the response head already.
func (hc *h1Conn) writeRequest(req *Request, resp *Response) error {
	hc.cw.n = 0
	w := hc.bw
	w.WriteString(req.Method)
	w.WriteByte(' ')
	if req.Path == "" {
		w.WriteByte('/')
	} else {
		w.WriteString(req.Path)
	}
	if req.Query != "" {
		w.WriteByte('?')
		w.WriteString(req.Query)
	}
	w.WriteString(" HTTP/1.1\r\nHost: ")
	if req.Host != "" {
		w.WriteString(req.Host)
	} else {
		w.WriteString(hc.c.e.urlHost)
	}
	w.WriteString("\r\n")
	if req.Header != nil {
		req.Header.Range(func(name, value string) bool {
			// The framing fields are penstock's to write: the client's
			// described the client's message, not this one.
			if exchange.EqualFold(name, "Host") || exchange.EqualFold(name, "Content-Length") ||
				exchange.EqualFold(name, "Transfer-Encoding") {
				return true
			}
			w.WriteString(name)
			w.WriteString(": ")
			w.WriteString(value)
			w.WriteString("\r\n")
			return true
		})
	}
	hasBody := req.Body != nil && req.ContentLength != 0
	switch {
	case hasBody && req.ContentLength > 0:
		w.WriteString("Content-Length: ")
		w.Write(strconv.AppendInt(hc.num[:0], req.ContentLength, 10))
		w.WriteString("\r\n")
	case hasBody:
		w.WriteString("Transfer-Encoding: chunked\r\n")
	case req.Method == "POST" || req.Method == "PUT" || req.Method == "PATCH":
		// RFC 9110 §8.6: a request that would usually carry content says
		// explicitly that it has none.
		w.WriteString("Content-Length: 0\r\n")
	}
	w.WriteString("\r\n")
	if !hasBody {
		// The request ends here: write it and wait for the response's
		// first bytes in one step (rawSocket.writeAwait).
		if hc.rs != nil {
			hc.rs.await = true
		}
		err := w.Flush()
		if hc.rs != nil {
			hc.rs.await = false
		}
		if err != nil {
			return err
		}
		resp.bodySent = true
		return nil
	}
	bp := bodyBufPool.Get().(*[]byte)
	defer bodyBufPool.Put(bp)
	var err error
	if req.ContentLength > 0 {
		err = hc.writeSized(req, *bp)
	} else {
		err = hc.writeChunked(req, *bp)
	}
	if err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	resp.bodySent = true
	return nil
}

func (hc *h1Conn) writeSized(req *Request, buf []byte) error {
	left := req.ContentLength
	for left > 0 {
		p := buf
		if int64(len(p)) > left {
			p = p[:left]
		}
		n, rerr := req.Body.Read(p)
		if n > 0 {
			req.BodyRead += int64(n)
			left -= int64(n)
			if _, err := hc.bw.Write(p[:n]); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			if left > 0 {
				return &bodyReadError{io.ErrUnexpectedEOF}
			}
			break
		}
		if rerr != nil {
			return &bodyReadError{rerr}
		}
	}
	return nil
}

// writeChunked sends a body of unknown length in chunked coding, one chunk
// per read and flushed at once: such a body is often a stream whose reader
// upstream waits for each piece.
func (hc *h1Conn) writeChunked(req *Request, buf []byte) error {
	w := hc.bw
	for {
		n, rerr := req.Body.Read(buf)
		if n > 0 {
			req.BodyRead += int64(n)
			w.Write(strconv.AppendInt(hc.num[:0], int64(n), 16))
			w.WriteString("\r\n")
			w.Write(buf[:n])
			w.WriteString("\r\n")
			if err := w.Flush(); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			if req.Trailer != nil {
				return hc.writeTrailer(req.Trailer)
			}
			_, err := w.WriteString("0\r\n\r\n")
			return err
		}
		if rerr != nil {
			return &bodyReadError{rerr}
		}
	}
}

// writeTrailer ends a chunked request body with the request's trailer
// fields (RFC 9112 §7.1.2). A field whose name is not a token or whose
// value holds CR, LF or another control character is left out, so that a
// client's trailer cannot split the request.
func (hc *h1Conn) writeTrailer(tr exchange.TrailerReader) error {
	w, h := hc.bw, &hc.trailer
	h.Reset()
	tr.ReadTrailer(h)
	w.WriteString("0\r\n")
	h.Range(func(name, value string) bool {
		if validFieldName(name) && validFieldValue(value) {
			w.WriteString(name)
			w.WriteString(": ")
			w.WriteString(value)
			w.WriteString("\r\n")
		}
		return true
	})
	_, err := w.WriteString("\r\n")
	return err
}

// validFieldName reports a non-empty token (RFC 9110 §5.1).
func validFieldName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validFieldValue reports a value without control characters but HTAB.
func validFieldValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
