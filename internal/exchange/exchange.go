// Package exchange is the contract between penstock's HTTP engines and its
// route pipeline.
//
// An engine (the net/http server for HTTP/1.1 and HTTP/2 today; a dedicated
// HTTP/1.1 engine and quic-go's HTTP/3 server later) turns each client request
// into an *Exchange and calls a Handler. Everything after that (routing,
// middlewares, balancing, forwarding, the error funnel) is written once against
// this package and never sees which engine or protocol carried the request.
//
// Exchanges are pooled: an engine takes one with Acquire, fills Req and sets
// the ResponseWriter, calls the handler, and gives it back with Release. The
// strings in Req and the fields of Header alias engine-owned memory and are
// valid only until the handler returns. docs/architecture.md records why this
// is penstock's own small interface rather than *http.Request.
package exchange

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Proto is the protocol that carried a request from the client.
type Proto uint8

// Protocols an engine can report.
const (
	HTTP10 Proto = iota + 1
	HTTP11
	HTTP2
	HTTP3
)

// String returns the protocol as written on the wire ("HTTP/1.1").
func (p Proto) String() string {
	switch p {
	case HTTP10:
		return "HTTP/1.0"
	case HTTP11:
		return "HTTP/1.1"
	case HTTP2:
		return "HTTP/2.0"
	case HTTP3:
		return "HTTP/3.0"
	}
	return "HTTP/?"
}

// Request is the engine-neutral view of a client request.
type Request struct {
	// Proto is the client-side protocol.
	Proto Proto
	// Method is the request method, e.g. "GET".
	Method string
	// Scheme is "http" or "https", as seen by penstock's listener.
	Scheme string
	// Host is the authority (Host header or :authority), port included if sent.
	Host string
	// Path is the request target's path in its escaped (wire) form.
	Path string
	// Query is the raw query string without '?'.
	Query string
	// Header holds the request header fields (for HTTP/2 and HTTP/3 without
	// pseudo-headers).
	Header Header
	// Body is the request body; never nil (an empty reader when there is none).
	Body io.ReadCloser
	// ContentLength is the body length, or -1 when unknown (chunked, streams).
	ContentLength int64
	// Trailer, when set, reads the request's trailer fields once Body has
	// returned io.EOF (see TrailerReader); nil when the client's protocol
	// or engine carries none.
	Trailer TrailerReader
	// RemoteAddr is the client's address as seen by the socket.
	RemoteAddr netip.AddrPort
	// TLS is the connection's TLS state, nil on plain connections.
	TLS *tls.ConnectionState
	// EarlyData is set by the engine when the request arrived in TLS 1.3
	// early data (HTTP/3 0-RTT) before the handshake completed: it may be a
	// replay (RFC 8470). The early_data stage clears it once the handshake
	// has completed.
	EarlyData bool
	// HandshakeDone, with EarlyData, is closed when the connection's
	// handshake completes, after which the request can no longer be a
	// replay.
	HandshakeDone <-chan struct{}
}

// ResponseWriter is how the pipeline answers. An engine implements it.
type ResponseWriter interface {
	// Header is the response header to send. Changes after WriteHeader with a
	// final status have no effect.
	Header() *Header
	// WriteHeader sends the status line and Header. A 1xx status (for example
	// 103 Early Hints) may be written any number of times before the final
	// status; the header is sent with it and kept.
	WriteHeader(status int)
	// Write sends body bytes, writing a 200 status first if none was written.
	Write(p []byte) (int, error)
	// Flush pushes buffered body bytes to the client now (server-sent events,
	// chunked streaming).
	Flush() error
	// Hijack takes over the client connection for a protocol switch (101
	// Switching Protocols on HTTP/1.1). Engines that cannot hand over the
	// connection return ErrNotHijackable.
	Hijack() (net.Conn, *bufio.ReadWriter, error)
}

// Pusher is implemented by ResponseWriters of engines that can push
// responses (HTTP/2 server push, RFC 9113 §8.4). The pipeline checks for it
// with a type assertion; engines without push simply do not implement it.
type Pusher interface {
	// Push promises a GET of target (an absolute path on the request's own
	// host) and serves it through the same pipeline as a separate request.
	// It returns once the promise is queued, never waiting for the pushed
	// response. A pushed response whose body grows beyond maxBytes is reset.
	// Push fails (and the caller should stop pushing) when the client has
	// disabled push or the connection cannot take more streams.
	Push(target string, maxBytes int64) error
}

// ErrNotHijackable is returned by Hijack on protocols without connection
// takeover (HTTP/2 and HTTP/3 carry upgrades as extended CONNECT instead).
var ErrNotHijackable = errNotHijackable{}

type errNotHijackable struct{}

func (errNotHijackable) Error() string { return "exchange: connection cannot be hijacked" }

// Exchange is one request and its response in flight through penstock.
type Exchange struct {
	// Req is the client request.
	Req Request
	// W answers the client.
	W ResponseWriter
	// Ctx is cancelled when the client goes away or the server shuts down.
	Ctx context.Context
	// Start is when the engine had the request line (or HEADERS frame).
	Start time.Time

	// State is per-request scratch space owned by the pipeline (route, params,
	// request id, accounting). Engines write none of it and read only
	// State.Aborted; Release resets it.
	State State
}

// Handler serves exchanges. It must not retain x after returning.
type Handler interface {
	ServeExchange(x *Exchange)
}

// HandlerFunc adapts a function to Handler. penstock's own handlers are
// types; the tests and benchmarks of the engines and the server use this
// adapter, which is why it stays in a production file (a _test.go file is
// not visible to other packages).
type HandlerFunc func(x *Exchange)

// ServeExchange calls f(x).
func (f HandlerFunc) ServeExchange(x *Exchange) { f(x) }

var pool = sync.Pool{New: func() any { return new(Exchange) }}

// Acquire returns a reset exchange from the pool.
func Acquire() *Exchange { return pool.Get().(*Exchange) }

// Release resets x and returns it to the pool. x must not be used afterwards.
func Release(x *Exchange) {
	x.Req.Header.Reset()
	x.Req = Request{Header: x.Req.Header}
	x.W = nil
	x.Ctx = nil
	x.Start = time.Time{}
	x.State.reset()
	pool.Put(x)
}
