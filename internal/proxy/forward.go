// Package proxy is the last stage of every route: it forwards the exchange to
// an endpoint of the route's upstream pool and streams the response back.
package proxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/failure"
	"github.com/penstock-dev/penstock/internal/metrics"
	"github.com/penstock-dev/penstock/internal/tracecontext"
	"github.com/penstock-dev/penstock/internal/tracing"
	"github.com/penstock-dev/penstock/internal/upstream"
)

// Forwarder sends exchanges to one upstream pool. It is built once per route
// when a config is compiled and is safe for concurrent use.
type Forwarder struct {
	// Pool is the route's upstream. Required.
	Pool *upstream.Pool
	// ConnectTimeout bounds dialing an endpoint; 0 means no bound beyond the
	// request's own.
	ConnectTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for the response headers after
	// the request was sent; 0 means none.
	ResponseHeaderTimeout time.Duration
	// RequestTimeout bounds the whole exchange, body streaming included; 0
	// means none.
	RequestTimeout time.Duration
	// Logger receives one line per failed exchange. Nil means slog.Default.
	Logger *slog.Logger
	// Tracer records a client span per attempt. Nil records none.
	Tracer *tracing.Tracer
	// EndpointMetrics are the pre-resolved metrics of each endpoint of Pool.
	// Missing entries record nothing.
	EndpointMetrics map[*upstream.Endpoint]*metrics.Upstream
}

// errResponseHeaderTimeout cancels an upstream request whose headers did not
// arrive within ResponseHeaderTimeout.
var errResponseHeaderTimeout = errors.New("upstream response header timeout")

// copyBufPool holds the buffers bodies are copied through (32 KiB, the size
// io.Copy would allocate per call).
var copyBufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// maxConnectAttempts bounds the endpoints one request may try when
// connecting fails. A failed connect sent nothing, so trying another endpoint
// is safe for every method (NGINX's proxy_next_upstream error, on by
// default); the bound keeps a dead pool from multiplying each request's
// latency.
const maxConnectAttempts = 3

// headerPool holds the outgoing request headers.
var headerPool = sync.Pool{New: func() any { return new(exchange.Header) }}

// ServeExchange implements exchange.Handler.
func (f *Forwarder) ServeExchange(x *exchange.Exchange) {
	if len(f.Pool.Endpoints) > 0 && f.Pool.Endpoints[0].H1() != nil {
		f.serveH1(x)
		return
	}
	f.serveStd(x)
}

// serveStd forwards through net/http's Transport (HTTP/2 pools, and h1
// pools configured with client: stdhttp).
func (f *Forwarder) serveStd(x *exchange.Exchange) {
	ctx := x.Ctx
	if f.RequestTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.RequestTimeout)
		defer cancel()
	}
	ctx, cancelCause := context.WithCancelCause(ctx)
	defer cancelCause(nil)
	ctx = upstream.WithConnectTimeout(ctx, f.ConnectTimeout)

	upgrade := upgradeToken(x)
	xh := headerPool.Get().(*exchange.Header)
	defer headerPool.Put(xh)
	outgoingHeader(x, xh, x.State.TrustedPeer, upgrade)
	var body *attemptBody
	if x.Req.ContentLength != 0 {
		body = &attemptBody{r: x.Req.Body}
	}

	if body != nil {
		defer func() { x.State.BytesIn = body.n }()
	}
	var tried [maxConnectAttempts]*upstream.Endpoint
	for n := 0; ; n++ {
		ep := f.nextAttempt(x, &tried, n)
		if ep == nil {
			return
		}

		// Each attempt is a child span: the upstream sees its id as parent.
		spanID, endSpan := f.Tracer.StartClient(x, f.Pool.Name, ep.Address, n+1)
		setTraceHeaders(xh, &x.State.Trace, spanID)

		out := &http.Request{
			Method:     x.Req.Method,
			URL:        f.upstreamURL(ep, x),
			Proto:      "HTTP/1.1",
			ProtoMajor: 1,
			ProtoMinor: 1,
			Header:     stdHeader(xh),
			Host:       x.Req.Host,
		}
		if body != nil {
			out.Body = body
			out.ContentLength = x.Req.ContentLength
		}
		out = out.WithContext(ctx)

		ep.Begin()
		sent := time.Now()
		resp, err := f.roundTrip(ep, out, cancelCause)
		wait := time.Since(sent)
		x.State.UpstreamWait += wait
		f.recordAttempt(ep, wait, ctx, err)
		if err != nil {
			endSpan(0, err)
			ep.Done()
			var dialErr *upstream.DialError
			if errors.As(err, &dialErr) && n+1 < maxConnectAttempts && (body == nil || body.n == 0) &&
				ctx.Err() == nil {
				ep.ReportFailure(f.Pool.MaxFails, f.Pool.FailTimeout)
				f.log().Debug("connect failed; trying another endpoint", "request_id", x.State.RequestID,
					"endpoint", ep.Address, "error", err)
				continue
			}
			f.roundTripFailed(x, ep, ctx, err)
			return
		}
		ep.ReportSuccess()
		endSpan(resp.StatusCode, nil)
		f.respond(x, ep, resp)
		ep.Done()
		return
	}
}

