package upstream

import (
	"context"
	"io"
	"strings"
	"time"

	"github.com/penstock-dev/penstock/internal/exchange"
)

// warmupPause is the wait after a warm-up request that failed outright (a
// refused connection fails in microseconds; the loop must not spin).
const warmupPause = 100 * time.Millisecond

// needsWarmup reports whether e's checks would put it back in rotation but
// its warm-up has not passed yet.
func (p *Pool) needsWarmup(e *Endpoint) bool {
	hc := p.prot.health
	g := e.guard
	return hc.Warmup != nil && g.down.Load() && !g.warmed.Load() && int(g.passRun.Load()) >= hc.Rise
}

// warmup sends e its warm-up requests, on the endpoint's check goroutine
// (its checks pause meanwhile: they passed, and the warm-up is a stronger
// check). It puts e back in rotation once warmup.requests answers in a row
// were good; past warmup.timeout, or when ctx ends, e stays out and its
// checks must rise again before the next try.
func (p *Pool) warmup(ctx context.Context, e *Endpoint) {
	w := p.prot.health.Warmup
	g := e.guard
	g.warming.Store(true)
	defer g.warming.Store(false)
	ctx, cancel := context.WithTimeout(ctx, w.Timeout.D())
	defer cancel()
	var h exchange.Header
	h.Set("User-Agent", "penstock-warmup")
	for k, v := range w.Headers {
		h.Set(k, v)
	}
	path, query, _ := strings.Cut(w.Path, "?")
	sent, good := 0, 0
	for good < w.Requests && ctx.Err() == nil {
		rctx, rcancel := context.WithTimeout(ctx, w.RequestTimeout.D())
		deadline, _ := rctx.Deadline()
		req := &Request{Method: w.Method, Path: path, Query: query, Host: p.prot.health.Host, Header: &h,
			ConnectTimeout: w.RequestTimeout.D(), ResponseHeaderTimeout: w.RequestTimeout.D(), Deadline: deadline}
		if w.Body != "" {
			req.Body, req.ContentLength = strings.NewReader(w.Body), int64(len(w.Body))
		}
		start := time.Now()
		_, err := outOfBand(rctx, e, req, p.prot.health.ExpectedStatuses, func(r io.Reader) error {
			_, err := io.Copy(io.Discard, r)
			return err
		})
		took := time.Since(start)
		rcancel()
		sent++
		switch {
		case err != nil:
			good = 0
			select {
			case <-ctx.Done():
			case <-time.After(warmupPause):
			}
		case w.MaxLatency > 0 && took > w.MaxLatency.D():
			good = 0
		default:
			good++
		}
	}
	passed := good >= w.Requests
	if obs := p.prot.observe(); obs != nil {
		obs.Warmup(p.Name, e.Address, passed, sent)
	}
	if !passed {
		g.passRun.Store(0)
		return
	}
	g.warmed.Store(true)
	p.rise(e, time.Now().UnixNano())
}
