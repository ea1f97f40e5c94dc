// Package stdhttp is penstock's net/http engine: it serves HTTP/1.1, HTTP/2
// over TLS and h2c with the standard library's server and hands each request
// to the route pipeline as an *exchange.Exchange.
//
// It serves every protocol on listeners with "engine: stdhttp", and its
// Adapter serves HTTP/3 for quic-go's server (internal/engine/h3); the
// native engine serves HTTP/2 itself (internal/engine/h2). Converting
// between http.Header and exchange.Header costs allocations here; that cost
// belongs to this engine, not to the pipeline, which stays allocation-free.
package stdhttp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/penstock-dev/penstock/internal/engine"
	"github.com/penstock-dev/penstock/internal/exchange"
)

// Adapter serves net/http requests through an exchange.Handler.
type Adapter struct {
	// Handler serves every exchange. Required.
	Handler exchange.Handler
	// EarlyData, when set, is asked for every request whether it arrived in
	// TLS 1.3 early data; for such a request it returns a channel closed when
	// the connection's handshake completes, else nil. The HTTP/3 engine sets
	// it; TCP engines never receive early data (crypto/tls does not accept
	// it), so they leave it nil.
	EarlyData func(r *http.Request) <-chan struct{}
	// Draining, when set and true, makes every HTTP/1.x response carry
	// "Connection: close", so that net/http closes its connection after
	// it: the server is shutting down (Server.Shutdown). Nil: never.
	Draining *atomic.Bool
	// SendTimeout bounds how long an HTTP/2 or HTTP/3 response may make no
	// progress: a stream whose client never opens its flow-control window
	// would otherwise hold its handler, its upstream connection and its
	// buffers for as long as the connection lives (RFC 9113 §5.2 leaves the
	// window to the receiver; NGINX resets such streams after send_timeout).
	// The stream's write deadline is set when the response starts and moved
	// on as writes go through, at most every SendTimeout/4, so a healthy
	// stream costs one deadline update per quarter of it. 0 means none.
	// HTTP/1.1 connections have their own write timeouts.
	SendTimeout time.Duration
	// SendTimedOut, when set, is called for each response whose write
	// failed on SendTimeout.
	SendTimedOut func()
	// EventStreams, when set, is called with +1 when a response turns out
	// to be a server-sent event stream (a 200 whose Content-Type is
	// text/event-stream) and with -1 when it ends. An engine that can end
	// single connections counts them per connection, so that a binary
	// upgrade's drain keeps the connections serving event streams past
	// drain_timeout (engine.WithStreamDrain).
	EventStreams func(r *http.Request, delta int)
}

// pushHeader carries push.max_bytes on a promised request, so the bound
// reaches the pushed response (net/http serves it as a separate request).
// The client sees it in the PUSH_PROMISE; it is honoured only on streams
// that really are pushed (see isPushed) and removed before the pipeline
// sees the request, so sending it on an ordinary request does nothing.
const pushHeader = "Penstock-Push-Max-Bytes"

// pushLimit removes the push marker from r and returns the pushed
// response's size bound, or 0 when r is not a pushed request.
func pushLimit(w http.ResponseWriter, r *http.Request) int64 {
	v := r.Header.Get(pushHeader)
	if v == "" {
		return 0
	}
	r.Header.Del(pushHeader)
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 || r.ProtoMajor != 2 || !isPushed(w) {
		return 0
	}
	return n
}

// isPushed reports whether w answers a pushed stream. net/http offers no
// direct way to ask; its HTTP/2 server checks for a pushed stream first in
// Push (a pushed stream may not push, RFC 9113 §8.4) and validates the
// method only later, so a Push with an invalid method fails with the
// recursive-push error on a pushed stream and with a method error, having
// sent nothing, on any other. TestServerPushWithNghttp depends on it.
func isPushed(w http.ResponseWriter) bool {
	p, ok := w.(http.Pusher)
	if !ok {
		return false
	}
	err := p.Push("/", &http.PushOptions{Method: http.MethodPost})
	return err != nil && strings.Contains(err.Error(), "recursive push")
}

var writerPool = sync.Pool{New: func() any { return new(responseWriter) }}

