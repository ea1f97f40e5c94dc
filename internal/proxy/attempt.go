package proxy

import (
	"errors"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/failure"
	"github.com/penstock-dev/penstock/internal/grpccall"
	"github.com/penstock-dev/penstock/internal/requestid"
	"github.com/penstock-dev/penstock/internal/upstream"
)

// forwardState is the per-request memory of a forwarded exchange, pooled so
// that a request through the native client allocates nothing once warm.
type forwardState struct {
	header exchange.Header
	req    upstream.Request
	resp   upstream.Response
	// held is the attempt whose response is held unsent (outcomeHeld).
	held heldAttempt
	// replay is the request body when it is kept to be sent again.
	replay replayBody
	// clientTrailer reads the client's request trailers, which ReadTrailer
	// passes on to the upstream client filtered.
	clientTrailer exchange.TrailerReader
	// trailer holds the client's trailer fields while ReadTrailer filters
	// them (pooled: a chunked body without trailers allocates nothing).
	trailer exchange.Header
}

// heldAttempt is what relaying or discarding a held response still needs
// of its attempt.
type heldAttempt struct {
	ep      *upstream.Endpoint
	wait    time.Duration
	endSpan func(status int, err error)
}

var forwardStatePool = sync.Pool{New: func() any { return new(forwardState) }}

// copyBufPool holds the buffers bodies are copied through (32 KiB, the size
// io.Copy would allocate per call).
var copyBufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// maxInterimResponses bounds the 1xx responses relayed before the final
// one: each restarts the response header timeout, so an upstream sending
// them without end would otherwise hold the request forever.
const maxInterimResponses = 16

var errTooManyInterim = errors.New("upstream sent too many interim (1xx) responses")

