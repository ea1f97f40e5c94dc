package h1

import (
	"errors"
	"io"
	"sync"

	"github.com/penstock-dev/penstock/internal/exchange"
)

// body is a request body as the handler reads it (exchange.Request.Body).
// It reads first what the connection's read buffer already holds past the
// header section, then from the connection itself, never beyond the end of
// the body, so a pipelined next request stays in the buffer.
//
// The handler sees it through a bodyRef. An HTTP client may go on reading a
// request body in its own goroutine after the round trip returned (net/http's
// Transport does when the upstream answers early), so a read can arrive
// after the exchange ended: mu serialises reads, and seq, bumped when the
// exchange ends, turns such late reads into errors instead of reads of the
// next request. A handle is reused only when its body was read to the end
// (a reader that saw EOF is done); otherwise the connection makes a new one.
// Requests without a body get http.NoBody.
type body struct {
	mu     sync.Mutex
	seq    uint32
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

// bodyRef is the exchange's handle on the connection's body.
type bodyRef struct {
	b   *body
	seq uint32
}

func (r *bodyRef) Read(p []byte) (int, error) {
	b := r.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if r.seq != b.seq {
		return 0, errBodyClosed
	}
	n, err := b.read(p)
	if err == io.EOF && !b.c.bodyDone.Load() {
		b.c.bodyCompleted()
	}
	return n, err
}

// ReadTrailer implements exchange.TrailerReader: the trailer fields of a
// chunked body read to its end.
func (r *bodyRef) ReadTrailer(dst *exchange.Header) {
	b := r.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if r.seq == b.seq && b.mode == bodyChunked && b.err == io.EOF {
		b.dec.readTrailer(dst)
	}
}

// Close marks the body closed; the engine discards what is left of it after
// the handler returns.
func (r *bodyRef) Close() error {
	b := r.b
	b.mu.Lock()
	if r.seq == b.seq {
		b.closed = true
	}
	b.mu.Unlock()
	return nil
}

// detach ends the handler's access to the body: later reads through its
// bodyRef fail.
func (b *body) detach() {
	b.mu.Lock()
	b.seq++
	b.mu.Unlock()
}

func (b *body) reset(c *conn, h *head) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.c = c
	b.mode, b.remain, b.err, b.closed = bodyNone, 0, nil, false
	b.dec.reset()
	b.expectContinue, b.sentContinue, b.n = false, false, 0
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

func (b *body) read(p []byte) (int, error) {
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
		if !b.c.act.resp.started.Load() {
			if _, err := b.c.write(continueLine); err != nil {
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
		n, err = c.read(p)
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
				n, err = c.read(p)
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

// maxDrain is how much of an unread request body the engine reads and
// discards to keep the connection; beyond it closing is cheaper.
const maxDrain = 256 << 10

// drain reads the rest of the body so the next request can be read, after
// detach. It reports whether the connection can be kept.
func (b *body) drain() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
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
		_, err := b.read(scratch[:])
		if err == io.EOF {
			return true
		}
		if err != nil {
			return false
		}
	}
	return false
}