// ServeHTTP implements http.Handler.
func (a *Adapter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	x := exchange.Acquire()
	rw := writerPool.Get().(*responseWriter)
	rw.w, rw.http2 = w, r.ProtoMajor >= 2
	rw.pushLimit = pushLimit(w, r)
	rw.draining = nil
	if r.ProtoMajor == 1 {
		rw.draining = a.Draining
	}
	x.W = rw
	x.Ctx = r.Context()
	x.Start = time.Now()
	if a.SendTimeout > 0 && rw.http2 {
		if d, ok := w.(writeDeadliner); ok {
			rw.deadline, rw.sendTimeout, rw.sendTimedOut = d, a.SendTimeout, a.SendTimedOut
			rw.extendSend(x.Start)
		}
	}
	fill(&x.Req, r)
	if x.Req.ContentLength < 0 && r.ProtoMajor >= 2 && bodyUnexpected(r.Method) {
		rw.body.peek(&x.Req)
	}
	if len(r.TransferEncoding) > 0 && r.Body != nil {
		rw.chunked.rc = r.Body
		x.Req.Body = &rw.chunked
	}
	if r.Trailer != nil || r.ProtoMajor == 3 {
		// net/http announces the request trailers it will read (HTTP/1.1
		// and HTTP/2 keep only those the client declared in a Trailer
		// field); quic-go fills Trailer only at the body's end.
		rw.req = r
		x.Req.Trailer = rw
		if len(r.Trailer) > 0 && len(r.Header["Trailer"]) == 0 {
			// net/http's HTTP/2 server moves the Trailer field into
			// r.Trailer's keys: the announcement goes on to the upstream.
			for name := range r.Trailer {
				x.Req.Header.Add("Trailer", name)
			}
		}
	}
	if a.EarlyData != nil {
		if done := a.EarlyData(r); done != nil {
			x.Req.EarlyData, x.Req.HandshakeDone = true, done
		}
	}

	if a.EventStreams != nil {
		rw.events, rw.eventReq = a.EventStreams, r
	}
	a.Handler.ServeExchange(x)
	if rw.eventStream {
		a.EventStreams(r, -1)
	}
	aborted := x.State.Aborted || rw.overLimit
	if !aborted && rw.trailer.Len() > 0 {
		rw.sendTrailers(r)
	}

	exchange.Release(x)
	rw.reset()
	writerPool.Put(rw)
	if aborted {
		// net/http's documented way to abort a response: the connection (or
		// HTTP/2 stream) is reset and nothing is logged.
		panic(http.ErrAbortHandler)
	}
}

// fill copies what the pipeline needs from r into req.
func fill(req *exchange.Request, r *http.Request) {
	switch {
	case r.ProtoMajor == 3:
		req.Proto = exchange.HTTP3
	case r.ProtoMajor == 2:
		req.Proto = exchange.HTTP2
	case r.ProtoMinor == 0:
		req.Proto = exchange.HTTP10
	default:
		req.Proto = exchange.HTTP11
	}
	req.Method = r.Method
	req.Scheme = "http"
	if r.TLS != nil {
		req.Scheme = "https"
	}
	req.Host = r.Host
	// RequestURI is the target exactly as the client sent it, so the path is
	// forwarded byte for byte; absolute-form and HTTP/2 targets fall back to
	// the parsed URL.
	if uri := r.RequestURI; len(uri) > 0 && uri[0] == '/' {
		if i := strings.IndexByte(uri, '?'); i >= 0 {
			req.Path, req.Query = uri[:i], uri[i+1:]
		} else {
			req.Path = uri
		}
	} else {
		req.Path, req.Query = r.URL.EscapedPath(), r.URL.RawQuery
	}
	for name, values := range r.Header {
		for _, v := range values {
			req.Header.Add(name, v)
		}
	}
	req.Body = r.Body
	req.ContentLength = r.ContentLength
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		req.RemoteAddr = ap
	}
	req.TLS = r.TLS
}