// ServeExchange implements exchange.Handler. It is the attempt loop: pick
// an endpoint, run one attempt through its client, classify the result,
// and either relay the response, try another endpoint as the route's retry
// policy allows, or answer through the error funnel.
func (f *Forwarder) ServeExchange(x *exchange.Exchange) {
	if x.Ctx.Err() != nil {
		// The client left before anything was sent (an HTTP/2 rapid
		// reset): no endpoint is picked and no connection touched. 499 is
		// the established log convention for this (NGINX).
		x.State.Status = 499
		return
	}
	st := forwardStatePool.Get().(*forwardState)
	defer func() {
		st.req = upstream.Request{}
		st.held = heldAttempt{}
		st.clientTrailer = nil
		forwardStatePool.Put(st)
	}()
	outgoingHeader(x, &st.header, x.State.TrustedPeer, f.upgradeToken(x))
	req := &st.req
	*req = upstream.Request{
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
	if x.Req.Trailer != nil {
		st.clientTrailer = x.Req.Trailer
		req.Trailer = st
		announceTrailers(&x.Req.Header, &st.header)
	}
	if grpccall.Classify(&x.Req) != grpccall.None {
		x.State.GRPC = true
		grpcDeadline(x, req)
	}
	p := f.retryPolicy()
	if x.Req.ContentLength != 0 {
		req.Body, req.ContentLength = x.Req.Body, x.Req.ContentLength
		defer func() { x.State.BytesIn = req.BodyRead }()
		if p.keepsBody(&x.Req) {
			defer st.replay.release()
			if err := st.replay.fill(x.Req.Body, x.Req.ContentLength); err != nil {
				req.BodyRead = int64(st.replay.off)
				f.refuse(x, clientBodyCode(err), err)
				return
			}
			req.Body = &st.replay
		}
	}
	if t := p.PerTryTimeout; t > 0 && (req.ResponseHeaderTimeout == 0 || t < req.ResponseHeaderTimeout) {
		req.ResponseHeaderTimeout = t
	}
	if p.Budget != nil {
		p.Budget.Request(monotime())
	}

	var tried [maxAttempts]*upstream.Endpoint
	ep := f.nextAttempt(x, &tried, 0)
	if ep == nil {
		return
	}
	defer f.recordRequest(x)
	if delay := f.hedgeDelay(x, p); delay > 0 {
		f.serveHedged(x, st, p, &tried, delay)
		return
	}
	for n := 0; ; n++ {
		o, err := f.attempt(x, ep, n, st, p)
		if o.answered() {
			return
		}
		r := o.rule().retry
		if o == outcomeHeld {
			r = statusReason(st.resp.Status)
		}
		next := f.retry(x, p, r, n+1, &tried, req)
		if next == nil {
			if o == outcomeHeld {
				f.deliver(x, st.take(), &st.resp)
			} else {
				f.failed(x, o, err)
			}
			return
		}
		if o == outcomeHeld {
			f.discard(st.take(), &st.resp)
		}
		f.log().Debug("attempt failed; trying another endpoint", "request_id", x.State.RequestID,
			"endpoint", ep.Address, "outcome", o.String(&st.resp), "error", err)
		ep = next
	}
}

// attempt is one try at one endpoint: the client span, the round trip,
// interim responses, then the response relayed to the client. It records
// the attempt's outcome in passive health and the endpoint's metrics and
// returns it with the client's error. A response whose status p retries,
// when another attempt may follow, is not relayed but held in st
// (outcomeHeld): the loop then relays it (deliver) or discards it
// (discard).
func (f *Forwarder) attempt(x *exchange.Exchange, ep *upstream.Endpoint, n int, st *forwardState, p *RetryPolicy) (outcome, error) {
	// Each attempt is a child span: the upstream sees its id as parent.
	spanID, endSpan := f.Tracer.StartClient(x, f.Pool.Name, ep.Address, n+1)
	setTraceHeaders(&st.header, &x.State.Trace, spanID)
	resp := &st.resp
	if st.replay.buf != nil {
		st.replay.rewind()
		st.req.BodyRead = 0
	}

	ep.Begin()
	defer ep.Done()
	sent := time.Now()
	err := ep.Client().RoundTrip(x.Ctx, &st.req, resp)
	for interim := 0; err == nil && resp.Status > 101 && resp.Status < 200; interim++ {
		if interim == maxInterimResponses {
			resp.Discard()
			err = &upstream.Error{Kind: upstream.KindProtocol, Endpoint: ep.Address, Err: errTooManyInterim}
			break
		}
		if resp.Status == http.StatusEarlyHints {
			relayEarlyHints(x, resp)
		}
		if err = resp.Next(); err != nil {
			resp.Discard()
		}
	}
	wait := time.Since(sent)
	x.State.UpstreamWait += wait
	if err != nil {
		o := classify(err, x.Ctx.Err() != nil)
		f.record(ep, o, 0, wait)
		endSpan(0, err)
		return o, err
	}

	status := resp.Status
	// A response arrived: whatever follows, the endpoint is up.
	ep.ReportSuccess()
	if p.Latency != nil {
		p.Latency.Observe(wait)
	}
	if status == http.StatusSwitchingProtocols {
		f.record(ep, outcomeOK, status, wait)
		endSpan(status, nil)
		f.switchUpstream(x, resp)
		return outcomeOK, nil
	}
	st.held = heldAttempt{ep: ep, wait: wait, endSpan: endSpan}
	if r := statusReason(status); r != reasonNone && f.mayRetry(x, p, r, n, &st.req) {
		return outcomeHeld, nil
	}
	return f.deliver(x, st.take(), resp)
}

// take returns the attempt held in st and forgets it.
func (st *forwardState) take() heldAttempt {
	h := st.held
	st.held = heldAttempt{}
	return h
}

// deliver relays resp, the response of attempt h, to the client and
// records the attempt.
func (f *Forwarder) deliver(x *exchange.Exchange, h heldAttempt, resp *upstream.Response) (outcome, error) {
	status := resp.Status
	err := f.respond(x, resp)
	o := outcomeOK
	if err != nil && x.Ctx.Err() == nil {
		o = outcomeTruncated
		f.truncated(x, err)
	} else {
		err = nil
	}
	f.record(h.ep, o, status, h.wait)
	h.endSpan(status, err)
	return o, err
}

// maxDiscard bounds the body of a discarded response read so that its
// connection can be used again; a longer one closes the connection.
const maxDiscard = 16 << 10

// discard drops resp, the response of attempt h, unsent, and records the
// attempt.
func (f *Forwarder) discard(h heldAttempt, resp *upstream.Response) {
	status := resp.Status
	if resp.ContentLength >= 0 && resp.ContentLength <= maxDiscard {
		// A short error body is read to its end, so that the connection
		// goes back to the pool.
		bp := copyBufPool.Get().(*[]byte)
		for read := 0; read <= maxDiscard; {
			n, err := resp.Read(*bp)
			read += n
			if err != nil {
				break
			}
		}
		copyBufPool.Put(bp)
	}
	resp.Close()
	f.record(h.ep, outcomeOK, status, h.wait)
	h.endSpan(status, nil)
}

// record counts an attempt in the endpoint's metrics and passive health,
// and in the pool's breakers and outlier detection (which, unlike passive
// health, count a 5xx status as a failure).
func (f *Forwarder) record(ep *upstream.Endpoint, o outcome, status int, wait time.Duration) {
	f.Pool.Record(ep, protectResult(o, status), wait)
	r := o.rule()
	if r.down {
		ep.ReportFailure(f.Pool.MaxFails, f.Pool.FailTimeout)
	}
	if r.metric != "" {
		if m := f.EndpointMetrics[ep]; m != nil {
			m.Attempt(wait, r.metric)
		}
	}
}

// mayRetry reports whether attempt n (0-based), which failed for reason
// r, may be followed by another under p: p retries r for the request's
// method, attempts are left, nothing of the request body was consumed or
// the body was kept to be sent again (replay.go), and the client and the
// request deadline are still there. The budget and a free endpoint are
// asked only once all of this holds (retry).
func (f *Forwarder) mayRetry(x *exchange.Exchange, p *RetryPolicy, r retryReason, n int, req *upstream.Request) bool {
	return n+1 < p.Attempts && p.retryable(r, x.Req.Method) && (req.BodyRead == 0 || replayable(req)) && x.Ctx.Err() == nil &&
		(req.Deadline.IsZero() || time.Now().Before(req.Deadline))
}

// retry decides whether attempts 0 to n-1 are followed by attempt n, the
// last having failed for reason r, and returns its endpoint, or nil. The
// retry takes an endpoint not tried yet (after a 502, a 503 or a reset,
// one tried before when every endpoint in rotation was), is counted against the route's
// budget (a refused retry leaves the client the failure at hand), and
// waits its backoff.
func (f *Forwarder) retry(x *exchange.Exchange, p *RetryPolicy, r retryReason, n int, tried *[maxAttempts]*upstream.Endpoint, req *upstream.Request) *upstream.Endpoint {
	if r == reasonNone || !f.mayRetry(x, p, r, n-1, req) {
		return nil
	}
	now := time.Now().UnixNano()
	ep := f.pick(now, tried[:n])
	if ep == nil && (r == reasonReset || r == reason502 || r == reason503) {
		// Every endpoint in rotation was tried. An endpoint that answered
		// 502 or 503 or dropped a connection is often fine a moment later
		// (a full queue, a worker restarting), so after its backoff the
		// retry may go to one tried before rather than give up; a timeout
		// or a failed connect would most likely happen again.
		ep = f.Pool.Pick(now)
	}
	if ep == nil || !p.withdraw(r) {
		return nil
	}
	if !p.sleepBackoff(n, x.Ctx.Done(), req.Deadline) {
		return nil
	}
	tried[n] = ep
	x.State.Endpoint = ep.Address
	x.State.Attempts++
	return ep
}

// retryPolicy returns f's retry policy, or the default one.
func (f *Forwarder) retryPolicy() *RetryPolicy {
	if f.Retry != nil {
		return f.Retry
	}
	return &defaultRetry
}

// failed answers a request whose last attempt failed, through the error
// funnel.
func (f *Forwarder) failed(x *exchange.Exchange, o outcome, err error) {
	switch o {
	case outcomeCanceled:
		// The client went away; nobody is left to answer. 499 is the
		// established log convention for this (NGINX).
		if x.State.Status == 0 {
			x.State.Status = 499
		}
	case outcomeClientBody:
		f.refuse(x, clientBodyCode(err), err)
	default:
		f.fail(x, o.rule().code, err)
	}
}

// truncated records a response whose body ended early after its status was
// sent: the exchange failed though the client saw a success status.
func (f *Forwarder) truncated(x *exchange.Exchange, err error) {
	x.State.ErrorKind = errorKindTruncated
	x.State.Error = err.Error()
	if x.State.GRPC && endGRPC(x, err) {
		f.warn(x, "upstream response truncated", errorKindTruncated, x.State.Status, err)
		return
	}
	// The engine must cut the stream (HTTP/2 RST_STREAM, HTTP/1.1 closed
	// connection) so the client cannot mistake a truncated body for a
	// complete one.
	x.State.Aborted = true
	f.warn(x, "upstream response truncated", errorKindTruncated, x.State.Status, err)
}

// relayEarlyHints passes a 103 (Early Hints, RFC 8297) on to the client.
// Its fields belong to that interim response only, so they are taken out
// of the client response header again once it is written.
func relayEarlyHints(x *exchange.Exchange, resp *upstream.Response) {
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

// switchUpstream completes a 101 (Switching Protocols): the upstream
// connection and the client's are joined until either side closes.
func (f *Forwarder) switchUpstream(x *exchange.Exchange, resp *upstream.Response) {
	defer resp.Close()
	backend, err := resp.Upgrade()
	if err != nil {
		f.fail(x, failure.UpstreamProtocol, err)
		return
	}
	f.switchProtocols(x, stdHeader(&resp.Header), backend)
}

// respond relays a final response to the client. It returns the error that
// cut the upstream's body short, if any; a client that stopped reading
// ends the exchange without one.
func (f *Forwarder) respond(x *exchange.Exchange, resp *upstream.Response) error {
	defer resp.Close()
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
	rerr, werr := streamBody(x, resp, stream)
	if werr != nil {
		// The client stopped reading: cut the stream rather than let it
		// wait for the rest.
		x.State.Aborted = true
		return rerr
	}
	if rerr == nil {
		relayTrailers(x, resp)
	}
	if x.State.GRPC {
		recordGRPCStatus(x, resp)
	}
	return rerr
}

// streamBody copies the response body to the client and reports a failure
// to read it (rerr, the upstream's) apart from a failure to write it (werr,
// the client's). Bodies of unknown length (chunked, server-sent events) are
// flushed after every read so each event reaches the client when the
// upstream sends it; bodies of known length are flushed once at the end by
// the engine.
func streamBody(x *exchange.Exchange, body io.Reader, flushEach bool) (rerr, werr error) {
	bp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bp)
	buf := *bp
	for {
		n, err := body.Read(buf)
		if n > 0 {
			w, err := x.W.Write(buf[:n])
			x.State.BytesOut += int64(w)
			if err != nil {
				return nil, err
			}
			if flushEach {
				if err := x.W.Flush(); err != nil {
					return nil, err
				}
			}
		}
		if err == io.EOF {
			return nil, nil
		}
		if err != nil {
			return err, nil
		}
	}
}
