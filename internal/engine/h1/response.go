package h1

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/penstock-dev/penstock/internal/engine"
	"github.com/penstock-dev/penstock/internal/exchange"
)

// response implements exchange.ResponseWriter for one HTTP/1.x exchange.
//
// The status line and header are serialised into a pooled write buffer at
// WriteHeader; body bytes follow them in the same buffer. The framing lines
// (Content-Length or Transfer-Encoding, Connection) are decided at the
// first flush: a handler that writes its whole body without flushing gets a
// Content-Length even if it never set one, and the response leaves in one
// write. A body of unknown length on HTTP/1.1 is chunked, one chunk per
// flush; on HTTP/1.0 it ends when the connection closes.
type response struct {
	c *conn

	// wbuf is taken from the pool when the exchange starts and carries
	// the response header too, so an idle connection keeps neither.
	wbuf *buffer
	// bodyStart is where unframed body bytes start in wbuf: right after the
	// serialised header until the first flush, 0 afterwards.
	bodyStart int

	status      int
	wroteHeader bool // a final status was written
	// started is wroteHeader for the request body's goroutine, which may
	// be an HTTP client's, not the handler's.
	started    atomic.Bool
	committed  bool // the header and framing left (or are in wbuf framed)
	noBody     bool // HEAD, 1xx, 204, 304: no body on the wire
	chunked    bool
	clen       int64 // from the handler's Content-Length, -1 if none
	written    int64 // body bytes accepted
	closeAfter bool  // send "Connection: close" and close afterwards
	// closeSent: the head said "Connection: close" (a drain that began
	// after it was sent keeps the connection, see conn.serveOne).
	closeSent bool
	hijacked  bool
	err       error // sticky write error

	// The Date header is rendered once a second per connection.
	dateSec int64
	date    [29]byte
}

var (
	errBodyNotAllowed = errors.New("h1: response status does not allow a body")
	errTooLong        = errors.New("h1: body longer than Content-Length")
	errHijacked       = errors.New("h1: connection hijacked")
)

// framingReserve keeps room in wbuf for the framing lines inserted at the
// first flush and for a chunk's size line and CRLF.
const framingReserve = 96

func (w *response) reset() {
	w.getBuffer()
	w.bodyStart = 0
	w.status = 0
	w.wroteHeader, w.committed, w.noBody, w.chunked = false, false, false, false
	w.started.Store(false)
	w.clen, w.written = -1, 0
	w.closeAfter, w.hijacked, w.closeSent = false, false, false
	w.err = nil
}

func (w *response) Header() *exchange.Header { return &w.wbuf.hdr }

// Trailer implements exchange.TrailerWriter. The fields are sent in the
// trailer section of a chunked response (RFC 9112 §7.1.2) when the client
// sent "TE: trailers"; a response with trailers to send and no
// Content-Length of its own is then chunked even if it was written whole.
// Otherwise they are dropped.
func (w *response) Trailer() *exchange.Header {
	w.getBuffer()
	return &w.wbuf.trailer
}

// sendsTrailers reports whether the response ends with a trailer section:
// there are fields to send, the response has a body, and the client is an
// HTTP/1.1 one that accepts trailers.
func (w *response) sendsTrailers() bool {
	if w.wbuf == nil || w.wbuf.trailer.Len() == 0 || w.noBody || w.c.act.req.Proto != exchange.HTTP11 || w.c.act.req.header == nil {
		return false
	}
	accepts := false
	w.c.act.req.header.Values("Te", func(v string) bool {
		forEachToken(stringBytes(v), func(tok []byte) {
			if equalFoldBytes(tok, "trailers") {
				accepts = true
			}
		})
		return !accepts
	})
	return accepts
}

// appendTrailer ends a chunked body: the last chunk and the trailer
// section, whose fields are checked as the header's are.
func (w *response) appendTrailer(b []byte) []byte {
	b = append(b, "0\r\n"...)
	if w.sendsTrailers() {
		w.wbuf.trailer.Range(func(name, value string) bool {
			if !validFieldName(name) || !validFieldValue(value) {
				return true
			}
			b = append(b, name...)
			b = append(b, ": "...)
			b = append(b, value...)
			b = append(b, "\r\n"...)
			return true
		})
	}
	return append(b, "\r\n"...)
}

