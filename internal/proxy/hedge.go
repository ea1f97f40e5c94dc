package proxy

import (
	"context"
	"slices"
	"time"

	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/upstream"
)

// Hedged requests. A request of a hedging route still waiting for its
// response head after the hedge delay is sent to another endpoint as well;
// the first response head is relayed and the other attempts are canceled
// (their connections closed). This trades a little extra load (bounded by
// the retry budget, which hedges draw on) for a tail latency set by the
// faster of two endpoints rather than the slower. Only requests that can
// be sent twice are hedged: no body, a method of the route's retry
// methods, no protocol upgrade.
//
// Two attempts in flight cannot share the request's goroutine nor its
// pooled memory, so each hedged attempt runs on a goroutine of its own
// with its own copy of the request: a hedging route's requests allocate,
// the others do not.

// hedgeAttempt is one attempt of a hedged request. Its goroutine fills in
// what it found, then hands it to the request's goroutine over the results
// channel; only the receiver touches it after that.
type hedgeAttempt struct {
	ep      *upstream.Endpoint
	ctx     context.Context
	cancel  context.CancelFunc
	req     upstream.Request
	header  exchange.Header
	resp    upstream.Response
	endSpan func(status int, err error)
	wait    time.Duration
	err     error
	o       outcome
}

// held is a as a held attempt, for deliver and discard.
func (a *hedgeAttempt) held() heldAttempt {
	return heldAttempt{ep: a.ep, wait: a.wait, endSpan: a.endSpan}
}

// hedgeDelay returns how long x's first attempt may wait for its response
// head before a hedge is sent, or 0 when x is not hedged.
func (f *Forwarder) hedgeDelay(x *exchange.Exchange, p *RetryPolicy) time.Duration {
	if p.HedgeMax == 0 || x.Req.ContentLength != 0 || len(f.Pool.Endpoints) < 2 ||
		!slices.Contains(p.Methods, x.Req.Method) || f.upgradeToken(x) != "" {
		return 0
	}
	if p.HedgeAfter > 0 {
		return p.HedgeAfter
	}
	if p.Latency != nil {
		return p.Latency.Estimate()
	}
	return 0
}

// serveHedged is the attempt loop of a hedged request whose first endpoint
// is tried[0]. Besides the hedges, a failed attempt with nothing else in
// flight is retried as the policy says, as in ServeExchange. A response
// whose status the policy retries is held while another attempt may still
// answer, and relayed only if none does better.
func (f *Forwarder) serveHedged(x *exchange.Exchange, st *forwardState, p *RetryPolicy, tried *[maxAttempts]*upstream.Endpoint, delay time.Duration) {
	start := time.Now()
	results := make(chan *hedgeAttempt, maxAttempts)
	var attempts [maxAttempts]*hedgeAttempt
	n, inflight, hedges := 0, 0, 0
	launch := func(ep *upstream.Endpoint) {
		a := &hedgeAttempt{ep: ep, req: st.req}
		a.ctx, a.cancel = context.WithCancel(x.Ctx)
		st.header.Range(func(name, value string) bool {
			a.header.Add(name, value)
			return true
		})
		a.req.Header = &a.header
		spanID, end := f.Tracer.StartClient(x, f.Pool.Name, ep.Address, n+1)
		a.endSpan = end
		setTraceHeaders(&a.header, &x.State.Trace, spanID)
		attempts[n] = a
		n++
		inflight++
		go f.runHedged(a, p, results)
	}
	// finish cancels every attempt but keep, lets keep answer (answer),
	// then waits for the attempts still in flight and drops what they
	// bring. They are waited for, not left to a goroutine: their requests
	// point into the exchange's memory, which is reused once the exchange
	// is over. Canceled, they end at once.
	finish := func(keep *hedgeAttempt, answer func()) {
		for _, a := range attempts[:n] {
			if a != keep {
				a.cancel()
			}
		}
		x.State.UpstreamWait += time.Since(start)
		answer()
		f.releaseHedged(results, inflight)
	}

	launch(tried[0])
	timer := time.NewTimer(delay)
	defer timer.Stop()
	var held *hedgeAttempt
	drop := func() {
		if held != nil {
			f.discard(held.held(), &held.resp)
			held.cancel()
			held = nil
		}
	}
	for {
		select {
		case a := <-results:
			inflight--
			if a.err == nil && !p.retryable(statusReason(a.resp.Status), x.Req.Method) {
				// The first response head: it wins.
				drop()
				if inflight > 0 && p.Metrics != nil {
					p.Metrics.HedgesCanceled(inflight)
				}
				finish(a, func() { f.deliverHedged(x, a) })
				return
			}
			var r retryReason
			if a.err == nil {
				// A status the route retries: kept, the freshest one, in
				// case nothing better comes.
				drop()
				held, r = a, statusReason(a.resp.Status)
			} else {
				a.cancel()
				r = a.o.rule().retry
			}
			if inflight > 0 {
				continue
			}
			if f.retryHedged(x, p, r, n, tried, st, launch) {
				if hedges < p.HedgeMax {
					timer.Reset(delay)
				}
				continue
			}
			if h := held; h != nil {
				held = nil
				finish(h, func() { f.deliverHedged(x, h) })
				return
			}
			finish(nil, func() {
				x.State.Endpoint = a.ep.Address
				f.failed(x, a.o, a.err)
			})
			return
		case <-timer.C:
			if inflight == 0 || hedges >= p.HedgeMax || n >= p.Attempts {
				continue
			}
			ep := f.pick(time.Now().UnixNano(), tried[:n])
			if ep == nil || !p.withdraw(reasonHedge) {
				continue
			}
			tried[n] = ep
			x.State.Attempts++
			launch(ep)
			hedges++
			if hedges < p.HedgeMax {
				timer.Reset(delay)
			}
		case <-x.Ctx.Done():
			// The attempts' contexts are the client's children: they are
			// ending too.
			drop()
			finish(nil, func() {
				if x.State.Status == 0 {
					x.State.Status = 499
				}
			})
			return
		}
	}
}

