package proxy

import (
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/failure"
	"github.com/penstock-dev/penstock/internal/requestid"
	"github.com/penstock-dev/penstock/internal/upstream"
)

// h1State is the per-request memory of the native HTTP/1.1 path, pooled so
// that a proxied request allocates nothing once warm.
type h1State struct {
	header exchange.Header
	req    upstream.H1Request
	resp   upstream.H1Response
}

// maxInterimResponses bounds the 1xx responses relayed before the final
// one: each restarts the response header timeout, so an upstream sending
// them without end would otherwise hold the request forever.
const maxInterimResponses = 16

var errTooManyInterim = errors.New("upstream sent too many interim (1xx) responses")

var h1StatePool = sync.Pool{New: func() any { return new(h1State) }}

// serveH1 forwards with penstock's own HTTP/1.1 client (upstream.H1Client).
// It follows serveStd step for step (endpoint choice, retries on connect
// failure, passive health, spans, metrics, error funnel); the timeouts are
// connection deadlines rather than a context and a timer per request.
func (f *Forwarder) serveH1(x *exchange.Exchange) {
	st := h1StatePool.Get().(*h1State)
	defer func() {
		st.req = upstream.H1Request{}
		h1StatePool.Put(st)
	}()
	upgrade := upgradeToken(x)
	outgoingHeader(x, &st.header, x.State.TrustedPeer, upgrade)
	req := &st.req
	*req = upstream.H1Request{
		Method:                x.Req.Method,
		Path:                  x.Req.Path,
		Query:                 x.Req.Query,
		Host:                  x.Req.Host,
		Header:                &st.header,
		ConnectTimeout:        f.ConnectTimeout,
		ResponseHeaderTimeout: f.ResponseHeaderTimeout,
	}
	if f.RequestTimeout > 0 {
		req.Deadline = time.Now().Add(f.RequestTimeout)
	}
	if x.Req.ContentLength != 0 {
		req.Body, req.ContentLength = x.Req.Body, x.Req.ContentLength
		defer func() { x.State.BytesIn = req.BodyRead }()
	}
	resp := &st.resp

	var tried [maxConnectAttempts]*upstream.Endpoint
	for n := 0; ; n++ {
		ep := f.nextAttempt(x, &tried, n)
		if ep == nil {
			return
		}

		// Each attempt is a child span: the upstream sees its id as parent.
		spanID, endSpan := f.Tracer.StartClient(x, f.Pool.Name, ep.Address, n+1)
		setTraceHeaders(&st.header, &x.State.Trace, spanID)

		ep.Begin()
		sent := time.Now()
		err := ep.H1().RoundTrip(x.Ctx, req, resp)
		for interim := 0; err == nil && resp.Status > 101 && resp.Status < 200; interim++ {
			if interim == maxInterimResponses {
				err = errTooManyInterim
				break
			}
			if resp.Status == http.StatusEarlyHints {
				relayEarlyHints(x, resp)
			}
			err = resp.Next()
		}
		wait := time.Since(sent)
		x.State.UpstreamWait += wait
		f.recordAttempt(ep, wait, x.Ctx, err)
		if err != nil {
			resp.Discard()
			endSpan(0, err)
			ep.Done()
			if n+1 < maxConnectAttempts && isDialError(err) && req.BodyRead == 0 && x.Ctx.Err() == nil &&
				(req.Deadline.IsZero() || time.Now().Before(req.Deadline)) {
				ep.ReportFailure(f.Pool.MaxFails, f.Pool.FailTimeout)
				f.log().Debug("connect failed; trying another endpoint", "request_id", x.State.RequestID,
					"endpoint", ep.Address, "error", err)
				continue
			}
			f.roundTripFailed(x, ep, x.Ctx, err)
			return
		}
		ep.ReportSuccess()
		endSpan(resp.Status, nil)
		f.respondH1(x, ep, resp)
		ep.Done()
		return
	}
}

// relayEarlyHints passes a 103 (Early Hints, RFC 8297) on to the client.
// Its fields belong to that interim response only, so they are taken out
// of the client response header again once it is written.
func relayEarlyHints(x *exchange.Exchange, resp *upstream.H1Response) {
	h := x.W.Header()
	copyResponseFields(h, &resp.Header)
	x.W.WriteHeader(http.StatusEarlyHints)
	resp.Header.Range(func(name, _ string) bool {
		if !exchange.EqualFold(name, requestid.Header) {
			h.Del(name)
		}
		return true
	})
}

// respondH1 relays a response read by the native client to the client.
func (f *Forwarder) respondH1(x *exchange.Exchange, ep *upstream.Endpoint, resp *upstream.H1Response) {
	defer resp.Close()
	if resp.Status == http.StatusSwitchingProtocols {
		backend, err := resp.Upgrade()
		if err != nil {
			f.fail(x, failure.UpstreamProtocol, err)
			return
		}
		f.switchProtocols(x, stdHeader(&resp.Header), backend)
		return
	}
	copyResponseFields(x.W.Header(), &resp.Header)
	x.State.Status = resp.Status
	x.W.WriteHeader(resp.Status)
	stream := resp.ContentLength < 0
	if stream {
		// A stream (server-sent events, chunked) may not send its first
		// bytes for a while; the client should see the status and headers
		// now, not with the first event.
		x.W.Flush()
	}
	if err := f.streamBody(x, resp, stream); err != nil && x.Ctx.Err() == nil {
		f.log().Warn("upstream body interrupted", "request_id", x.State.RequestID,
			"route", x.State.RouteName, "endpoint", ep.Address, "error", err)
		// The status is already sent: the engine must cut the stream so the
		// client cannot mistake a truncated body for a complete one.
		x.State.Aborted = true
	}
}

// isDialError reports a failure to connect. The target variable lives here
// so that the success path never pays for it escaping.
func isDialError(err error) bool {
	var dialErr *upstream.DialError
	return errors.As(err, &dialErr)
}