func (w *response) WriteHeader(status int) {
	if w.wroteHeader || w.hijacked || status < 100 || status > 999 {
		return
	}
	c := w.c
	if status < 200 && status != http.StatusSwitchingProtocols {
		// Interim response (103 Early Hints and friends): sent now
		// with the current header, which is kept for the final one.
		// HTTP/1.0 clients do not understand 1xx (RFC 9110 §15.2).
		if c.act.req.Proto == exchange.HTTP10 || w.err != nil {
			return
		}
		w.getBuffer()
		b := w.wbuf.b[:0]
		b = appendStatusLine(b, status)
		b = w.appendFields(b, false)
		b = append(b, "\r\n"...)
		w.wbuf.b = b
		w.writeOut()
		return
	}
	w.wroteHeader = true
	w.started.Store(true)
	w.status = status
	method := c.act.req.Method
	w.noBody = method == "HEAD" || status == 204 || status == 304 || status == 101
	w.clen = -1
	if v, ok := w.wbuf.hdr.Get("Content-Length"); ok {
		if n, ok := parseContentLength(stringBytes(v)); ok {
			w.clen = n
		}
	}
	w.wbuf.hdr.Values("Connection", func(v string) bool {
		forEachToken(stringBytes(v), func(tok []byte) {
			if equalFoldBytes(tok, "close") {
				w.closeAfter = true
			}
		})
		return true
	})
	if status == http.StatusSwitchingProtocols {
		w.closeAfter = true
	}
	if w.clen < 0 && status == http.StatusOK {
		// An event stream (it has no length) may outlive a drain in a
		// binary upgrade (Server.Shutdown); other responses cost no
		// lookup here.
		if ct, ok := w.wbuf.hdr.Get("Content-Type"); ok && engine.IsEventStream(ct) {
			c.streaming.Store(true)
		}
	}
	w.getBuffer()
	b := w.wbuf.b
	b = appendStatusLine(b, status)
	b = w.appendFields(b, true)
	if !w.wbuf.hdr.Has("Date") {
		b = append(b, "Date: "...)
		b = append(b, w.httpDate()...)
		b = append(b, "\r\n"...)
	}
	w.wbuf.b = b
	w.bodyStart = len(b)
}

// appendFields serialises the handler's header. Framing fields are left out
// of final responses: the writer emits its own, consistent with what it
// sends. Field names and values are checked so that a value carrying CR or
// LF (from an upstream or a config) cannot split the response.
func (w *response) appendFields(b []byte, final bool) []byte {
	w.wbuf.hdr.Range(func(name, value string) bool {
		if final && (exchange.EqualFold(name, "Content-Length") || exchange.EqualFold(name, "Transfer-Encoding") ||
			exchange.EqualFold(name, "Connection")) {
			return true
		}
		if !validFieldName(name) || !validFieldValue(value) {
			return true
		}
		b = append(b, name...)
		b = append(b, ": "...)
		b = append(b, value...)
		b = append(b, "\r\n"...)
		return true
	})
	return b
}

func validFieldName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTchar(s[i]) {
			return false
		}
	}
	return true
}

func validFieldValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

