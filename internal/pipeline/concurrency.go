package pipeline

import (
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/penstock-dev/penstock/internal/admission"
	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/failure"
	"github.com/penstock-dev/penstock/internal/metrics"
)

// ConcurrencySettings are the concurrency stage's route fields.
type ConcurrencySettings struct {
	// Concurrency bounds the route's requests in flight to the upstream.
	// Off by default.
	Concurrency RouteConcurrency `yaml:"concurrency"`
	// Queue orders the requests waiting for the concurrency limit by
	// priority level, tenant and deadline instead of arrival (queue.go).
	// Off by default.
	Queue *RouteQueue `yaml:"queue"`
}

// RouteConcurrency is a route's concurrency limit: at most max_in_flight
// requests (or an adaptive limit) between this stage and the end of their
// response, the rest queued or refused with 503 concurrency_limited. It is
// the pipeline's last stage, so responses served from the cache, requests
// refused by a rate limit and bodies too large never take a slot.
type RouteConcurrency struct {
	// MaxInFlight bounds the requests forwarded at once (count); a request
	// beyond it waits in the queue, or gets 503 when the queue is full.
	// Must be 0 with adaptive.enabled (adaptive.max_limit bounds it
	// instead). Default 0 (no fixed limit).
	MaxInFlight int `yaml:"max_in_flight"`
	// MaxQueue bounds the requests waiting for a slot (count), served
	// first come first served. Default 0 (a request over the limit gets 503
	// at once).
	MaxQueue int `yaml:"max_queue"`
	// QueueTimeout bounds a request's wait in the queue (duration); it then
	// gets 503. Default 1s.
	QueueTimeout config.Duration `yaml:"queue_timeout"`
	// Key gives each client its own limit instead of one for the route:
	// "client_ip" (the address the connection came from, or, from a
	// trusted_proxies peer, the rightmost X-Forwarded-For address that is
	// not itself a trusted proxy) or
	// "header:<name>" (the header's value; requests without it share one
	// limit). Not with adaptive. Default "" (one limit).
	Key string `yaml:"key"`
	// MaxKeys bounds the keys with requests in flight or queued at once
	// (count); a request of another key gets 503. A key's state is dropped
	// as soon as its last request completes. Default 10000.
	MaxKeys int `yaml:"max_keys"`
	// Scope chooses whose limit this is: "route" (the route's own) or
	// "upstream" (one limit shared by every route to the same upstream that sets scope
	// upstream; their concurrency settings must then be identical).
	// Default route.
	Scope string `yaml:"scope"`
	// Adaptive replaces the fixed limit by one that follows the upstream's
	// latency (see docs/operations.md).
	Adaptive AdaptiveConcurrency `yaml:"adaptive"`
}

// AdaptiveConcurrency is the gradient limit of Envoy's adaptive
// concurrency filter (internal/admission.Gradient): the no-load latency
// (minRTT) is measured with the limit pinned to min_limit, then every
// sample_window the limit becomes limit × gradient + √limit, where gradient
// = minRTT × tolerance / the window's latency, within [0.5, 2].
type AdaptiveConcurrency struct {
	// Enabled turns the adaptive limit on (bool). Default false.
	Enabled bool `yaml:"enabled"`
	// MinLimit sets the lowest limit, and the limit while minRTT is measured
	// (count); keep it below the upstream's real parallelism, or the
	// measurement sees queueing. Default 3.
	MinLimit int `yaml:"min_limit"`
	// MaxLimit sets the highest limit (count). Default 1000.
	MaxLimit int `yaml:"max_limit"`
	// InitialLimit sets the limit after the first measurement of minRTT
	// (count). Default 20.
	InitialLimit int `yaml:"initial_limit"`
	// SampleWindow sets how often the limit is recomputed from the
	// latencies of the requests completed since (duration); 4 × minRTT
	// when that is longer, so that a window sees several round trips.
	// Default 100ms.
	SampleWindow config.Duration `yaml:"sample_window"`
	// Tolerance sets how many times minRTT a window's latency may reach
	// before the limit shrinks (factor, at least 1). Default 1.25.
	Tolerance float64 `yaml:"tolerance"`
	// Percentile chooses the percentile of the latencies taken as a window's latency and as
	// minRTT (0 < p ≤ 100); the latency is the upstream's time to response
	// headers. Default 50.
	Percentile float64 `yaml:"percentile"`
	// MinRTTInterval sets the time between measurements of minRTT
	// (duration), plus up to 15 % at random. Default 60s.
	MinRTTInterval config.Duration `yaml:"min_rtt_interval"`
	// MinRTTSamples sets how many requests a measurement of minRTT takes
	// (count); a measurement ends anyway after 20 sample windows, with the
	// requests measured by then. Default 50.
	MinRTTSamples int `yaml:"min_rtt_samples"`
}