// nextAttempt picks the endpoint of attempt n (0-based) and records it in
// tried and x's state. When there is none it answers x through the error
// funnel (503 before any attempt, 502 once every endpoint tried failed to
// connect) and returns nil.
func (f *Forwarder) nextAttempt(x *exchange.Exchange, tried *[maxConnectAttempts]*upstream.Endpoint, n int) *upstream.Endpoint {
	ep := f.pick(time.Now().UnixNano(), tried[:n])
	if ep == nil {
		if n == 0 {
			f.fail(x, failure.NoHealthyEndpoint, nil)
		} else {
			f.fail(x, failure.UpstreamConnect, errors.New("every endpoint tried failed to connect"))
		}
		return nil
	}
	tried[n] = ep
	x.State.Endpoint = ep.Address
	x.State.Attempts++
	return ep
}

// pick chooses an endpoint not tried yet for this request, or nil.
func (f *Forwarder) pick(now int64, tried []*upstream.Endpoint) *upstream.Endpoint {
	// The balancer may offer a tried endpoint again (it is still healthy
	// until max_fails is reached); ask a few times before giving up.
	for range 2 * len(f.Pool.Endpoints) {
		ep := f.Pool.Pick(now)
		if ep == nil || !slices.Contains(tried, ep) {
			return ep
		}
	}
	return nil
}

// roundTrip sends out to ep, cancelling it when the response headers take
// longer than ResponseHeaderTimeout.
func (f *Forwarder) roundTrip(ep *upstream.Endpoint, out *http.Request, cancel context.CancelCauseFunc) (*http.Response, error) {
	if f.ResponseHeaderTimeout > 0 {
		t := time.AfterFunc(f.ResponseHeaderTimeout, func() { cancel(errResponseHeaderTimeout) })
		defer t.Stop()
	}
	return ep.Transport().RoundTrip(out)
}

// respond relays the upstream response to the client.
func (f *Forwarder) respond(x *exchange.Exchange, ep *upstream.Endpoint, resp *http.Response) {
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		backend, ok := resp.Body.(io.ReadWriteCloser)
		if !ok {
			f.fail(x, failure.UpstreamProtocol, nil)
			return
		}
		f.switchProtocols(x, resp.Header, backend)
		return
	}
	copyResponseHeader(x.W.Header(), resp.Header)
	x.State.Status = resp.StatusCode
	x.W.WriteHeader(resp.StatusCode)
	if resp.ContentLength < 0 {
		// A stream (server-sent events, chunked) may not send its first
		// bytes for a while; the client should see the status and headers
		// now, not with the first event.
		x.W.Flush()
	}
	if err := f.streamBody(x, resp.Body, resp.ContentLength < 0); err != nil && x.Ctx.Err() == nil {
		f.log().Warn("upstream body interrupted", "request_id", x.State.RequestID,
			"route", x.State.RouteName, "endpoint", ep.Address, "error", err)
		// The status is already sent: the engine must cut the stream
		// (HTTP/2 RST_STREAM, HTTP/1.1 closed connection) so the client
		// cannot mistake a truncated body for a complete one.
		x.State.Aborted = true
	}
}

// attemptBody is the request body as the transport sees it. It counts what
// was read, so a failed attempt can be retried only if nothing was sent, and
// ignores Close: the transport closes a request body when a round trip
// fails, but the body must survive for the next attempt (the engine closes
// the real body when the exchange ends).
type attemptBody struct {
	r io.Reader
	n int64
}

func (b *attemptBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.n += int64(n)
	return n, err
}

func (b *attemptBody) Close() error { return nil }

// upstreamURL addresses ep with the client's path and query, byte for byte.
func (f *Forwarder) upstreamURL(ep *upstream.Endpoint, x *exchange.Exchange) *url.URL {
	u := &url.URL{Scheme: f.Pool.Scheme, Host: ep.URLHost(), RawQuery: x.Req.Query}
	if p, err := url.PathUnescape(x.Req.Path); err == nil {
		u.Path, u.RawPath = p, x.Req.Path
	} else {
		// Not a valid escape sequence: pass the path through untouched.
		u.Opaque = x.Req.Path
	}
	return u
}