func (w *response) Write(p []byte) (int, error) {
	if w.hijacked {
		return 0, errHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.noBody {
		if w.c.act.req.Method == "HEAD" {
			return len(p), nil
		}
		return 0, errBodyNotAllowed
	}
	var tooLong bool
	if w.clen >= 0 && w.written+int64(len(p)) > w.clen {
		p = p[:w.clen-w.written]
		tooLong = true
	}
	n := 0
	for len(p) > 0 {
		room := cap(w.wbuf.b) - len(w.wbuf.b) - framingReserve
		if room <= 0 {
			if err := w.flush(false); err != nil {
				return n, err
			}
			continue
		}
		k := min(room, len(p))
		w.wbuf.b = append(w.wbuf.b, p[:k]...)
		p = p[k:]
		n += k
	}
	w.written += int64(n)
	if tooLong {
		return n, errTooLong
	}
	return n, nil
}

// Flush sends the status, header and buffered body bytes now.
func (w *response) Flush() error {
	if w.hijacked {
		return errHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	return w.flush(false)
}

// flush frames what wbuf holds and writes it. final is set once the handler
// has returned: an uncommitted response then gets its exact Content-Length.
func (w *response) flush(final bool) error {
	if w.err != nil {
		return w.err
	}
	b := w.wbuf.b
	body := len(b) - w.bodyStart
	if !w.committed {
		w.committed = true
		c := w.c
		var fr [framingReserve]byte
		f := fr[:0]
		switch {
		case w.noBody:
			if w.clen >= 0 && w.c.act.req.Method == "HEAD" {
				f = appendContentLength(f, w.clen)
			}
		case w.clen >= 0:
			f = appendContentLength(f, w.clen)
		case final && !w.sendsTrailers():
			f = appendContentLength(f, int64(body))
			w.clen = int64(body)
		case c.act.req.Proto == exchange.HTTP11:
			w.chunked = true
			f = append(f, "Transfer-Encoding: chunked\r\n"...)
		default:
			// HTTP/1.0 and no length: the body ends with the
			// connection (RFC 9112 §6.3 (8)).
			w.closeAfter = true
		}
		if w.closeAfter || !c.keepAlive() {
			f = append(f, "Connection: close\r\n"...)
			w.closeSent = true
		} else if c.act.req.Proto == exchange.HTTP10 {
			f = append(f, "Connection: keep-alive\r\n"...)
		}
		f = append(f, "\r\n"...)
		if w.chunked && body > 0 {
			f = appendChunkSize(f, body)
		}
		b = insert(b, w.bodyStart, f)
		if w.chunked && body > 0 {
			b = append(b, "\r\n"...)
		}
	} else if w.chunked && body > 0 {
		var fr [20]byte
		b = insert(b, w.bodyStart, appendChunkSize(fr[:0], body))
		b = append(b, "\r\n"...)
	}
	if final && w.chunked {
		b = w.appendTrailer(b)
	}
	w.wbuf.b = b
	w.bodyStart = 0
	return w.writeOut()
}

// writeOut writes wbuf to the connection and empties it. The connection's
// Write waits in the runtime's poller when the socket buffer is full
// (EAGAIN), so a slow client holds this exchange's goroutine, never a
// poller thread.
func (w *response) writeOut() error {
	if len(w.wbuf.b) == 0 {
		return nil
	}
	_, err := w.c.write(w.wbuf.b)
	w.wbuf.b = w.wbuf.b[:0]
	if err != nil {
		w.err = err
		w.closeAfter = true
	}
	return err
}

// finish completes the response after the handler returned. It reports
// whether the connection may carry another request.
func (w *response) finish(aborted bool) bool {
	if w.hijacked {
		return false
	}
	if aborted {
		// Send what is buffered but no terminating chunk: the client
		// must see a truncated message, then the connection closes.
		if w.wroteHeader && w.wbuf != nil && w.err == nil {
			w.closeAfter = true
			w.flush(false)
		}
		w.putBuffer()
		return false
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	w.flush(true)
	w.putBuffer()
	if w.clen >= 0 && w.written < w.clen && !w.noBody {
		// Shorter than promised: only closing tells the client.
		return false
	}
	return w.err == nil && !w.closeAfter
}

// Hijack hands the connection to the caller (101 Switching Protocols).
// Bytes the client sent after the request are returned in the reader.
func (w *response) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.hijacked {
		return nil, nil, errHijacked
	}
	if w.wroteHeader && !w.committed {
		if err := w.flush(false); err != nil {
			return nil, nil, err
		}
	}
	c := w.c
	if err := c.detach(); err != nil {
		return nil, nil, err
	}
	if err := c.promote(); err != nil {
		c.close()
		return nil, nil, err
	}
	w.hijacked = true
	var rest []byte
	if c.r < c.w {
		rest = append([]byte(nil), c.rbuf[c.r:c.w]...)
		c.r = c.w
	}
	c.nc.SetDeadline(time.Time{})
	rw := bufio.NewReadWriter(bufio.NewReader(&prefixConn{Conn: c.nc, prefix: rest}), bufio.NewWriter(c.nc))
	return c.nc, rw, nil
}

func (w *response) getBuffer() {
	if w.wbuf == nil {
		w.wbuf = getBuffer()
	}
}

func (w *response) putBuffer() {
	if w.wbuf != nil {
		putBuffer(w.wbuf)
		w.wbuf = nil
	}
}

// httpDate returns the current time in IMF-fixdate (RFC 9110 §5.6.7).
func (w *response) httpDate() []byte {
	now := time.Now()
	if s := now.Unix(); s != w.dateSec {
		w.dateSec = s
		now.UTC().AppendFormat(w.date[:0], http.TimeFormat)
	}
	return w.date[:]
}

// insert puts f into b at i, moving b[i:] right.
func insert(b []byte, i int, f []byte) []byte {
	n := len(b)
	b = append(b, f...) // grows b by len(f); the bytes are fixed below
	copy(b[i+len(f):], b[i:n])
	copy(b[i:], f)
	return b
}

func appendContentLength(b []byte, n int64) []byte {
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, n, 10)
	return append(b, "\r\n"...)
}

func appendChunkSize(b []byte, n int) []byte {
	b = strconv.AppendUint(b, uint64(n), 16)
	return append(b, "\r\n"...)
}

func appendStatusLine(b []byte, status int) []byte {
	b = append(b, "HTTP/1.1 "...)
	if status >= 100 && status < 1000 {
		b = append(b, byte('0'+status/100), byte('0'+status/10%10), byte('0'+status%10), ' ')
	}
	b = append(b, http.StatusText(status)...)
	return append(b, "\r\n"...)
}