// Defaults of RouteConcurrency.
const (
	// DefaultQueueTimeout is RouteConcurrency.QueueTimeout's default.
	DefaultQueueTimeout = config.Duration(time.Second)
	// DefaultMaxKeys is RouteConcurrency.MaxKeys's default.
	DefaultMaxKeys = 10000
)

// SetDefaults implements Settings.
func (s *ConcurrencySettings) SetDefaults() {
	if s.Queue != nil {
		s.Queue.setDefaults()
	}
	c := &s.Concurrency
	if c.QueueTimeout == 0 {
		c.QueueTimeout = DefaultQueueTimeout
	}
	if c.MaxKeys == 0 {
		c.MaxKeys = DefaultMaxKeys
	}
	if c.Scope == "" {
		c.Scope = "route"
	}
	a := &c.Adaptive
	setInt := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	setInt(&a.MinLimit, admission.DefaultMinLimit)
	setInt(&a.MaxLimit, admission.DefaultMaxLimit)
	setInt(&a.InitialLimit, admission.DefaultInitialLimit)
	setInt(&a.MinRTTSamples, admission.DefaultMinRTTSamples)
	if a.SampleWindow == 0 {
		a.SampleWindow = config.Duration(admission.DefaultWindow)
	}
	if a.Tolerance == 0 {
		a.Tolerance = admission.DefaultTolerance
	}
	if a.Percentile == 0 {
		a.Percentile = admission.DefaultPercentile * 100
	}
	if a.MinRTTInterval == 0 {
		a.MinRTTInterval = config.Duration(admission.DefaultMinRTTInterval)
	}
}

