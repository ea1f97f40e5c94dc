package proxy

import (
	"io"
	"slices"
	"sync"

	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/upstream"
)

// replayPoolSize is the size of the pooled replay buffers: bodies up to it
// are kept without allocating (the default retry.replay_body); larger
// ones, when a route allows them, get a buffer of their own.
const replayPoolSize = 64 << 10

var replayPool = sync.Pool{New: func() any { b := make([]byte, replayPoolSize); return &b }}

// replayBody is a request body read in full before the first attempt, so
// that every attempt can send it from the start (retry.replay_body). It
// lives in the pooled forwardState.
type replayBody struct {
	buf    []byte
	off    int
	pooled *[]byte
}

// fill reads the n bytes of body.
func (b *replayBody) fill(body io.Reader, n int64) error {
	if n <= replayPoolSize {
		b.pooled = replayPool.Get().(*[]byte)
		b.buf = (*b.pooled)[:n]
	} else {
		b.buf = make([]byte, n)
	}
	b.off = 0
	_, err := io.ReadFull(body, b.buf)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// Read implements io.Reader.
func (b *replayBody) Read(p []byte) (int, error) {
	if b.off >= len(b.buf) {
		return 0, io.EOF
	}
	n := copy(p, b.buf[b.off:])
	b.off += n
	return n, nil
}

// rewind starts the body over, for the next attempt.
func (b *replayBody) rewind() { b.off = 0 }

// release gives the buffer back.
func (b *replayBody) release() {
	if b.pooled != nil {
		replayPool.Put(b.pooled)
	}
	*b = replayBody{}
}

// keepsBody reports whether x's body is kept for replay under p: it has a
// length within p.ReplayBody, its method may be sent twice, and p retries
// more than failures to connect (which send nothing, body included).
func (p *RetryPolicy) keepsBody(r *exchange.Request) bool {
	return r.ContentLength > 0 && r.ContentLength <= p.ReplayBody && p.Attempts > 1 &&
		p.On&^(1<<reasonConnect) != 0 && slices.Contains(p.Methods, r.Method)
}

// replayable reports whether req's body, whatever of it was sent, can be
// sent again.
func replayable(req *upstream.Request) bool {
	_, ok := req.Body.(*replayBody)
	return ok
}
