package h1

import (
	"errors"
	"io"
)

// body is a request body as the handler reads it (exchange.Request.Body).
// It reads first what the connection's read buffer already holds past the
// header section, then from the connection itself, never beyond the end of
// the body, so a pipelined next request stays in the buffer.
type body struct {
	c      *conn
	mode   bodyMode
	remain int64 // bodyLength: bytes left
	dec    chunkedDecoder
	err    error // sticky: io.EOF at the end, or the failure
	closed bool
	// expectContinue: the client waits for "100 Continue" before sending
	// the body (RFC 9110 §10.1.1); it is sent on the first Read.
	expectContinue bool
	sentContinue   bool
	n              int64 // bytes read by the handler
}

type bodyMode uint8

const (
	bodyNone bodyMode = iota
	bodyLength
	bodyChunked
)

var (
	errBodyClosed = errors.New("h1: read on closed request body")
	continueLine  = []byte("HTTP/1.1 100 Continue\r\n\r\n")
)

func (b *body) reset(c *conn, h *head) {
	*b = body{c: c}
	switch {
	case h.chunked:
		b.mode = bodyChunked
	case h.contentLength > 0:
		b.mode, b.remain = bodyLength, h.contentLength
	default:
		b.err = io.EOF
	}
	b.expectContinue = h.expectContinue && b.err == nil
}

// complete reports whether the body was read to its end.
func (b *body) complete() bool { return b.err == io.EOF }

func (b *body) Read(p []byte) (int, error) {
	if b.closed {
		return 0, errBodyClosed
	}
	if b.err != nil {
		return 0, b.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if b.expectContinue && !b.sentContinue {
		b.sentContinue = true
		// Only while no final response has started: after it, the
		// client has its answer and will not wait for a 100.
		if !b.c.resp.wroteHeader {
			if _, err := b.c.nc.Write(continueLine); err != nil {
				b.err = err
				return 0, err
			}
		}
	}
	var n int
	var err error
	switch b.mode {
	case bodyLength:
		n, err = b.readLength(p)
	case bodyChunked:
		n, err = b.readChunked(p)
	}
	b.n += int64(n)
	if err != nil {
		b.err = err
	}
	return n, err
}

func (b *body) readLength(p []byte) (int, error) {
	if int64(len(p)) > b.remain {
		p = p[:b.remain]
	}
	c := b.c
	var n int
	if c.r < c.w {
		n = copy(p, c.rbuf[c.r:c.w])
		c.r += n
	} else {
		var err error
		n, err = c.nc.Read(p)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			if n == 0 {
				return 0, err
			}
		}
	}
	b.remain -= int64(n)
	if b.remain == 0 {
		return n, io.EOF
	}
	return n, nil
}

func (b *body) readChunked(p []byte) (int, error) {
	c := b.c
	for {
		if rem, ok := b.dec.inData(); ok {
			if uint64(len(p)) > rem {
				p = p[:rem]
			}
			var n int
			if c.r < c.w {
				n = copy(p, c.rbuf[c.r:c.w])
				c.r += n
			} else {
				// Large chunks go straight into the caller's buffer.
				var err error
				n, err = c.nc.Read(p)
				if n == 0 && err != nil {
					if err == io.EOF {
						err = io.ErrUnexpectedEOF
					}
					return 0, err
				}
			}
			b.dec.consumedData(n)
			if _, still := b.dec.inData(); !still {
				// Consume the chunk's CRLF (and what follows, if
				// buffered) so that the last Read reports EOF.
				if c.r < c.w {
					m, perr := b.dec.framing(c.rbuf[c.r:c.w])
					c.r += m
					if perr != nil {
						return n, perr
					}
				}
				if b.dec.done() {
					return n, io.EOF
				}
			}
			return n, nil
		}
		if b.dec.done() {
			return 0, io.EOF
		}
		if c.r == c.w {
			if err := c.fillBody(); err != nil {
				return 0, err
			}
		}
		m, perr := b.dec.framing(c.rbuf[c.r:c.w])
		c.r += m
		if perr != nil {
			return 0, perr
		}
	}
}

// Close marks the body closed; the engine discards what is left of it after
// the handler returns.
func (b *body) Close() error {
	b.closed = true
	return nil
}

// maxDrain is how much of an unread request body the engine reads and
// discards to keep the connection; beyond it closing is cheaper.
const maxDrain = 256 << 10

// drain reads the rest of the body so the next request can be read. It
// reports whether the connection can be kept.
func (b *body) drain() bool {
	if b.err == io.EOF {
		return true
	}
	if b.err != nil {
		return false
	}
	if b.expectContinue && !b.sentContinue {
		// The client is still waiting for 100 Continue and may never
		// send the body: the connection cannot be reused (RFC 9110
		// §10.1.1 lets the server close instead of reading).
		return false
	}
	b.closed = false
	var scratch [512]byte
	for b.n < maxDrain {
		_, err := b.Read(scratch[:])
		if err == io.EOF {
			return true
		}
		if err != nil {
			return false
		}
	}
	return false
}