// bodyUnexpected reports the methods whose requests have no body in
// practice (RFC 9110 §9.3 gives a body no meaning for them).
func bodyUnexpected(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodDelete, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// streamBody is the body of an HTTP/2 or HTTP/3 GET (or another method that
// has no body in practice) that declared no Content-Length. Such a request
// almost always has no body: HTTP/3 (quic-go) cannot tell before the
// stream's end arrives, and an HTTP/2 client may end the stream with an
// empty DATA frame. Forwarded as it is, it would reach the upstream as
// "Transfer-Encoding: chunked" with an empty body, which strict HTTP/1.1
// servers refuse for a GET. So its first byte is read before the request is
// routed: at the end of the stream the request has no body (Content-Length
// 0); otherwise the byte is handed back before the rest. Other methods
// (POST, PUT, gRPC's streams) are left alone: their clients may wait for
// the response before they send, and must not wait on penstock.
type streamBody struct {
	first   [1]byte
	pending bool
	err     error
	r       io.ReadCloser
}

// peek reads the first byte of req's body and sets req to read from b.
func (b *streamBody) peek(req *exchange.Request) {
	if req.Body == nil || req.Body == http.NoBody {
		req.Body, req.ContentLength = http.NoBody, 0
		return
	}
	n, err := io.ReadFull(req.Body, b.first[:])
	switch {
	case n == 1:
		b.pending, b.r = true, req.Body
		req.Body = b
	case err == io.EOF:
		req.Body, req.ContentLength = http.NoBody, 0
	default:
		// The client reset the stream or broke the framing: the first read
		// of the body reports it, where the proxy's error handling is.
		b.err, b.r = err, req.Body
		req.Body = b
	}
}

func (b *streamBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.pending {
		if len(p) == 0 {
			return 0, nil
		}
		p[0] = b.first[0]
		b.pending = false
		return 1, nil
	}
	return b.r.Read(p)
}

func (b *streamBody) Close() error { return b.r.Close() }

func (b *streamBody) reset() { *b = streamBody{} }

// writeDeadliner is the per-stream write deadline of net/http's HTTP/2 and
// quic-go's HTTP/3 response writers (what http.ResponseController uses,
// without allocating one per request).
type writeDeadliner interface {
	SetWriteDeadline(time.Time) error
}

// extendSend moves the stream's write deadline to now + SendTimeout if it
// was last moved more than a quarter of SendTimeout ago.
func (rw *responseWriter) extendSend(now time.Time) {
	if now.Sub(rw.sendSet) < rw.sendTimeout/4 {
		return
	}
	rw.sendSet = now
	rw.deadline.SetWriteDeadline(now.Add(rw.sendTimeout))
}

// sendFailed reports a failed write to SendTimedOut when the write deadline
// had passed: the servers do not say why a stream ended (net/http's HTTP/2
// returns "stream closed" for a reset by deadline too).
func (rw *responseWriter) sendFailed(err error) {
	if err != nil && rw.sendTimedOut != nil && !rw.timedOut && !time.Now().Before(rw.sendSet.Add(rw.sendTimeout)) {
		rw.timedOut = true
		rw.sendTimedOut()
	}
}

// responseWriter implements exchange.ResponseWriter over http.ResponseWriter.
type responseWriter struct {
	w http.ResponseWriter
	// body holds the request body of a stream without Content-Length; see
	// streamBody.
	body streamBody
	// deadline, when set, is the stream's write deadline, moved on by
	// extendSend; sendSet is when it was last moved.
	deadline     writeDeadliner
	sendTimeout  time.Duration
	sendSet      time.Time
	sendTimedOut func()
	timedOut     bool
	hdr          exchange.Header
	http2        bool
	wroteHeader  bool
	// pushLimit bounds the body of a pushed response (0: not pushed);
	// written counts it, and overLimit makes ServeHTTP reset the stream.
	pushLimit int64
	written   int64
	overLimit bool
	// draining is Adapter.Draining for an HTTP/1.x request: when set at
	// WriteHeader, the response says "Connection: close".
	draining *atomic.Bool
	// chunked wraps a chunked request body (pooled with the writer).
	chunked chunkedBody
	// trailer holds the response's trailer fields (exchange.TrailerWriter).
	trailer exchange.Header
	// req is the request while its trailers may be read
	// (exchange.TrailerReader), else nil.
	req *http.Request
	// events is Adapter.EventStreams (and eventReq its request) when set;
	// eventStream: the response is an event stream, counted +1.
	events      func(*http.Request, int)
	eventReq    *http.Request
	eventStream bool
}

// Trailer implements exchange.TrailerWriter.
func (rw *responseWriter) Trailer() *exchange.Header { return &rw.trailer }

// ReadTrailer implements exchange.TrailerReader.
func (rw *responseWriter) ReadTrailer(dst *exchange.Header) {
	if rw.req == nil {
		return
	}
	for name, values := range rw.req.Trailer {
		for _, v := range values {
			dst.Add(name, v)
		}
	}
}

// sendTrailers hands the response's trailer fields to net/http (or quic-go)
// under http.TrailerPrefix, which both send after the body once the
// handler returns: HTTP/2 and HTTP/3 as a final HEADERS frame, HTTP/1.1 in
// a chunked body's trailer section, and only to a client that said it
// accepts them with "TE: trailers" (RFC 9112 §7.1.2; net/http does not ask).
func (rw *responseWriter) sendTrailers(r *http.Request) {
	if !rw.wroteHeader {
		return
	}
	if r.ProtoMajor == 1 && !acceptsTrailers(r.Header) {
		return
	}
	h := rw.w.Header()
	rw.trailer.Range(func(name, value string) bool {
		k := http.TrailerPrefix + http.CanonicalHeaderKey(name)
		h[k] = append(h[k], strings.Clone(value))
		return true
	})
}

// acceptsTrailers reports a TE field listing "trailers".
func acceptsTrailers(h http.Header) bool {
	for _, v := range h.Values("Te") {
		for tok := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "trailers") {
				return true
			}
		}
	}
	return false
}

