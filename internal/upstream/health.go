package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/exchange"
)

// CheckResult is the outcome of an endpoint's last active health check.
type CheckResult struct {
	At     time.Time `json:"at"`
	Passed bool      `json:"passed"`
	// Status is the http check's response status; 0 for tcp checks and
	// checks that got no response.
	Status int    `json:"status,omitempty"`
	Error  string `json:"error,omitempty"`
}

// maxCheckBody bounds the response body an http check reads to match
// body_regex.
const maxCheckBody = 64 << 10

// checkLoop checks e every interval (plus jitter) until ctx ends. The first
// check runs at once, so a dead endpoint leaves rotation fall checks after
// the pool starts serving.
func (p *Pool) checkLoop(ctx context.Context, e *Endpoint) {
	hc := p.prot.health
	var body *regexp.Regexp
	if hc.BodyRegex != "" {
		// Validated with the config.
		body = regexp.MustCompile(hc.BodyRegex)
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		status, err := p.check(ctx, e, hc, body)
		if ctx.Err() != nil {
			return
		}
		res := CheckResult{At: time.Now(), Passed: err == nil, Status: status}
		if err != nil {
			res.Error = err.Error()
		}
		p.observeCheck(e, res, res.At.UnixNano())
		if p.needsWarmup(e) {
			p.warmup(ctx, e)
		}
		d := hc.Interval.D()
		if j := hc.Jitter.D(); j > 0 {
			d += rand.N(j)
		}
		timer.Reset(d)
	}
}

// observeCheck records one check result of e at now and moves e in or out
// of rotation by the rise and fall thresholds (the check goroutine's only
// writes; also the tests' way in, with their own clock).
func (p *Pool) observeCheck(e *Endpoint, res CheckResult, now int64) {
	g := e.guard
	hc := p.prot.health
	g.last.Store(&res)
	obs := p.prot.observe()
	if obs != nil {
		obs.HealthCheck(p.Name, e.Address, res.Passed)
	}
	if res.Passed {
		g.failRun.Store(0)
		// An endpoint that must warm up first rises once its warm-up
		// passes (checkLoop runs it).
		if n := g.passRun.Add(1); g.down.Load() && int(n) >= hc.Rise && g.warmed.Load() {
			p.rise(e, now)
		}
		return
	}
	g.passRun.Store(0)
	if n := g.failRun.Add(1); !g.down.Load() && int(n) >= hc.Fall {
		if hc.Warmup != nil {
			g.warmed.Store(false)
		}
		g.down.Store(true)
		if obs != nil {
			obs.HealthChanged(p.Name, e.Address, false)
		}
	}
}

// rise puts e back in rotation at now.
func (p *Pool) rise(e *Endpoint, now int64) {
	g := e.guard
	g.upAt.Store(now)
	g.down.Store(false)
	// The checks see it up: passive health should not keep it out for the
	// rest of its fail_timeout.
	e.ReportSuccess()
	if obs := p.prot.observe(); obs != nil {
		obs.HealthChanged(p.Name, e.Address, true)
	}
}

// check runs one check of e. It returns the http check's response status
// (0 when there was none) and why the check failed, nil when it passed.
func (p *Pool) check(ctx context.Context, e *Endpoint, hc *config.HealthCheck, body *regexp.Regexp) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, hc.Timeout.D())
	defer cancel()
	if hc.Type == config.HealthCheckTCP {
		var d net.Dialer
		c, err := d.DialContext(ctx, e.network, e.dialAddr)
		if err != nil {
			return 0, err
		}
		return 0, c.Close()
	}
	var h exchange.Header
	h.Set("User-Agent", "penstock-health-check")
	deadline, _ := ctx.Deadline()
	req := &Request{Method: "GET", Path: hc.Path, Host: hc.Host, Header: &h, ConnectTimeout: hc.Timeout.D(),
		ResponseHeaderTimeout: hc.Timeout.D(), Deadline: deadline}
	if path, query, ok := strings.Cut(hc.Path, "?"); ok {
		req.Path, req.Query = path, query
	}
	var b []byte
	status, err := outOfBand(ctx, e, req, hc.ExpectedStatuses, func(r io.Reader) (err error) {
		if body != nil {
			b, err = io.ReadAll(io.LimitReader(r, maxCheckBody))
		}
		return err
	})
	if err != nil || body == nil {
		return status, err
	}
	if !body.Match(b) {
		return status, fmt.Errorf("body does not match %q", hc.BodyRegex)
	}
	return status, nil
}

// outOfBand sends req to e (a check or a warm-up, not a client's
// request), waits for the final response, which must have one of statuses
// (any 2xx or 3xx when none), and hands its body to read. It returns the
// final status (0 when there was none) and why the exchange failed.
func outOfBand(ctx context.Context, e *Endpoint, req *Request, statuses []int, read func(io.Reader) error) (int, error) {
	var resp Response
	if err := e.client.RoundTrip(ctx, req, &resp); err != nil {
		return 0, err
	}
	defer resp.Close()
	// Interim responses (1xx) carry no verdict; wait for the final one.
	for n := 0; resp.Status >= 100 && resp.Status < 200 && resp.Status != 101; n++ {
		if n == 16 {
			return resp.Status, errors.New("too many interim responses")
		}
		if err := resp.Next(); err != nil {
			return 0, err
		}
	}
	if !expected(statuses, resp.Status) {
		return resp.Status, fmt.Errorf("unexpected status %d", resp.Status)
	}
	if err := read(&resp); err != nil {
		return resp.Status, fmt.Errorf("reading body: %w", err)
	}
	return resp.Status, nil
}

// expected reports whether status passes a check: one of statuses, or any
// 2xx or 3xx when none are listed.
func expected(statuses []int, status int) bool {
	if len(statuses) == 0 {
		return status >= 200 && status < 400
	}
	return slices.Contains(statuses, status)
}
