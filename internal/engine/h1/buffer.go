package h1

import (
	"sync"

	"github.com/penstock-dev/penstock/internal/exchange"
)

// buffer is a pooled byte buffer: read buffers hold a request's header
// section (and body bytes that arrived with it), write buffers a response's
// header and body until they are flushed. A connection takes them when it
// has work and gives them back when it goes idle, so an idle connection
// holds neither.
type buffer struct {
	b []byte
	// hdr is the response header, on write buffers.
	hdr exchange.Header
	// trailer is the response's trailer fields, on write buffers.
	trailer exchange.Header
}

// bufferSize covers the request head of nearly every client (browsers send
// 0.5-2 KiB) and one socket write worth of response; larger heads grow the
// read buffer up to the listener's max_header_bytes for that request only.
const bufferSize = 4 << 10

// sync.Pool keeps a private cache per P: taking and returning a buffer
// contends with no other request.
var bufferPool = sync.Pool{New: func() any { return &buffer{b: make([]byte, 0, bufferSize)} }}

func getBuffer() *buffer {
	b := bufferPool.Get().(*buffer)
	b.b = b.b[:0]
	return b
}

func putBuffer(b *buffer) {
	b.hdr.Reset()
	b.trailer.Reset()
	if cap(b.b) != bufferSize {
		// Grown for one unusual request: let it go rather than keep
		// large buffers around.
		return
	}
	bufferPool.Put(b)
}
