package upstream

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/penstock-dev/penstock/internal/exchange"
)

// StdClient is the Client of endpoints that net/http (or quic-go's http3)
// speaks to: HTTP/2 over TLS, h2c, HTTP/3, and HTTP/1.1 pools configured
// with client: stdhttp. It adapts a Request to an *http.Request and the
// *http.Response back into a Response, so the proxy sees one client
// whatever carries the request. Unlike H1Client it allocates per request
// (net/http's request, header map and goroutines).
type StdClient struct {
	e *Endpoint
	// scheme is "http" or "https" for the request URL; the transport's own
	// dialer decides where the connection goes.
	scheme string
	rt     http.RoundTripper
	// multiplexed: HTTP/2 (h2, h2c), whose requests share connections;
	// gate then holds a burst on a cold endpoint until the first
	// connection is up.
	multiplexed bool
	gate        coldGate
}

// coldGate keeps a burst of requests to a multiplexed endpoint without a
// connection from dialing one connection each: net/http's HTTP/2 pool
// learns of a connection only once it is up, so every request that finds
// none dials, and the pool keeps them all (2 to 11 connections for a
// burst of 64 streams in TestH2UpstreamMultiplexesStreams). The first request of
// the burst dials; the others wait until it has its connection
// (httptrace GotConn) or has failed, then share it. Cost on a warm
// endpoint: two atomic loads per request.
type coldGate struct {
	mu   sync.Mutex
	wait chan struct{}
	// busy is set while a first request dials: a connection counted
	// open (Endpoint.open, from its dial on) is not yet one net/http's
	// pool hands out, so requests wait while it is set too.
	busy atomic.Bool
}

// enter lets r through the gate: at once if it is the first, with r
// traced so that the gate opens when it has its connection (open, also to
// be called once the round trip returns); else after the first.
func (g *coldGate) enter(r *http.Request) (_ *http.Request, open func()) {
	g.mu.Lock()
	if w := g.wait; w != nil {
		g.mu.Unlock()
		select {
		case <-w:
		case <-r.Context().Done():
		}
		return r, func() {}
	}
	w := make(chan struct{})
	g.wait = w
	g.busy.Store(true)
	g.mu.Unlock()
	var once sync.Once
	open = func() {
		once.Do(func() {
			g.mu.Lock()
			g.wait = nil
			g.busy.Store(false)
			g.mu.Unlock()
			close(w)
		})
	}
	trace := &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { open() }}
	return r.WithContext(httptrace.WithClientTrace(r.Context(), trace)), open
}

// errNotReplayable is the request body's answer when net/http asks for it
// again after part of it was read: the request cannot be sent twice.
var errNotReplayable = errors.New("request body already partly sent")