// Check implements Settings.
func (s *ConcurrencySettings) Check(r *Route) {
	c := s.Concurrency
	if s.Queue != nil {
		s.Queue.check(r, c)
	}
	a := c.Adaptive
	nonNegative := func(field string, v int) {
		if v < 0 {
			r.Errorf("concurrency."+field, "must not be negative, got %d", v)
		}
	}
	nonNegative("max_in_flight", c.MaxInFlight)
	nonNegative("max_queue", c.MaxQueue)
	if c.MaxKeys < 0 {
		r.Errorf("concurrency.max_keys", "must not be negative, got %d", c.MaxKeys)
	}
	if _, err := parseConcurrencyKey(c.Key); err != nil {
		r.Errorf("concurrency.key", "%v", err)
	}
	if c.Scope != "route" && c.Scope != "upstream" {
		r.Errorf("concurrency.scope", "must be route or upstream, got %q", c.Scope)
	}
	if a.Enabled {
		if c.MaxInFlight != 0 {
			r.Errorf("concurrency.max_in_flight", "must be 0 with adaptive.enabled (adaptive.max_limit bounds the limit), got %d", c.MaxInFlight)
		}
		if c.Key != "" {
			r.Errorf("concurrency.key", "an adaptive limit follows the upstream's latency and cannot be kept per key")
		}
		if a.MinLimit < 1 {
			r.Errorf("concurrency.adaptive.min_limit", "must be at least 1, got %d", a.MinLimit)
		}
		if a.MaxLimit < a.MinLimit {
			r.Errorf("concurrency.adaptive.max_limit", "must be at least min_limit (%d), got %d", a.MinLimit, a.MaxLimit)
		}
		if a.InitialLimit < a.MinLimit || a.InitialLimit > a.MaxLimit {
			r.Errorf("concurrency.adaptive.initial_limit", "must be within [min_limit, max_limit] = [%d, %d], got %d", a.MinLimit, a.MaxLimit, a.InitialLimit)
		}
		if a.SampleWindow < config.Duration(time.Millisecond) {
			r.Errorf("concurrency.adaptive.sample_window", "must be at least 1ms, got %s", a.SampleWindow)
		}
		if a.Tolerance < 1 {
			r.Errorf("concurrency.adaptive.tolerance", "must be at least 1, got %g", a.Tolerance)
		}
		if a.Percentile <= 0 || a.Percentile > 100 {
			r.Errorf("concurrency.adaptive.percentile", "must be in (0, 100], got %g", a.Percentile)
		}
		if a.MinRTTInterval < a.SampleWindow {
			r.Errorf("concurrency.adaptive.min_rtt_interval", "must be at least sample_window (%s), got %s", a.SampleWindow, a.MinRTTInterval)
		}
		if a.MinRTTSamples < 1 {
			r.Errorf("concurrency.adaptive.min_rtt_samples", "must be at least 1, got %d", a.MinRTTSamples)
		}
	} else if c.MaxInFlight == 0 && (c.MaxQueue != 0 || c.Key != "") {
		r.Errorf("concurrency.max_in_flight", "is needed by max_queue and key (or set adaptive.enabled)")
	}
	if c.Scope == "upstream" && c.enabled() {
		// Routes sharing an upstream's limit must agree on it: the first
		// route's settings would otherwise silently win. Each is compared
		// with the first route that shares the limit, which is enough.
		for j := range r.index {
			if rj := &r.cfg.Routes[j]; rj.Upstream != r.Config.Upstream || rj.Stages["concurrency"] == nil {
				continue
			}
			var other ConcurrencySettings
			if r.cfg.DecodeStageFields(j, &other) != nil {
				continue
			}
			other.SetDefaults()
			if o := other.Concurrency; o.Scope == "upstream" && o.enabled() {
				if o != c {
					r.Errorf("concurrency", "differs from routes[%d].concurrency, which shares upstream %q's limit (scope upstream): make them identical", j, r.Config.Upstream)
				}
				break
			}
		}
	}
}

func (c RouteConcurrency) enabled() bool { return c.MaxInFlight > 0 || c.Adaptive.Enabled }

// concurrencyKey is how a keyed limit tells clients apart.
type concurrencyKey struct {
	clientIP bool
	header   string
}

func parseConcurrencyKey(s string) (concurrencyKey, error) {
	switch name, ok := strings.CutPrefix(s, "header:"); {
	case s == "":
		return concurrencyKey{}, nil
	case s == "client_ip":
		return concurrencyKey{clientIP: true}, nil
	case ok && name != "" && !strings.ContainsAny(name, " \t:"):
		return concurrencyKey{header: name}, nil
	}
	return concurrencyKey{}, fmt.Errorf("must be client_ip or header:<name>, got %q", s)
}

// of returns x's key.
func (k concurrencyKey) of(x *exchange.Exchange) admission.Key {
	if k.header != "" {
		v, _ := x.Req.Header.Get(k.header)
		return admission.Key{Name: v}
	}
	return admission.Key{Addr: clientAddr(x)}
}

// concurrencyLimit is the state a limit keeps across reloads: the limiter
// (or the per-key table), the adaptive limit driving it, and the rate of
// its warnings.
type concurrencyLimit struct {
	lim   *admission.Limiter // nil for a keyed limit
	grad  *admission.Gradient
	keyed *admission.Keyed
	warn  logLimiter
}

