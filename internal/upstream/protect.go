package upstream

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
)

// Upstream protection: active health checks (health.go), outlier ejection
// (outlier.go) and circuit breakers (breaker.go). This file joins them to
// the pool and its endpoints: which endpoint may be picked, what an attempt
// records, and the pool's background checkers' lifetime.

// Observer is told of protection events, for metrics. Its methods are
// called off the request path (checks, transitions, ejections) and must be
// safe for concurrent use.
type Observer interface {
	// HealthCheck reports one active check of endpoint and whether it
	// passed.
	HealthCheck(pool, endpoint string, passed bool)
	// HealthChanged reports that active checks took endpoint out (up
	// false) or put it back.
	HealthChanged(pool, endpoint string, up bool)
	// BreakerChanged reports a breaker's new state ("closed", "open",
	// "half_open"); endpoint is "" for the pool's own breaker.
	BreakerChanged(pool, endpoint, state string)
	// BreakerStarted reports a breaker that starts serving, closed (not a
	// transition), so its state shows before its first change.
	BreakerStarted(pool, endpoint string)
	// Ejected reports an outlier ejection and its reason
	// ("consecutive_5xx", "consecutive_gateway_failure", "success_rate",
	// "latency").
	Ejected(pool, endpoint, reason string)
	// Warmup reports a finished warm-up of endpoint (see
	// config.Warmup): whether it passed, and the requests it sent.
	Warmup(pool, endpoint string, passed bool, requests int)
}

// guard is an endpoint's protection state; nil when its pool configures
// none of health_check, outlier_detection and circuit_breaker.
type guard struct {
	// Active health. down is written by the endpoint's checker only.
	down    atomic.Bool
	upAt    atomic.Int64 // Unix ns the endpoint last rose (slow start)
	passRun atomic.Int32 // consecutive passed checks
	failRun atomic.Int32 // consecutive failed checks
	last    atomic.Pointer[CheckResult]
	// warmed is false from the moment the checks take the endpoint out
	// until a warm-up passes (see warmup.go); warming is true during one.
	warmed  atomic.Bool
	warming atomic.Bool

	// Outlier ejection.
	ejectedUntil atomic.Int64 // Unix ns; 0 or past: in rotation
	timesEjected atomic.Int32 // the ejection time multiplier
	ejections    atomic.Uint64
	ejectReason  atomic.Value // string
	cons5xx      atomic.Int32
	consGateway  atomic.Int32
	// The current outlier interval's counts (see outlier.go).
	ivRequests, ivPassed, ivLatency atomic.Int64

	breaker   *breaker // nil without circuit_breaker
	slowStart int64    // ns; 0: none
	checked   bool     // the pool has active health checks
}