// roundTripFailed maps a failed round trip through the error funnel.
func (f *Forwarder) roundTripFailed(x *exchange.Exchange, ep *upstream.Endpoint, ctx context.Context, err error) {
	var dialErr *upstream.DialError
	switch {
	case x.Ctx.Err() != nil:
		// The client went away; nobody is left to answer. 499 is the
		// established log convention for this (NGINX).
		x.State.Status = 499
		return
	case errors.Is(err, failure.ErrBodyTooLarge):
		x.W.Header().Set("Connection", "close")
		f.fail(x, failure.BodyTooLarge, err)
	case errors.As(err, &dialErr) && !errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		ep.ReportFailure(f.Pool.MaxFails, f.Pool.FailTimeout)
		f.fail(x, failure.UpstreamConnect, err)
	case errors.As(err, &dialErr):
		// Connect timeout: the endpoint did not answer in time.
		ep.ReportFailure(f.Pool.MaxFails, f.Pool.FailTimeout)
		f.fail(x, failure.UpstreamTimeout, err)
	case errors.Is(context.Cause(ctx), errResponseHeaderTimeout), errors.Is(err, context.DeadlineExceeded), errors.Is(ctx.Err(), context.DeadlineExceeded),
		errors.Is(err, upstream.ErrResponseHeaderTimeout), errors.Is(err, os.ErrDeadlineExceeded):
		f.fail(x, failure.UpstreamTimeout, err)
	default:
		f.fail(x, failure.UpstreamProtocol, err)
	}
}

func (f *Forwarder) fail(x *exchange.Exchange, code failure.Code, err error) {
	if err != nil {
		x.State.Error = err.Error()
	}
	attrs := []any{"request_id", x.State.RequestID, "route", x.State.RouteName,
		"upstream", f.Pool.Name, "endpoint", x.State.Endpoint, "status", code.Status(), "error_kind", string(code)}
	if err != nil {
		attrs = append(attrs, "error", err.Error())
	}
	f.log().Warn("proxy failure", attrs...)
	failure.Fail(x, code)
}

func (f *Forwarder) log() *slog.Logger {
	if f.Logger != nil {
		return f.Logger
	}
	return slog.Default()
}

// streamBody copies the response body to the client. Bodies of unknown
// length (chunked, server-sent events) are flushed after every read so each
// event reaches the client when the upstream sends it; bodies of known length
// are flushed once at the end by the engine.
func (f *Forwarder) streamBody(x *exchange.Exchange, body io.Reader, flushEach bool) error {
	bp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bp)
	buf := *bp
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			w, werr := x.W.Write(buf[:n])
			x.State.BytesOut += int64(w)
			if werr != nil {
				return werr
			}
			if flushEach {
				if err := x.W.Flush(); err != nil {
					return err
				}
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// recordAttempt counts one upstream attempt by outcome.
func (f *Forwarder) recordAttempt(ep *upstream.Endpoint, d time.Duration, ctx context.Context, err error) {
	m := f.EndpointMetrics[ep]
	if m == nil {
		return
	}
	outcome := "ok"
	switch {
	case err == nil:
	case errors.Is(context.Cause(ctx), errResponseHeaderTimeout), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, upstream.ErrResponseHeaderTimeout), errors.Is(err, os.ErrDeadlineExceeded):
		outcome = "timeout"
	case isDialError(err):
		outcome = "connect_error"
	default:
		outcome = "error"
	}
	m.Attempt(d, outcome)
}

// setTraceHeaders writes the trace context for the upstream: always W3C
// traceparent (replacing the client's, whose parent is now penstock's span),
// tracestate passed on unchanged, and B3 when the client spoke B3.
func setTraceHeaders(h *exchange.Header, tc *tracecontext.Context, span [8]byte) {
	var buf [64]byte
	h.Del("Traceparent")
	h.Add("Traceparent", bytesString(tc.AppendTraceparent(buf[:0], span)))
	if tc.State != "" {
		h.Set("Tracestate", tc.State)
	}
	if tc.From == tracecontext.B3Single || tc.From == tracecontext.B3Multi {
		for _, k := range [...]string{"X-B3-Traceid", "X-B3-Spanid", "X-B3-Parentspanid", "X-B3-Sampled", "X-B3-Flags"} {
			h.Del(k)
		}
		h.Del("B3")
		h.Add("B3", bytesString(tc.AppendB3(buf[:0], span)))
	}
}
