package function

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/failure"
)

// Invocation outcomes, the outcome label of
// penstock_function_invocations_total.
const (
	outcomeOK            = "ok"
	outcomeFunctionError = "function_error"
	outcomeCrashed       = "crashed"
	outcomeTimeout       = "timeout"
	outcomeInitFailed    = "init_failed"
	outcomeBadResponse   = "bad_response"
	outcomeQueueFull     = "queue_full"
	outcomeQueueTimeout  = "queue_timeout"
	outcomeShuttingDown  = "shutting_down"
	outcomeTooLarge      = "too_large"
	outcomeClientGone    = "client_gone"
)

// maxPreludeBytes bounds a streamed response's prelude.
const maxPreludeBytes = 64 << 10

// retryAfter is the Retry-After of a refused request, in seconds: long
// enough for an invocation to finish and free a slot.
const retryAfter = "1"

// ServeExchange invokes the function for one request: it takes a slot on
// an instance (starting one, or waiting in the queue), hands it the
// request and writes back what it answers.
func (f *Function) ServeExchange(x *exchange.Exchange) {
	arrived := time.Now()
	var body []byte
	if f.cfg.Mode != config.FunctionModeHTTP {
		var err error
		if body, err = readBody(x, int64(f.cfg.MaxEventBytes)); err != nil {
			x.State.Error = err.Error()
			f.m.invocation(outcomeTooLarge, 0)
			failure.Fail(x, failure.BodyTooLarge)
			return
		}
	} else if x.Req.ContentLength > int64(f.cfg.MaxEventBytes) {
		x.State.Error = "request body exceeds max_event_bytes"
		f.m.invocation(outcomeTooLarge, 0)
		failure.Fail(x, failure.BodyTooLarge)
		return
	}
	ctx := x.Ctx
	if ctx == nil {
		ctx = context.Background()
	}
	in, queued, err := f.acquire(ctx)
	wait := time.Since(arrived)
	if queued {
		f.m.queueWait(wait)
	}
	if err != nil {
		f.refuse(x, err)
		return
	}
	cold := in.fresh.CompareAndSwap(true, false)
	id := newRequestID()
	if f.cfg.MaxConcurrency == 1 {
		in.current.Store(&id)
	}
	x.State.Endpoint = "instance/" + strconv.Itoa(in.id)
	x.State.Attempts++
	started := time.Now()
	outBefore := in.out.bytes.Load()
	end := f.tracer.Load().StartInvocation(x, f.name, id, in.id, cold)
	var outcome string
	var healthy bool
	if f.cfg.Mode == config.FunctionModeHTTP {
		outcome, healthy = f.invokeHTTP(x, in, id)
	} else {
		outcome, healthy = f.invokeLambda(x, in, id, body)
	}
	d := time.Since(started)
	failure := ""
	if outcome != outcomeOK {
		failure = outcome
	}
	end(x.State.Status, failure)
	x.State.UpstreamWait += d
	in.current.Store(nil)
	if wrote := in.out.bytes.Load() - outBefore; healthy && wrote > int64(f.cfg.MaxOutputBytes) {
		// The client has its answer; the instance that flooded its
		// output is not trusted with the next one. (The pipe lags the
		// function by at most its buffer, 64 KiB on Linux.)
		healthy = false
		f.log.Warn("function instance recycled after a flood of output", "instance", in.id, "request_id", id,
			"output_bytes", wrote, "max_output_bytes", int64(f.cfg.MaxOutputBytes))
	}
	f.mu.Lock()
	in.served++
	f.mu.Unlock()
	f.release(in, healthy)
	f.m.invocation(outcome, d)
	if cold {
		f.log.Info("function cold start", "instance", in.id, "request_id", id,
			"init_ms", float64(time.Duration(in.initDuration.Load()).Microseconds())/1000,
			"cold_start_ms", float64(time.Since(arrived).Microseconds())/1000, "outcome", outcome)
	}
}

// refuse answers a request that got no instance.
func (f *Function) refuse(x *exchange.Exchange, err error) {
	var ie *initError
	switch {
	case errors.Is(err, errQueueFull):
		x.State.Error = fmt.Sprintf("function %q: %d requests queued (max_queue)", f.name, f.cfg.MaxQueue)
		f.m.invocation(outcomeQueueFull, 0)
		x.W.Header().Set("Retry-After", retryAfter)
		failure.Fail(x, failure.FunctionQueueFull)
	case errors.Is(err, errQueueTimeout):
		x.State.Error = fmt.Sprintf("function %q: no instance free within queue_timeout (%s)", f.name, f.cfg.QueueTimeout)
		f.m.invocation(outcomeQueueTimeout, 0)
		x.W.Header().Set("Retry-After", retryAfter)
		failure.Fail(x, failure.FunctionQueueTimeout)
	case errors.Is(err, errShuttingDown):
		f.m.invocation(outcomeShuttingDown, 0)
		failure.Fail(x, failure.ShuttingDown)
	case errors.As(err, &ie):
		x.State.Error = ie.Error()
		f.m.invocation(outcomeInitFailed, 0)
		failure.Fail(x, failure.FunctionInitFailed)
	default: // the client went away while queued
		x.State.Error = err.Error()
		f.m.invocation(outcomeClientGone, 0)
		if x.State.Status == 0 {
			x.State.Status = 499
		}
	}
}