// protection is a pool's protection state and its checkers' lifetime.
type protection struct {
	health  *config.HealthCheck
	outlier *config.OutlierDetection
	breaker *breaker // the pool's own; nil without circuit_breaker

	observer atomic.Pointer[Observer]
	// ejectMu serializes ejection decisions, so that max_ejection_percent
	// holds when several endpoints cross a threshold at once.
	ejectMu sync.Mutex

	startOnce sync.Once
	stopOnce  sync.Once
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

// setupProtection builds p's protection from its config; the checkers
// start later, with Start.
func (p *Pool) setupProtection(u *config.Upstream) {
	if u.HealthCheck == nil && u.OutlierDetection == nil && u.CircuitBreaker == nil {
		return
	}
	pr := &protection{health: u.HealthCheck, outlier: u.OutlierDetection}
	p.prot = pr
	if u.CircuitBreaker != nil {
		pr.breaker = newBreaker(u.CircuitBreaker, func(_, to BreakerState) {
			if o := pr.observer.Load(); o != nil {
				(*o).BreakerChanged(p.Name, "", to.String())
			}
		})
	}
	for _, e := range p.Endpoints {
		g := &guard{}
		g.ejectReason.Store("")
		g.warmed.Store(true) // endpoints start in rotation
		if u.HealthCheck != nil {
			g.checked = true
			g.slowStart = int64(u.HealthCheck.SlowStart.D())
		}
		if u.CircuitBreaker != nil {
			g.breaker = newBreaker(u.CircuitBreaker, func(_, to BreakerState) {
				if o := pr.observer.Load(); o != nil {
					(*o).BreakerChanged(p.Name, e.Address, to.String())
				}
			})
		}
		e.guard = g
	}
}

// Start starts the pool's active health checkers and outlier statistics,
// if its config has them, reporting to obs (which may be nil). Only a pool
// that serves is started (not one compiled only to check a config); a pool
// kept by a reload is already running and Start does nothing. Close stops
// them.
func (p *Pool) Start(obs Observer) {
	pr := p.prot
	if pr == nil {
		return
	}
	pr.startOnce.Do(func() {
		if obs != nil {
			pr.observer.Store(&obs)
		}
		ctx, cancel := context.WithCancel(context.Background())
		pr.cancel = cancel
		if pr.health != nil {
			for _, e := range p.Endpoints {
				if obs != nil {
					// Endpoints start in rotation; the gauge says so from
					// the start.
					obs.HealthChanged(p.Name, e.Address, !e.guard.down.Load())
				}
				pr.wg.Go(func() { p.checkLoop(ctx, e) })
			}
		}
		if pr.outlier != nil {
			pr.wg.Go(func() { p.outlierLoop(ctx) })
		}
		if pr.breaker != nil && obs != nil {
			obs.BreakerStarted(p.Name, "")
			for _, e := range p.Endpoints {
				obs.BreakerStarted(p.Name, e.Address)
			}
		}
	})
}

// stop ends the checkers and waits for them.
func (p *Pool) stop() {
	pr := p.prot
	if pr == nil {
		return
	}
	pr.stopOnce.Do(func() {
		// A pool stopped before it started must not start later.
		pr.startOnce.Do(func() {})
		if pr.cancel != nil {
			pr.cancel()
		}
		pr.wg.Wait()
	})
}

func (pr *protection) observe() Observer {
	if o := pr.observer.Load(); o != nil {
		return *o
	}
	return nil
}

// Available reports whether e may be picked at now: passive health admits
// it, its active checks have not taken it out, it is not ejected, and its
// breaker is not open. While an endpoint ramps up after coming back (slow
// start), it is available to the matching share of the picks that reach
// it. Balancers call it for every endpoint they consider.
func (e *Endpoint) Available(now int64) bool {
	if !e.Healthy(now) {
		return false
	}
	g := e.guard
	if g == nil {
		return true
	}
	if g.down.Load() || now < g.ejectedUntil.Load() || g.breaker != nil && g.breaker.Open(now) {
		return false
	}
	if g.slowStart > 0 {
		if s := g.share(now); s < 1 && rand.Float64() >= s {
			return false
		}
	}
	return true
}

// minSlowStartShare is the share an endpoint starts its ramp with, so that
// it gets some traffic from the first moment (Envoy's min_weight_percent).
const minSlowStartShare = 0.1

// share is the endpoint's slow-start share of its traffic at now: from
// minSlowStartShare to 1 over slow_start after it last came back (its
// checks rose, or its ejection ended).
func (g *guard) share(now int64) float64 {
	back := max(g.upAt.Load(), g.ejectedUntil.Load())
	if back == 0 || now < back || now-back >= g.slowStart {
		return 1
	}
	return max(minSlowStartShare, float64(now-back)/float64(g.slowStart))
}

// pickable reports whether only passive health keeps e out: such an
// endpoint may get a passive trial request (see Endpoint.Trial).
func (e *Endpoint) pickable(now int64) bool {
	g := e.guard
	return g == nil || !g.down.Load() && now >= g.ejectedUntil.Load() && (g.breaker == nil || !g.breaker.Open(now))
}

// panicFallback picks, when no endpoint is left in rotation, one that
// outlier ejection or active health checks took out but that may still
// answer: passive health has it in (it accepts connections) and its
// breaker is closed. Ejection judges an endpoint against peers that are
// gone now, and a check can fail on an endpoint that still serves most
// requests; a pool answering some requests beats one refusing all (Envoy's
// panic routing, which it enters below 50 % healthy endpoints; penstock
// only when none is). Ejected endpoints whose checks pass are preferred.
// Successive calls start at successive endpoints, so a retry gets another
// endpoint. Nil when none is fit.
func (p *Pool) panicFallback(now int64) *Endpoint {
	if p.prot == nil {
		return nil
	}
	n := len(p.Endpoints)
	start := int(p.fallbackNext.Add(1))
	for _, checksPass := range [...]bool{true, false} {
		for i := range n {
			e := p.Endpoints[(start+i)%n]
			g := e.guard
			if g == nil || g.down.Load() != !checksPass || !e.Healthy(now) || g.warming.Load() {
				continue // a warming endpoint gets no live traffic, even here
			}
			if checksPass && now >= g.ejectedUntil.Load() {
				continue // in rotation, yet not picked: its breaker's trials are taken
			}
			if g.breaker != nil && g.breaker.Open(now) {
				continue
			}
			if e.claim(now) {
				return e
			}
		}
	}
	return nil
}

// claim takes a half-open trial slot of e's breaker for a picked request.
// A closed breaker costs one atomic load.
func (e *Endpoint) claim(now int64) bool {
	if g := e.guard; g != nil && g.breaker != nil {
		return g.breaker.Admit(now)
	}
	return true
}

// Admit reports whether the pool's breaker lets a request through at now;
// false means the request is answered at once (503 circuit_open). Ask once
// per request, before its first pick.
func (p *Pool) Admit(now int64) bool {
	if p.prot == nil || p.prot.breaker == nil {
		return true
	}
	return p.prot.breaker.Admit(now)
}

// BreakerError says why the pool's breaker refuses requests at now.
func (p *Pool) BreakerError(now int64) error {
	reason := "open"
	if p.prot != nil && p.prot.breaker != nil {
		if v := p.prot.breaker.view(now); v.Reason != "" {
			reason = v.Reason
		}
	}
	return fmt.Errorf("circuit breaker of upstream %q is open (%s)", p.Name, reason)
}

// BreakerRefused reports whether it is the endpoints' circuit breakers that
// left no endpoint to pick at now: some breaker is open or half-open and no
// other endpoint was available. It is for the failure path only (it scans
// the pool).
func (p *Pool) BreakerRefused(now int64) bool {
	if p.prot == nil || p.prot.breaker == nil {
		return false
	}
	open := false
	for _, e := range p.Endpoints {
		g := e.guard
		if g.breaker.Open(now) || g.breaker.State(now) == BreakerHalfOpen {
			open = true
			continue
		}
		if e.Healthy(now) && !g.down.Load() && now >= g.ejectedUntil.Load() {
			// Available but for the luck of slow start, or picked and
			// tried already: not the breakers' doing.
			return false
		}
	}
	return open
}

// Record counts one attempt to e in the breakers (pool's and endpoint's)
// and outlier detection. r is the attempt's result and latency its time
// until the response head (or the failure). Unlike passive health
// (ReportFailure), a 5xx response counts as a failure here. A pool without
// protection returns at once.
func (p *Pool) Record(e *Endpoint, r Result, latency time.Duration) {
	if p.prot == nil || r == ResultNone {
		return
	}
	p.RecordAt(e, time.Now().UnixNano(), r, latency)
}

// RecordAt is Record at a given Unix nanosecond time.
func (p *Pool) RecordAt(e *Endpoint, now int64, r Result, latency time.Duration) {
	pr := p.prot
	if pr == nil || r == ResultNone {
		return
	}
	g := e.guard
	if g.breaker != nil {
		g.breaker.Record(now, r, latency)
	}
	if pr.outlier != nil {
		p.recordOutlier(e, g, now, r, latency)
	}
}

// RecordRequest counts a request's final result in the pool's breaker: a
// request that a retry saved is a success there, so the pool's breaker
// opens only when clients see the pool fail, while the endpoints' breakers
// and outlier detection (Record) judge every attempt.
func (p *Pool) RecordRequest(r Result, latency time.Duration) {
	p.RecordRequestAt(time.Now().UnixNano(), r, latency)
}

// RecordRequestAt is RecordRequest at a given Unix nanosecond time.
func (p *Pool) RecordRequestAt(now int64, r Result, latency time.Duration) {
	if p.prot == nil || p.prot.breaker == nil || r == ResultNone {
		return
	}
	p.prot.breaker.Record(now, r, latency)
}

// Protection reports the pool's own protection state at now (its
// breaker), nil when it has none.
func (p *Pool) Protection(now int64) *BreakerView {
	if p.prot == nil || p.prot.breaker == nil {
		return nil
	}
	v := p.prot.breaker.view(now)
	return &v
}

// ProtectionState is an endpoint's protection state in the admin API.
type ProtectionState struct {
	// Health is the active health checks' view; absent without them.
	Health *HealthView `json:"health_check,omitempty"`
	// EjectedUntil is when the current outlier ejection ends (absent when
	// not ejected); TimesEjected the ejection time multiplier.
	EjectedUntil time.Time `json:"ejected_until,omitzero"`
	EjectReason  string    `json:"eject_reason,omitempty"`
	TimesEjected int       `json:"times_ejected"`
	Ejections    uint64    `json:"ejections_total"`
	// Breaker is the endpoint's circuit breaker; absent without one.
	Breaker *BreakerView `json:"circuit_breaker,omitempty"`
	// SlowStartShare is the share of its traffic the endpoint gets while it
	// ramps up after coming back (1: full).
	SlowStartShare float64 `json:"slow_start_share"`
}

// HealthView is an endpoint's active health for the admin API.
type HealthView struct {
	Up bool `json:"up"`
	// Warming is true while the endpoint's checks pass again but its
	// warm-up has not: it gets no live traffic yet.
	Warming bool         `json:"warming,omitempty"`
	Last    *CheckResult `json:"last_check,omitempty"`
}

func (e *Endpoint) protectionState(now int64) *ProtectionState {
	g := e.guard
	if g == nil {
		return nil
	}
	s := &ProtectionState{TimesEjected: int(g.timesEjected.Load()), Ejections: g.ejections.Load(), SlowStartShare: 1}
	if g.slowStart > 0 {
		s.SlowStartShare = g.share(now)
	}
	if g.checked {
		s.Health = &HealthView{Up: !g.down.Load(), Warming: g.warming.Load(), Last: g.last.Load()}
	}
	if u := g.ejectedUntil.Load(); now < u {
		s.EjectedUntil = time.Unix(0, u)
		s.EjectReason, _ = g.ejectReason.Load().(string)
	}
	if g.breaker != nil {
		v := g.breaker.view(now)
		s.Breaker = &v
	}
	return s
}

// LogObserver returns an Observer that writes a log line for every change
// an operator must be able to find afterwards (an endpoint taken out or
// put back by its checks, a breaker that opens or closes, an ejection)
// and passes every event on to next (the metrics). Checks themselves are
// not logged: they are counted. Transitions are few (each is bounded by an
// interval or an open duration), so the lines need no rate limit.
func LogObserver(log *slog.Logger, next Observer) Observer {
	return &logObserver{log: log, next: next}
}

type logObserver struct {
	log  *slog.Logger
	next Observer
}

func (o *logObserver) HealthCheck(pool, endpoint string, passed bool) {
	o.next.HealthCheck(pool, endpoint, passed)
}

func (o *logObserver) HealthChanged(pool, endpoint string, up bool) {
	if up {
		o.log.Info("endpoint passes its health checks again", "upstream", pool, "endpoint", endpoint)
	} else {
		o.log.Warn("endpoint fails its health checks; out of rotation", "upstream", pool, "endpoint", endpoint)
	}
	o.next.HealthChanged(pool, endpoint, up)
}

func (o *logObserver) BreakerChanged(pool, endpoint, state string) {
	level := slog.LevelInfo
	if state == "open" {
		level = slog.LevelWarn
	}
	if endpoint == "" {
		o.log.Log(context.Background(), level, "upstream circuit breaker "+state, "upstream", pool)
	} else {
		o.log.Log(context.Background(), level, "endpoint circuit breaker "+state, "upstream", pool, "endpoint", endpoint)
	}
	o.next.BreakerChanged(pool, endpoint, state)
}

func (o *logObserver) BreakerStarted(pool, endpoint string) { o.next.BreakerStarted(pool, endpoint) }

func (o *logObserver) Warmup(pool, endpoint string, passed bool, requests int) {
	if passed {
		o.log.Info("endpoint warmed up; back in rotation", "upstream", pool, "endpoint", endpoint, "warmup_requests", requests)
	} else {
		o.log.Warn("endpoint warm-up failed; kept out of rotation", "upstream", pool, "endpoint", endpoint, "warmup_requests", requests)
	}
	o.next.Warmup(pool, endpoint, passed, requests)
}

func (o *logObserver) Ejected(pool, endpoint, reason string) {
	o.log.Warn("endpoint ejected as an outlier", "upstream", pool, "endpoint", endpoint, "reason", reason)
	o.next.Ejected(pool, endpoint, reason)
}
