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
	"sync"
	"time"

	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/pipeline"
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
}

// errResponseHeaderTimeout cancels an upstream request whose headers did not
// arrive within ResponseHeaderTimeout.
var errResponseHeaderTimeout = errors.New("upstream response header timeout")

// copyBufPool holds the buffers bodies are copied through (32 KiB, the size
// io.Copy would allocate per call).
var copyBufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// ServeExchange implements exchange.Handler.
func (f *Forwarder) ServeExchange(x *exchange.Exchange) {
	now := time.Now().UnixNano()
	ep := f.Pool.Pick(now)
	if ep == nil {
		f.fail(x, pipeline.NoHealthyEndpoint, nil)
		return
	}
	x.State.Endpoint = ep.Address
	x.State.Attempts++

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
	out := &http.Request{
		Method:     x.Req.Method,
		URL:        f.upstreamURL(ep, x),
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     outgoingHeader(x, x.State.TrustedPeer, upgrade),
		Host:       x.Req.Host,
	}
	if x.Req.ContentLength != 0 {
		out.Body = x.Req.Body
		out.ContentLength = x.Req.ContentLength
	}
	out = out.WithContext(ctx)

	var headerTimer *time.Timer
	if f.ResponseHeaderTimeout > 0 {
		headerTimer = time.AfterFunc(f.ResponseHeaderTimeout, func() { cancelCause(errResponseHeaderTimeout) })
	}
	ep.Begin()
	defer ep.Done()
	resp, err := ep.Transport().RoundTrip(out)
	if headerTimer != nil {
		headerTimer.Stop()
	}
	if err != nil {
		f.roundTripFailed(x, ep, ctx, err)
		return
	}
	ep.ReportSuccess()
	defer resp.Body.Close()

	if resp.StatusCode == http.StatusSwitchingProtocols {
		f.switchProtocols(x, resp)
		return
	}

	copyResponseHeader(x.W.Header(), resp.Header)
	x.State.Status = resp.StatusCode
	x.W.WriteHeader(resp.StatusCode)
	if err := f.streamBody(x, resp); err != nil && x.Ctx.Err() == nil {
		f.log().Warn("upstream body interrupted", "request_id", x.State.RequestID,
			"route", x.State.RouteName, "endpoint", ep.Address, "error", err)
		// The status is already sent: the engine must cut the stream
		// (HTTP/2 RST_STREAM, HTTP/1.1 closed connection) so the client
		// cannot mistake a truncated body for a complete one.
		x.State.Aborted = true
	}
}

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
	case errors.Is(err, pipeline.ErrBodyTooLarge):
		x.W.Header().Set("Connection", "close")
		f.fail(x, pipeline.BodyTooLarge, err)
	case errors.As(err, &dialErr) && !errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		ep.ReportFailure(f.Pool.MaxFails, f.Pool.FailTimeout)
		f.fail(x, pipeline.UpstreamConnect, err)
	case errors.As(err, &dialErr):
		// Connect timeout: the endpoint did not answer in time.
		ep.ReportFailure(f.Pool.MaxFails, f.Pool.FailTimeout)
		f.fail(x, pipeline.UpstreamTimeout, err)
	case errors.Is(context.Cause(ctx), errResponseHeaderTimeout), errors.Is(err, context.DeadlineExceeded), errors.Is(ctx.Err(), context.DeadlineExceeded):
		f.fail(x, pipeline.UpstreamTimeout, err)
	default:
		f.fail(x, pipeline.UpstreamProtocol, err)
	}
}

func (f *Forwarder) fail(x *exchange.Exchange, code pipeline.Code, err error) {
	attrs := []any{"request_id", x.State.RequestID, "route", x.State.RouteName,
		"upstream", f.Pool.Name, "endpoint", x.State.Endpoint, "status", code.Status(), "error_kind", string(code)}
	if err != nil {
		attrs = append(attrs, "error", err.Error())
	}
	f.log().Warn("proxy failure", attrs...)
	pipeline.Fail(x, code)
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
func (f *Forwarder) streamBody(x *exchange.Exchange, resp *http.Response) error {
	bp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bp)
	buf := *bp
	flushEach := resp.ContentLength < 0
	for {
		n, rerr := resp.Body.Read(buf)
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