// chunkedBody reports net/http's chunked-coding errors as
// exchange.ErrBadRequestBody, as the native engine's body reader does: a
// client's malformed framing is the client's 400, never an upstream
// failure. What is not a framing error (the connection failing, a read
// after Close, a size limit) passes unchanged.
type chunkedBody struct{ rc io.ReadCloser }

func (b *chunkedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil && err != io.EOF && isFramingError(err) {
		err = fmt.Errorf("%w: %w", exchange.ErrBadRequestBody, err)
	}
	return n, err
}

func (b *chunkedBody) Close() error { return b.rc.Close() }

// isFramingError tells net/http's chunked reader's own errors (unexported
// values: a malformed chunk line, a line too long) from everything else.
func isFramingError(err error) bool {
	var ne net.Error
	var mbe *http.MaxBytesError
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, http.ErrBodyReadAfterClose),
		errors.Is(err, net.ErrClosed), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &ne), errors.As(err, &mbe):
		return false
	}
	return true
}

func (rw *responseWriter) reset() {
	rw.w = nil
	rw.body.reset()
	rw.deadline, rw.sendTimeout, rw.sendSet, rw.sendTimedOut, rw.timedOut = nil, 0, time.Time{}, nil, false
	rw.hdr.Reset()
	rw.wroteHeader = false
	rw.pushLimit, rw.written, rw.overLimit, rw.draining = 0, 0, false, nil
	rw.chunked.rc = nil
	rw.trailer.Reset()
	rw.req = nil
	rw.events, rw.eventReq, rw.eventStream = nil, nil, false
}

// errPushTooLarge stops a pushed response that outgrew push.max_bytes.
var errPushTooLarge = errors.New("stdhttp: pushed response exceeds push.max_bytes")

// Push implements exchange.Pusher with net/http's HTTP/2 server push. The
// promised request is served by the same Adapter on its own goroutine;
// net/http returns once the PUSH_PROMISE is written, and ErrNotSupported
// when the client disabled push (SETTINGS_ENABLE_PUSH=0), as browsers and
// Go's own client do.
func (rw *responseWriter) Push(target string, maxBytes int64) error {
	p, ok := rw.w.(http.Pusher)
	if !ok || !rw.http2 {
		return http.ErrNotSupported
	}
	return p.Push(target, &http.PushOptions{Header: http.Header{
		pushHeader: {strconv.FormatInt(maxBytes, 10)},
	}})
}

func (rw *responseWriter) Header() *exchange.Header { return &rw.hdr }

func (rw *responseWriter) WriteHeader(status int) {
	if rw.wroteHeader {
		return
	}
	h := rw.w.Header()
	clear(h)
	// net/http keeps the map past this call, and our header's strings alias a
	// reused buffer: clone them.
	rw.hdr.Range(func(name, value string) bool {
		k := http.CanonicalHeaderKey(strings.Clone(name))
		h[k] = append(h[k], strings.Clone(value))
		return true
	})
	if status >= 200 || status == http.StatusSwitchingProtocols {
		rw.wroteHeader = true
		if rw.draining != nil && rw.draining.Load() && status != http.StatusSwitchingProtocols {
			h.Set("Connection", "close")
		}
		if rw.events != nil && status == http.StatusOK {
			if ct, ok := rw.hdr.Get("Content-Type"); ok && engine.IsEventStream(ct) {
				rw.eventStream = true
				rw.events(rw.eventReq, 1)
			}
		}
	}
	rw.w.WriteHeader(status)
}

func (rw *responseWriter) Write(p []byte) (int, error) {
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
	}
	if rw.pushLimit > 0 {
		if rw.written+int64(len(p)) > rw.pushLimit {
			rw.overLimit = true
			return 0, errPushTooLarge
		}
		rw.written += int64(len(p))
	}
	if rw.deadline == nil {
		return rw.w.Write(p)
	}
	rw.extendSend(time.Now())
	n, err := rw.w.Write(p)
	rw.sendFailed(err)
	return n, err
}

func (rw *responseWriter) Flush() error {
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
	}
	if rw.deadline == nil {
		return http.NewResponseController(rw.w).Flush()
	}
	rw.extendSend(time.Now())
	err := http.NewResponseController(rw.w).Flush()
	rw.sendFailed(err)
	return err
}

func (rw *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if rw.http2 {
		return nil, nil, exchange.ErrNotHijackable
	}
	return http.NewResponseController(rw.w).Hijack()
}