// readBody reads the request body for an event, at most limit bytes.
func readBody(x *exchange.Exchange, limit int64) ([]byte, error) {
	if x.Req.ContentLength > limit {
		return nil, fmt.Errorf("request body of %d bytes exceeds max_event_bytes (%d)", x.Req.ContentLength, limit)
	}
	if x.Req.ContentLength == 0 || x.Req.Body == nil {
		return nil, nil
	}
	b, err := io.ReadAll(io.LimitReader(x.Req.Body, limit+1))
	x.State.BytesIn += int64(len(b))
	if err != nil {
		return nil, fmt.Errorf("read request body: %w", err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("request body exceeds max_event_bytes (%d)", limit)
	}
	return b, nil
}

// request is the part of x an event is made of.
func request(x *exchange.Exchange, id string, body []byte) *Request {
	r := &Request{
		Method: x.Req.Method, Scheme: x.Req.Scheme, Host: x.Req.Host,
		Path: x.Req.Path, RawQuery: x.Req.Query, Body: body,
		SourceIP: x.State.ClientAddr, Proto: x.Req.Proto.String(),
		RequestID: id, Time: x.Start,
	}
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	x.Req.Header.Range(func(name, value string) bool {
		r.Header = append(r.Header, [2]string{name, value})
		return true
	})
	if n := x.State.Params.Len(); n > 0 {
		r.Params = make(map[string]string, n)
		for i := range n {
			r.Params[x.State.Params.Key(i)] = x.State.Params.Value(i)
		}
	}
	return r
}

// lambdaTraceID is the X-Ray form of x's trace context, which runtimes put
// in _X_AMZN_TRACE_ID.
func lambdaTraceID(x *exchange.Exchange) string {
	t := &x.State.Trace
	var b []byte
	b = t.AppendTraceID(b)
	if len(b) != 32 {
		return ""
	}
	s := "Root=1-" + string(b[:8]) + "-" + string(b[8:]) + ";Parent=" + string(t.AppendSpanID(nil))
	if t.Sampled() {
		return s + ";Sampled=1"
	}
	return s + ";Sampled=0"
}

// invokeLambda runs one invocation through in's Runtime API. It reports
// the outcome and whether the instance may serve again.
func (f *Function) invokeLambda(x *exchange.Exchange, in *instance, id string, body []byte) (string, bool) {
	ev, err := Event(request(x, id, body))
	if err != nil {
		x.State.Error = "encode event: " + err.Error()
		failure.Fail(x, failure.BadRequest)
		return outcomeBadResponse, true
	}
	timeout := f.cfg.Timeout.D()
	inv := &invocation{id: id, event: ev, deadline: time.Now().Add(timeout),
		traceID: lambdaTraceID(x), result: make(chan *apiResult, 1)}
	timedOut := make(chan struct{})
	timer := time.AfterFunc(timeout, func() {
		close(timedOut)
		in.kill(fmt.Sprintf("invocation %s overran its timeout (%s)", id, f.cfg.Timeout))
	})
	defer timer.Stop()
	in.api.queue <- inv // a slot was taken for it: never blocks

	select {
	case res := <-inv.result:
		if res.req == nil {
			x.State.Error = fmt.Sprintf("%s: %s", res.errType, res.errMessage)
			f.log.Warn("function error", "instance", in.id, "request_id", id,
				"error_type", res.errType, "error_message", res.errMessage)
			failure.Fail(x, failure.FunctionError)
			return outcomeFunctionError, true
		}
		defer close(res.done)
		return f.writeResult(x, in, id, res, timedOut)
	case <-timedOut:
		return f.timedOut(x, in, id)
	case <-in.dead:
		select {
		case <-timedOut:
			return f.timedOut(x, in, id)
		default:
		}
		x.State.Error = "instance exited: " + in.reason
		f.log.Error("function instance crashed during an invocation", "instance", in.id,
			"request_id", id, "reason", in.reason, "stderr", in.out.tail())
		failure.Fail(x, failure.FunctionCrashed)
		return outcomeCrashed, false
	}
}

func (f *Function) timedOut(x *exchange.Exchange, in *instance, id string) (string, bool) {
	x.State.Error = fmt.Sprintf("function %q: invocation overran its timeout (%s); instance killed", f.name, f.cfg.Timeout)
	f.log.Warn("function timeout", "instance", in.id, "request_id", id, "timeout", f.cfg.Timeout.String())
	if x.State.Status != 0 {
		x.State.Aborted = true
	}
	failure.Fail(x, failure.FunctionTimeout)
	return outcomeTimeout, false
}

// writeResult writes a runtime's response to the client: buffered (an API
// Gateway response document) or streamed (Lambda's response streaming:
// the http-integration content type with its prelude, or any body posted
// with Lambda-Runtime-Function-Response-Mode: streaming).
func (f *Function) writeResult(x *exchange.Exchange, in *instance, id string, res *apiResult, timedOut <-chan struct{}) (string, bool) {
	r := res.req
	ct := r.Header.Get("Content-Type")
	streaming := ct == streamContentType || strings.EqualFold(r.Header.Get(headerRespMode), "streaming")
	bad := func(err error) (string, bool) {
		x.State.Error = err.Error()
		f.log.Warn("function returned a malformed response", "instance", in.id, "request_id", id, "error", err)
		failure.Fail(x, failure.FunctionBadResponse)
		return outcomeBadResponse, false
	}
	readFailed := func(err error) (string, bool) {
		select {
		case <-timedOut:
			return f.timedOut(x, in, id)
		default:
		}
		if x.State.Status != 0 {
			x.State.Aborted = true
		}
		x.State.Error = "reading the function's response: " + err.Error()
		failure.Fail(x, failure.FunctionCrashed)
		return outcomeCrashed, false
	}
	if !streaming {
		limit := int64(f.cfg.MaxEventBytes)
		payload, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
		if err != nil {
			return readFailed(err)
		}
		if int64(len(payload)) > limit {
			res.status = 413
			return bad(fmt.Errorf("%w: larger than max_event_bytes (%d)", ErrMalformed, limit))
		}
		resp, err := ParseResponse(payload)
		if err != nil {
			return bad(err)
		}
		writeHead(x, resp, int64(len(resp.Body)))
		if x.Req.Method != "HEAD" {
			n, _ := x.W.Write(resp.Body)
			x.State.BytesOut += int64(n)
		}
		return outcomeOK, true
	}

	br := bufio.NewReaderSize(r.Body, 32<<10)
	resp := &Response{Status: 200}
	if ct == streamContentType {
		prelude, err := readPrelude(br)
		if err != nil {
			if errors.Is(err, ErrMalformed) {
				return bad(err)
			}
			return readFailed(err)
		}
		if resp, err = ParsePrelude(prelude); err != nil {
			return bad(err)
		}
	} else if ct != "" {
		resp.Header = [][2]string{{"Content-Type", ct}}
	}
	writeHead(x, resp, -1)
	_ = x.W.Flush()
	buf := make([]byte, 32<<10)
	clientOK := true
	for {
		n, err := br.Read(buf)
		if n > 0 && clientOK && x.Req.Method != "HEAD" {
			w, werr := x.W.Write(buf[:n])
			x.State.BytesOut += int64(w)
			if werr == nil {
				werr = x.W.Flush()
			}
			// Past a client that left, the stream is still read to its end,
			// so the runtime's POST completes and the instance stays usable.
			clientOK = werr == nil
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return readFailed(err)
		}
	}
	if t := r.Trailer.Get(headerErrorType); t != "" {
		// The function failed after the stream started: the client's only
		// signal is a cut stream (Lambda does the same).
		x.State.Aborted = true
		x.State.Error = "function error mid-stream: " + t
		f.log.Warn("function error", "instance", in.id, "request_id", id, "error_type", t,
			"error_body", r.Trailer.Get(headerErrorBody), "streamed", true)
		return outcomeFunctionError, true
	}
	return outcomeOK, true
}

// readPrelude reads a streamed response's prelude, up to the eight NUL
// bytes that end it.
func readPrelude(br *bufio.Reader) ([]byte, error) {
	var pre []byte
	for {
		b, err := br.ReadByte()
		if err != nil {
			if err == io.EOF {
				return nil, fmt.Errorf("%w: stream ended inside its prelude", ErrMalformed)
			}
			return nil, err
		}
		pre = append(pre, b)
		if bytes.HasSuffix(pre, preludeDelimiter) {
			return pre[:len(pre)-len(preludeDelimiter)], nil
		}
		if len(pre) > maxPreludeBytes {
			return nil, fmt.Errorf("%w: stream prelude longer than %d bytes", ErrMalformed, maxPreludeBytes)
		}
	}
}

// hopByHop are the fields a function cannot set on the client's response
// (RFC 9110 §7.6.1); Content-Length is penstock's to set.
var hopByHop = []string{"connection", "keep-alive", "proxy-connection", "te", "trailer",
	"transfer-encoding", "upgrade", "content-length"}

func isHopByHop(name string) bool {
	for _, h := range hopByHop {
		if exchange.EqualFold(name, h) {
			return true
		}
	}
	return false
}

// writeHead writes resp's status and fields; length -1 means unknown (the
// engine chunks).
func writeHead(x *exchange.Exchange, resp *Response, length int64) {
	h := x.W.Header()
	for _, kv := range resp.Header {
		if !isHopByHop(kv[0]) {
			h.Add(kv[0], kv[1])
		}
	}
	if length >= 0 {
		h.Set("Content-Length", strconv.FormatInt(length, 10))
	}
	x.State.Status = resp.Status
	x.W.WriteHeader(resp.Status)
}

// deadlineCtx is the invocation's context in http mode: x's, bounded by
// the function's timeout.
func (f *Function) deadlineCtx(x *exchange.Exchange) (context.Context, context.CancelFunc) {
	return context.WithTimeout(x.Ctx, f.cfg.Timeout.D())
}
