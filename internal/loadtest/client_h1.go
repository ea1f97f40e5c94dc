package loadtest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"time"
)

// HTTP/1.1 client: a lean one, so that the tool is not the bottleneck. The
// request is prebuilt bytes written with one call; the response is parsed
// only as far as framing needs (RFC 9112 section 6.3: status, Content-Length,
// chunked transfer coding, Connection: close) straight from the
// connection's own read buffer. A request allocates nothing.

type h1Dialer struct{}

func (h1Dialer) dial(ctx context.Context, o *origin, ct *connTimes) (session, error) {
	c, err := dialStream(ctx, o, "http/1.1", ct)
	if err != nil {
		return nil, err
	}
	return &h1Conn{c: c, rd: c, buf: make([]byte, h1BufSize)}, nil
}

// h1BufSize bounds a response head; bodies stream through it.
const h1BufSize = 16 << 10

type h1Conn struct {
	c        net.Conn
	rd       io.Reader // c, but for the parser's fuzz test
	buf      []byte
	r, w     int // unread bytes are buf[r:w]
	deadline time.Time
	dead     bool
	first    time.Time // when the current response's first byte arrived
	n        int64     // bytes read for the current response
}

var (
	errHeadTooLarge = &kindError{errProtocol, errors.New("response head larger than 16 KiB")}
	errBadStatus    = &kindError{errProtocol, errors.New("malformed status line")}
	errBadHeader    = &kindError{errProtocol, errors.New("malformed header")}
	errBadChunk     = &kindError{errProtocol, errors.New("malformed chunk")}
	errBadLength    = &kindError{errProtocol, errors.New("malformed Content-Length")}
)

func (h *h1Conn) usable() bool { return !h.dead }
func (h *h1Conn) close()       { h.dead = true; h.c.Close() }

func (h *h1Conn) roundTrip(t *target, start time.Time, timeout time.Duration, out *outcome) error {
	// Moving a deadline costs a timer update in the runtime, so it is moved
	// only when it would otherwise be more than 1/16 short: a request gets
	// between 15/16 and all of its timeout.
	if dl := start.Add(timeout); dl.Sub(h.deadline) > timeout/16 {
		if err := h.c.SetDeadline(dl); err != nil {
			h.dead = true
			return err
		}
		h.deadline = dl
	}
	h.first = time.Time{}
	h.n = 0
	if _, err := h.c.Write(t.h1req); err != nil {
		h.dead = true
		return err
	}
	err := h.readResponse(t.head, out)
	if err != nil {
		h.dead = true
	}
	out.firstByte = h.first
	out.bytes = h.n
	return err
}

// fill reads more bytes into the buffer, moving unread ones to its front
// when it is full.
func (h *h1Conn) fill() error {
	if h.r == h.w {
		h.r, h.w = 0, 0
	} else if h.w == len(h.buf) {
		if h.r == 0 {
			return errHeadTooLarge
		}
		h.w = copy(h.buf, h.buf[h.r:h.w])
		h.r = 0
	}
	n, err := h.rd.Read(h.buf[h.w:])
	if n > 0 {
		if h.first.IsZero() {
			h.first = time.Now()
		}
		h.w += n
		h.n += int64(n)
		return nil
	}
	if err == nil {
		err = errors.New("read returned nothing")
	}
	return err
}

// line returns the next CRLF-terminated line (without CRLF), reading as needed.
func (h *h1Conn) line() ([]byte, error) {
	for {
		if i := bytes.IndexByte(h.buf[h.r:h.w], '\n'); i >= 0 {
			l := h.buf[h.r : h.r+i]
			h.r += i + 1
			if n := len(l); n > 0 && l[n-1] == '\r' {
				l = l[:n-1]
			}
			return l, nil
		}
		if err := h.fill(); err != nil {
			return nil, err
		}
	}
}

func (h *h1Conn) readResponse(head bool, out *outcome) error {
	for {
		status, length, chunked, closeAfter, err := h.readHead()
		if err != nil {
			return err
		}
		if status >= 100 && status < 200 && status != 101 {
			continue // interim response (RFC 9110 section 15.2): the final one follows
		}
		out.status = status
		if closeAfter {
			h.dead = true
		}
		switch {
		case head || status == 204 || status == 304 || status < 200:
			return nil
		case chunked:
			return h.readChunked()
		case length >= 0:
			return h.skip(length)
		}
		// No framing: the body runs to the end of the connection.
		h.dead = true
		for {
			h.r = h.w
			if err := h.fill(); err != nil {
				if classify(err) == errClosed {
					return nil
				}
				return err
			}
		}
	}
}