// RoundTrip implements Client.
func (c *StdClient) RoundTrip(parent context.Context, req *Request, resp *Response) error {
	if parent.Err() != nil {
		return c.e.errorf(ctxKind(parent), context.Cause(parent))
	}
	ctx := parent
	var cancelDeadline context.CancelFunc = func() {}
	if !req.Deadline.IsZero() {
		ctx, cancelDeadline = context.WithDeadline(ctx, req.Deadline)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	end := func() { cancel(nil); cancelDeadline() }
	ctx = withConnectTimeout(ctx, req.ConnectTimeout)

	// net/http gets copies of the request's strings, which may point into
	// the engine's connection buffer: its HTTP/2 client keeps :method,
	// :path and :authority in the connection's HPACK table after the
	// exchange, and a buffer rewritten under the table would corrupt it,
	// sending later requests another target.
	out := &http.Request{
		Method:     strings.Clone(req.Method),
		URL:        c.url(req),
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     stdRequestHeader(req.Header),
		Host:       strings.Clone(req.Host),
	}
	if out.Host == "" {
		out.Host = c.e.urlHost
	}
	var body *stdBody
	if req.Body != nil && req.ContentLength != 0 {
		body = newStdBody(req.Body)
		out.Body, out.ContentLength = body, req.ContentLength
		// net/http sends a request again on a new connection when a reused
		// one failed before the response (RFC 9112 §9.3.1), or when an
		// HTTP/2 upstream's GOAWAY or REFUSED_STREAM says the stream was
		// not processed (RFC 9113 §8.7), if it can have the body again: it
		// can while what was read of it is kept (stdBody.again).
		out.GetBody = body.again
		if req.Trailer != nil && req.ContentLength < 0 {
			// net/http sends the fields of out.Trailer after the body
			// (HTTP/2 and HTTP/3: a HEADERS frame ending the stream); the
			// map must exist before the body starts, and be filled before
			// the body's last read returns io.EOF.
			out.Trailer = make(http.Header)
			body.trailer, body.out = req.Trailer, out.Trailer
			// The names announced in a Trailer field are declared now:
			// net/http sends them in the request's own Trailer field, and
			// its servers keep only trailers declared so.
			for _, v := range out.Header.Values("Trailer") {
				for name := range strings.SplitSeq(v, ",") {
					if name = strings.TrimSpace(name); name != "" {
						out.Trailer[http.CanonicalHeaderKey(name)] = nil
					}
				}
			}
			out.Header.Del("Trailer")
		}
	}
	out = out.WithContext(ctx)

	var timer *time.Timer
	if req.ResponseHeaderTimeout > 0 {
		timer = time.AfterFunc(req.ResponseHeaderTimeout, func() { cancel(ErrResponseHeaderTimeout) })
	}
	opened := func() {}
	if c.multiplexed && (c.e.open.Load() == 0 || c.gate.busy.Load()) {
		out, opened = c.gate.enter(out)
	}
	hr, err := c.rt.RoundTrip(out)
	opened()
	if timer != nil {
		timer.Stop()
	}
	if body != nil {
		req.BodyRead = body.n.Load()
		// A response arrived (or the round trip failed for good): net/http
		// asks for the body no more, and a long body (a gRPC stream) is
		// not kept for nothing.
		body.settle()
	}
	if err != nil {
		end()
		return c.failed(parent, ctx, body, err)
	}
	resp.fromStd(&stdExchange{e: c.e, resp: hr, parent: parent, ctx: ctx, end: end, body: body, req: req})
	return nil
}

// failed classifies a failed round trip.
func (c *StdClient) failed(parent, ctx context.Context, body *stdBody, err error) error {
	var ue *Error
	switch {
	case parent.Err() != nil:
		return c.e.errorf(ctxKind(parent), context.Cause(parent))
	case body != nil && body.failed() != nil:
		return c.e.errorf(KindClientBody, body.failed())
	case errors.As(err, &ue):
		// The dialer's.
		return err
	case errors.Is(context.Cause(ctx), ErrResponseHeaderTimeout):
		return c.e.errorf(KindTimeout, ErrResponseHeaderTimeout)
	case deadlinePassed(ctx):
		// Whatever broke the round trip (often the upstream resetting
		// the stream on its own copy of the deadline, as gRPC servers do
		// with grpc-timeout), the request's deadline is what ended it.
		return c.e.errorf(KindTimeout, err)
	case isTimeout(err):
		return c.e.errorf(KindTimeout, err)
	case errors.Is(err, errNotReplayable), isReset(err):
		return c.e.errorf(KindReset, err)
	}
	return c.e.errorf(KindProtocol, err)
}

// deadlinePassed reports whether ctx's deadline has passed, whether or not
// its timer has fired yet.
func deadlinePassed(ctx context.Context) bool {
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

// isReset reports a connection that ended under a request.
func isReset(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		strings.Contains(err.Error(), "server closed idle connection")
}

// url addresses the endpoint with the request's path and query, byte for
// byte, copied (see RoundTrip).
func (c *StdClient) url(req *Request) *url.URL {
	u := &url.URL{Scheme: c.scheme, Host: c.e.urlHost, RawQuery: strings.Clone(req.Query)}
	path := strings.Clone(req.Path)
	if path == "" {
		path = "/"
	}
	if p, err := url.PathUnescape(path); err == nil {
		u.Path, u.RawPath = p, path
	} else {
		// Not a valid escape sequence: pass the path through untouched.
		u.Opaque = path
	}
	return u
}

// CloseIdle implements Client.
func (c *StdClient) CloseIdle() {
	if t, ok := c.rt.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
}

// Close implements Client. An HTTP/3 transport owns its QUIC connections;
// closing it ends them.
func (c *StdClient) Close() {
	c.CloseIdle()
	if t, ok := c.rt.(io.Closer); ok {
		t.Close()
	}
}

// stdBody is the request body as net/http sees it. It counts what was read,
// keeps the first read error (the client's body failed, not the upstream),
// and ignores Close: net/http closes a request body when a round trip
// fails, but the body must survive for an attempt at another endpoint (the
// engine closes the real body when the exchange ends). net/http may read it
// from its own goroutine, even after the round trip returned; the caller's
// goroutine copies the count into Request.BodyRead.
//
// Until the round trip has its response it also keeps what was read, up
// to keepBodyMax, so that net/http can send the request again when the
// upstream did not process it (again): an HTTP/2 stream refused or past a
// GOAWAY's last stream id had part of its body read already.
type stdBody struct {
	r  io.Reader
	n  atomic.Int64
	mu sync.Mutex
	// Under mu.
	err error
	// kept is what was read from r while it may be sent again; replay is
	// how much of it the current attempt has read. keeping: still
	// recording (no response yet, no more than keepBodyMax read).
	kept             []byte
	replay           int
	keeping, overrun bool
	// trailer, when set, gives the request's trailer fields at the body's
	// end; they go into out, the outgoing request's Trailer map.
	trailer exchange.TrailerReader
	out     http.Header
}

// keepBodyMax is how much of a request body is kept for net/http to send
// again: the bodies of model and gRPC calls that fit in the first flight
// of an HTTP/2 stream. A stream refused after more than this was sent
// fails as before (KindReset), and the proxy's own retry rules apply.
const keepBodyMax = 64 << 10

func newStdBody(r io.Reader) *stdBody { return &stdBody{r: r, keeping: true} }

func (b *stdBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	if b.replay < len(b.kept) {
		n := copy(p, b.kept[b.replay:])
		b.replay += n
		b.mu.Unlock()
		return n, nil
	}
	b.mu.Unlock()
	n, err := b.r.Read(p)
	b.n.Add(int64(n))
	if n > 0 {
		b.mu.Lock()
		if b.keeping {
			if len(b.kept)+n <= keepBodyMax {
				b.kept = append(b.kept, p[:n]...)
				b.replay = len(b.kept)
			} else {
				b.keeping, b.overrun, b.kept = false, true, nil
			}
		}
		b.mu.Unlock()
	}
	if err == io.EOF && b.trailer != nil {
		var h exchange.Header
		b.trailer.ReadTrailer(&h)
		h.Range(func(name, value string) bool {
			k := http.CanonicalHeaderKey(strings.Clone(name))
			b.out[k] = append(b.out[k], strings.Clone(value))
			return true
		})
		b.trailer = nil
	}
	if err != nil && err != io.EOF {
		b.mu.Lock()
		if b.err == nil {
			b.err = err
		}
		b.mu.Unlock()
	}
	return n, err
}

// settle stops keeping what is read: the round trip is over.
func (b *stdBody) settle() {
	b.mu.Lock()
	b.keeping, b.kept, b.replay = false, nil, 0
	b.mu.Unlock()
}

func (b *stdBody) Close() error { return nil }

// failed returns the first error reading the body, if any.
func (b *stdBody) failed() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// again is the request's GetBody: the body from its start, what was read
// of it replayed from kept, then the rest. It fails once the body failed,
// outgrew keepBodyMax, or the round trip ended.
func (b *stdBody) again() (io.ReadCloser, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil || b.overrun || !b.keeping && b.n.Load() != 0 {
		return nil, errNotReplayable
	}
	b.replay = 0
	return b, nil
}

// stdExchange is what a Response filled by StdClient holds.
type stdExchange struct {
	e      *Endpoint
	resp   *http.Response
	parent context.Context // the caller's
	ctx    context.Context // the request's, under Request.Deadline
	end    func()
	body   *stdBody
	req    *Request
}

// fromStd fills r from net/http's response.
func (r *Response) fromStd(x *stdExchange) {
	hr := x.resp
	r.std = x
	r.c, r.conn, r.req = nil, nil, nil
	r.Status, r.ProtoMinor, r.ContentLength = hr.StatusCode, hr.ProtoMinor, hr.ContentLength
	r.kind, r.err, r.keepAlive = bodyNone, nil, false
	r.Header.Reset()
	r.Trailer.Reset()
	for name, values := range hr.Header {
		for _, v := range values {
			r.Header.Add(name, v)
		}
	}
}

func (x *stdExchange) read(r *Response, p []byte) (int, error) {
	n, err := x.resp.Body.Read(p)
	if err == io.EOF && r.Trailer.Len() == 0 {
		// net/http fills the response's Trailer once the body ended.
		for name, values := range x.resp.Trailer {
			for _, v := range values {
				r.Trailer.Add(name, v)
			}
		}
		return n, err
	}
	if err == nil {
		return n, err
	}
	kind := KindTruncated
	switch {
	case x.parent.Err() != nil:
		kind = ctxKind(x.parent)
	case errors.Is(x.ctx.Err(), context.DeadlineExceeded), deadlinePassed(x.ctx), isTimeout(err):
		kind = KindTimeout
	}
	r.err = x.e.errorf(kind, err)
	return n, r.err
}

func (x *stdExchange) upgrade(r *Response) (io.ReadWriteCloser, error) {
	rwc, ok := x.resp.Body.(io.ReadWriteCloser)
	if r.Status != 101 || !ok {
		return nil, x.e.errorf(KindProtocol, errors.New("not a protocol switch"))
	}
	return rwc, nil
}

func (x *stdExchange) close(r *Response) {
	x.resp.Body.Close()
	x.end()
	if x.body != nil {
		x.req.BodyRead = x.body.n.Load()
	}
	r.std = nil
}

// stdRequestHeader converts h for net/http, canonicalizing the names. The
// strings are copied: h's buffer is reused, and net/http may hold the map
// longer than the exchange.
func stdRequestHeader(h *exchange.Header) http.Header {
	if h == nil {
		return make(http.Header)
	}
	out := make(http.Header, h.Len())
	h.Range(func(name, value string) bool {
		if exchange.EqualFold(name, "Host") || exchange.EqualFold(name, "Content-Length") ||
			exchange.EqualFold(name, "Transfer-Encoding") {
			return true
		}
		k := http.CanonicalHeaderKey(strings.Clone(name))
		out[k] = append(out[k], strings.Clone(value))
		return true
	})
	return out
}