// retryHedged sends attempt n of a hedged request after the last attempt
// in flight failed for reason r, as the policy allows (retry), and reports
// whether it did.
func (f *Forwarder) retryHedged(x *exchange.Exchange, p *RetryPolicy, r retryReason, n int, tried *[maxAttempts]*upstream.Endpoint, st *forwardState, launch func(*upstream.Endpoint)) bool {
	ep := f.retry(x, p, r, n, tried, &st.req)
	if ep == nil {
		return false
	}
	launch(ep)
	return true
}

// runHedged runs attempt a up to its response head, on its own goroutine,
// and sends it to results. Interim responses (103 Early Hints) are not
// relayed: only the request's goroutine writes to the client.
func (f *Forwarder) runHedged(a *hedgeAttempt, p *RetryPolicy, results chan<- *hedgeAttempt) {
	a.ep.Begin()
	defer a.ep.Done()
	sent := time.Now()
	err := a.ep.Client().RoundTrip(a.ctx, &a.req, &a.resp)
	for interim := 0; err == nil && a.resp.Status > 101 && a.resp.Status < 200; interim++ {
		if interim == maxInterimResponses {
			a.resp.Discard()
			err = &upstream.Error{Kind: upstream.KindProtocol, Endpoint: a.ep.Address, Err: errTooManyInterim}
			break
		}
		if err = a.resp.Next(); err != nil {
			a.resp.Discard()
		}
	}
	a.wait = time.Since(sent)
	if err != nil {
		a.err = err
		a.o = classify(err, a.ctx.Err() != nil)
		f.record(a.ep, a.o, 0, a.wait)
		a.endSpan(0, err)
	} else {
		a.ep.ReportSuccess()
		if p.Latency != nil {
			p.Latency.Observe(a.wait)
		}
	}
	results <- a
}

// deliverHedged relays the response of attempt a, the one that answered.
func (f *Forwarder) deliverHedged(x *exchange.Exchange, a *hedgeAttempt) {
	defer a.cancel()
	x.State.Endpoint = a.ep.Address
	if a.resp.Status == 101 {
		// Not asked for (upgrades are not hedged): relayed as the
		// unhedged loop would.
		f.record(a.ep, outcomeOK, 101, a.wait)
		a.endSpan(101, nil)
		f.switchUpstream(x, &a.resp)
		return
	}
	f.deliver(x, a.held(), &a.resp)
}

// releaseHedged receives the k attempts of a hedged request still in
// flight once it was answered (canceled, they end at once), and drops what
// they bring.
func (f *Forwarder) releaseHedged(results <-chan *hedgeAttempt, k int) {
	for range k {
		a := <-results
		if a.err == nil {
			f.discard(a.held(), &a.resp)
		}
		a.cancel()
	}
}