func (h *h1Conn) readHead() (status int, length int64, chunked, closeAfter bool, err error) {
	l, err := h.line()
	if err != nil {
		return 0, 0, false, false, err
	}
	// "HTTP/1.1 200 OK"
	if len(l) < 12 || !bytes.HasPrefix(l, []byte("HTTP/1.")) || l[8] != ' ' || (len(l) > 12 && l[12] != ' ') {
		return 0, 0, false, false, errBadStatus
	}
	for _, c := range l[9:12] {
		if c < '0' || c > '9' {
			return 0, 0, false, false, errBadStatus
		}
		status = status*10 + int(c-'0')
	}
	if status < 100 {
		return 0, 0, false, false, errBadStatus
	}
	closeAfter = l[7] == '0' // HTTP/1.0 closes unless told otherwise
	length = -1
	for {
		l, err := h.line()
		if err != nil {
			return 0, 0, false, false, err
		}
		if len(l) == 0 {
			return status, length, chunked, closeAfter, nil
		}
		colon := bytes.IndexByte(l, ':')
		if colon <= 0 {
			return 0, 0, false, false, errBadHeader
		}
		name, value := l[:colon], bytes.TrimSpace(l[colon+1:])
		switch {
		case asciiEqualFold(name, "content-length"):
			length = 0
			if len(value) == 0 || len(value) > 18 {
				return 0, 0, false, false, errBadLength
			}
			for _, c := range value {
				if c < '0' || c > '9' {
					return 0, 0, false, false, errBadLength
				}
				length = length*10 + int64(c-'0')
			}
		case asciiEqualFold(name, "transfer-encoding"):
			chunked = hasTokenFold(value, "chunked")
		case asciiEqualFold(name, "connection"):
			if hasTokenFold(value, "close") {
				closeAfter = true
			} else if hasTokenFold(value, "keep-alive") {
				closeAfter = false
			}
		}
	}
}

// skip discards n body bytes.
func (h *h1Conn) skip(n int64) error {
	for n > 0 {
		if h.r == h.w {
			if err := h.fill(); err != nil {
				if classify(err) == errClosed {
					return &kindError{errClosed, err}
				}
				return err
			}
		}
		k := min(int64(h.w-h.r), n)
		h.r += int(k)
		n -= k
	}
	return nil
}

func (h *h1Conn) readChunked() error {
	for {
		l, err := h.line()
		if err != nil {
			return err
		}
		if i := bytes.IndexByte(l, ';'); i >= 0 {
			l = l[:i] // chunk extensions are ignored
		}
		l = bytes.TrimSpace(l)
		if len(l) == 0 || len(l) > 15 {
			return errBadChunk
		}
		var size int64
		for _, c := range l {
			var v byte
			switch {
			case c >= '0' && c <= '9':
				v = c - '0'
			case c >= 'a' && c <= 'f':
				v = c - 'a' + 10
			case c >= 'A' && c <= 'F':
				v = c - 'A' + 10
			default:
				return errBadChunk
			}
			size = size<<4 | int64(v)
		}
		if size == 0 {
			for { // trailer section, up to the empty line
				l, err := h.line()
				if err != nil {
					return err
				}
				if len(l) == 0 {
					return nil
				}
			}
		}
		if err := h.skip(size); err != nil {
			return err
		}
		l, err = h.line()
		if err != nil {
			return err
		}
		if len(l) != 0 {
			return errBadChunk
		}
	}
}

// asciiEqualFold reports whether b equals the lower-case ASCII s, ignoring case.
func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// hasTokenFold reports whether the comma-separated list v holds token.
func hasTokenFold(v []byte, token string) bool {
	for len(v) > 0 {
		var item []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			item, v = v[:i], v[i+1:]
		} else {
			item, v = v, nil
		}
		if asciiEqualFold(bytes.TrimSpace(item), token) {
			return true
		}
	}
	return false
}