func (l *concurrencyLimit) state() metrics.ConcurrencyState {
	if l.keyed != nil {
		in, q := l.keyed.Totals()
		return metrics.ConcurrencyState{Limit: l.keyed.Limit(), InFlight: in, Queued: q}
	}
	s := metrics.ConcurrencyState{Limit: l.lim.Limit(), InFlight: l.lim.InFlight(), Queued: l.lim.Queued()}
	if l.grad != nil {
		s.MinRTT = l.grad.MinRTT()
	}
	return s
}

// concurrency is the concurrency stage's handler: it admits a request
// (at once, after a wait in the queue, or not at all) and holds its slot
// until the response is complete.
type concurrency struct {
	limit   *concurrencyLimit
	key     concurrencyKey
	keyed   bool
	scope   string
	name    string // the route's or the upstream's
	route   string
	metrics *metrics.Concurrency // nil: not recorded
	log     *slog.Logger
	next    exchange.Handler
	// errors are the access log's error text per admission.Result.
	errors [4]string
}

func newConcurrency(s *ConcurrencySettings, r *Route, next exchange.Handler) (exchange.Handler, error) {
	c := s.Concurrency
	if s.Queue != nil {
		return newQueued(s, r, next)
	}
	if !c.enabled() {
		return next, nil
	}
	key, err := parseConcurrencyKey(c.Key)
	if err != nil {
		return nil, err
	}
	name := r.Config.Name
	if c.Scope == "upstream" {
		name = r.Config.Upstream
	}
	v, err := r.State.Keep(fmt.Sprintf("concurrency|%s|%s|%+v", c.Scope, name, c), func() (any, error) {
		l := &concurrencyLimit{}
		switch a := c.Adaptive; {
		case a.Enabled:
			l.lim = admission.NewLimiter(a.InitialLimit, c.MaxQueue, c.QueueTimeout.D())
			l.grad = admission.NewGradient(l.lim, admission.GradientConfig{
				MinLimit:       a.MinLimit,
				MaxLimit:       a.MaxLimit,
				InitialLimit:   a.InitialLimit,
				Window:         a.SampleWindow.D(),
				Tolerance:      a.Tolerance,
				Percentile:     a.Percentile / 100,
				MinRTTInterval: a.MinRTTInterval.D(),
				MinRTTSamples:  a.MinRTTSamples,
			})
		case c.Key != "":
			l.keyed = admission.NewKeyed(c.MaxInFlight, c.MaxQueue, c.QueueTimeout.D(), c.MaxKeys)
		default:
			l.lim = admission.NewLimiter(c.MaxInFlight, c.MaxQueue, c.QueueTimeout.D())
		}
		return l, nil
	})
	if err != nil {
		return nil, err
	}
	h := &concurrency{
		limit: v.(*concurrencyLimit),
		key:   key,
		keyed: c.Key != "",
		scope: c.Scope,
		name:  name,
		route: r.Config.Name,
		log:   r.Logger,
		next:  next,
	}
	what := "concurrency limit"
	if c.Adaptive.Enabled {
		what = "adaptive concurrency limit"
	}
	if h.keyed {
		what += " of its key (" + c.Key + ")"
	}
	h.errors[admission.Rejected] = what + " reached"
	if c.MaxQueue > 0 {
		h.errors[admission.Rejected] += " and queue full"
	}
	h.errors[admission.TimedOut] = what + " reached; queued for queue_timeout (" + c.QueueTimeout.String() + ")"
	h.errors[admission.Canceled] = what + " reached; the client left while queued"
	if h.keyed && c.MaxKeys > 0 {
		h.errors[admission.Rejected] += " (or max_keys keys busy)"
	}
	if r.Metrics != nil {
		h.metrics = r.Metrics.Concurrency(c.Scope, name)
		h.metrics.Observe(h.limit.state, c.Adaptive.Enabled)
	}
	return h, nil
}

func (c *concurrency) ServeExchange(x *exchange.Exchange) {
	l := c.limit
	if c.keyed {
		e, res := l.keyed.Acquire(x.Ctx, c.key.of(x))
		if res != admission.Admitted {
			c.refuse(x, res)
			return
		}
		c.count(admission.Admitted)
		defer l.keyed.Release(e)
		c.next.ServeExchange(x)
		return
	}
	var epoch uint32
	if l.grad != nil {
		epoch = l.grad.Epoch()
	}
	if res := l.lim.Acquire(x.Ctx); res != admission.Admitted {
		c.refuse(x, res)
		return
	}
	c.count(admission.Admitted)
	if l.grad == nil {
		defer l.lim.Release()
		c.next.ServeExchange(x)
		return
	}
	l.grad.Admitted()
	wait := x.State.UpstreamWait
	defer c.sample(x, epoch, wait)
	c.next.ServeExchange(x)
}

// sample releases an adaptive limit's slot and gives it the request's
// latency: the upstream's time to response headers, which is where
// queueing at the upstream shows (a streamed body's length does not).
// Requests whose client left, or that never reached the upstream, tell
// nothing about it.
func (c *concurrency) sample(x *exchange.Exchange, epoch uint32, before time.Duration) {
	l := c.limit
	l.lim.Release()
	if rtt := x.State.UpstreamWait - before; rtt > 0 && x.Ctx.Err() == nil {
		l.grad.Sample(epoch, rtt)
	}
}

func (c *concurrency) count(res admission.Result) {
	if c.metrics != nil {
		c.metrics.Count(int(res))
	}
}

// refuse answers a request the limit did not admit: 503 through the error
// funnel, the reason in the access log, and a warning at a bounded rate.
func (c *concurrency) refuse(x *exchange.Exchange, res admission.Result) {
	c.count(res)
	if c.limit.grad != nil {
		c.limit.grad.Refused()
	}
	failure.Fail(x, failure.ConcurrencyLimited)
	x.State.Error = c.errors[res]
	if ok, suppressed := c.limit.warn.allow(time.Now()); ok {
		s := c.limit.state()
		c.log.Warn("concurrency limit: request refused", "route", c.route, "scope", c.scope, "limit_name", c.name,
			"result", res.String(), "limit", s.Limit, "in_flight", s.InFlight, "queued", s.Queued,
			"request_id", x.State.RequestID, "suppressed", suppressed)
	}
}

// Warnings about refused requests per limit: warnBurst lines first, then
// at most one a second. Under overload every refused request would
// otherwise write a line; the access log and the metrics have each of
// them.
const (
	warnBurst    = 10
	warnInterval = time.Second
)

// logLimiter decides which refusals get a log line. Refusals are the busy
// path of an overloaded route, so it takes no lock: a few atomic
// operations, and a compare-and-swap once a second. The zero value is
// ready.
type logLimiter struct {
	burst      atomic.Int64 // lines written in the initial burst
	next       atomic.Int64 // Unix nanoseconds before which lines are suppressed
	suppressed atomic.Int64 // since the last line written
}

// allow reports whether a line may be written at now, and how many were
// suppressed since the last one written (to be reported with it).
func (l *logLimiter) allow(now time.Time) (ok bool, suppressed int) {
	if l.burst.Load() < warnBurst {
		if b := l.burst.Add(1); b <= warnBurst {
			if b == warnBurst {
				l.next.Store(now.UnixNano() + int64(warnInterval))
			}
			return true, int(l.suppressed.Swap(0))
		}
	}
	n, next := now.UnixNano(), l.next.Load()
	if n < next || !l.next.CompareAndSwap(next, n+int64(warnInterval)) {
		l.suppressed.Add(1)
		return false, 0
	}
	return true, int(l.suppressed.Swap(0))
}
