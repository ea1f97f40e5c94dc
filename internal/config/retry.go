package config

import (
	"slices"
	"strings"
	"time"
)

// RouteRetry is a route's retry policy: which failed attempts are sent
// again to another endpoint of the pool, how often, how soon, and how many
// retries the route may send at most (the budget). Without a retry block a
// route keeps the defaults, which retry only failures to connect (nothing
// was sent) on up to three endpoints.
type RouteRetry struct {
	// Attempts bounds the attempts of one request, the first included, each
	// at another endpoint (count, 1–10). 1 never retries. Default 3.
	Attempts int `yaml:"attempts"`
	// On lists the failures that are retried: connect_failure (no
	// connection could be made, nothing was sent: every method),
	// reset (the connection broke before any byte of a response), timeout
	// (no response head within per_try_timeout or
	// timeouts.response_header), and the statuses 502, 503 and 504 (the
	// response is discarded unsent). All but connect_failure apply to the
	// methods in Methods only. Default [connect_failure].
	On []string `yaml:"on"`
	// Methods are the methods retried on reset, timeout and 5xx: those safe
	// to send twice. Default GET, HEAD, OPTIONS, PUT, DELETE, TRACE (the
	// idempotent methods of RFC 9110 §9.2.2); list POST only for an
	// upstream that applies a POST at most once.
	Methods []string `yaml:"methods"`
	// PerTryTimeout bounds each attempt's wait for its response head once
	// the request is sent (duration), so a slow endpoint is given up in
	// time to try another within timeouts.request. It lowers
	// timeouts.response_header for this route's attempts. Default 0 (only
	// timeouts.response_header).
	PerTryTimeout Duration `yaml:"per_try_timeout"`
	// ReplayBody is the largest request body (with a Content-Length) kept
	// in memory so that a request of a method in Methods can be sent again
	// after a reset, timeout or 5xx (size, at most 16MiB). Such a body is
	// read in full before the first attempt; larger and chunked bodies are
	// streamed and never retried once sent. Only routes retrying more than
	// connect failures keep bodies. Default 64KiB; 0 keeps none.
	ReplayBody *ByteSize `yaml:"replay_body"`
	// Backoff spaces the retries of one request.
	Backoff RetryBackoff `yaml:"backoff"`
	// Budget bounds the retries the route sends, so an outage cannot
	// multiply the load on the pool.
	Budget RetryBudget `yaml:"budget"`
	// Hedge, when present, sends a second attempt to another endpoint when
	// the first has no response head after a delay; the first head wins.
	// Only for requests without a body whose method is in Methods.
	Hedge *RetryHedge `yaml:"hedge"`
}

// RetryHedge is a route's hedging: a request still waiting for its
// response head after a delay is sent to another endpoint as well, the
// first response head is relayed and the other attempts are canceled.
// Hedges count as attempts and draw on the retry budget.
type RetryHedge struct {
	// After is the delay: "p95", the 95th percentile of the route's recent
	// response head latencies (no hedge until 100 responses were seen), or
	// a fixed duration. Default p95.
	After string `yaml:"after"`
	// Max bounds the hedges of one request (count), at most attempts − 1;
	// each after another delay. Default 1.
	Max int `yaml:"max"`
}

// HedgeAfterP95 is RetryHedge.After's default: the route's measured 95th
// percentile.
const HedgeAfterP95 = "p95"

// RetryBackoff is the wait before each retry: a random duration between 0
// and min(max, base × 2^(retry-1)) ("full jitter"), so the retries of many
// requests that failed together do not arrive together.
type RetryBackoff struct {
	// Base is the first retry's bound (duration). Default 25ms.
	Base Duration `yaml:"base"`
	// Max caps the bound (duration), at least base. Default 250ms.
	Max Duration `yaml:"max"`
}

// RetryBudget bounds a route's retries over a sliding window to a share of
// its requests plus a floor: retries ≤ percent/100 × requests +
// min_per_second × window. A retry beyond it is not sent; the client gets
// the failure at hand.
type RetryBudget struct {
	// Percent is the retries allowed per 100 requests (0–100). Default 20.
	Percent *float64 `yaml:"percent"`
	// MinPerSecond is the retry rate always allowed, however few the
	// requests, so a quiet route can still retry (retries per second).
	// Default 10.
	MinPerSecond *float64 `yaml:"min_per_second"`
	// Window is the span requests and retries are counted over (duration,
	// 1s–10m). Default 10s.
	Window Duration `yaml:"window"`
}

// Retry policy defaults and bounds.
const (
	// DefaultRetryAttempts is RouteRetry.Attempts' default: as many
	// endpoints as a failure to connect was always tried on.
	DefaultRetryAttempts = 3
	// MaxRetryAttempts bounds RouteRetry.Attempts.
	MaxRetryAttempts = 10
	// DefaultRetryReplayBody is RouteRetry.ReplayBody's default.
	DefaultRetryReplayBody = ByteSize(64 << 10)
	// MaxRetryReplayBody bounds RouteRetry.ReplayBody.
	MaxRetryReplayBody = ByteSize(16 << 20)
	// DefaultRetryBackoffBase is RetryBackoff.Base's default.
	DefaultRetryBackoffBase = Duration(25 * time.Millisecond)
	// DefaultRetryBackoffMax is RetryBackoff.Max's default.
	DefaultRetryBackoffMax = Duration(250 * time.Millisecond)
	// DefaultRetryBudgetPercent is RetryBudget.Percent's default, as
	// Linkerd's and Finagle's retry budgets (a ratio of 0.2).
	DefaultRetryBudgetPercent = 20.0
	// DefaultRetryBudgetMinPerSecond is RetryBudget.MinPerSecond's default.
	DefaultRetryBudgetMinPerSecond = 10.0
	// DefaultRetryBudgetWindow is RetryBudget.Window's default.
	DefaultRetryBudgetWindow = Duration(10 * time.Second)
)

// Retry conditions, as written in RouteRetry.On.
const (
	RetryOnConnectFailure = "connect_failure"
	RetryOnReset          = "reset"
	RetryOnTimeout        = "timeout"
	RetryOn502            = "502"
	RetryOn503            = "503"
	RetryOn504            = "504"
)

// RetryConditions lists the values RouteRetry.On accepts.
func RetryConditions() []string {
	return []string{RetryOnConnectFailure, RetryOnReset, RetryOnTimeout, RetryOn502, RetryOn503, RetryOn504}
}

// DefaultRetryMethods returns RouteRetry.Methods' default: the idempotent
// methods of RFC 9110 §9.2.2.
func DefaultRetryMethods() []string {
	return []string{"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"}
}

// setDefaults fills r's unset fields.
func (r *RouteRetry) setDefaults() {
	setDefault(&r.Attempts, DefaultRetryAttempts)
	if r.On == nil {
		r.On = []string{RetryOnConnectFailure}
	}
	if r.Methods == nil {
		r.Methods = DefaultRetryMethods()
	}
	if r.ReplayBody == nil {
		b := DefaultRetryReplayBody
		r.ReplayBody = &b
	}
	setDefault(&r.Backoff.Base, DefaultRetryBackoffBase)
	setDefault(&r.Backoff.Max, max(DefaultRetryBackoffMax, r.Backoff.Base))
	if r.Budget.Percent == nil {
		p := DefaultRetryBudgetPercent
		r.Budget.Percent = &p
	}
	if r.Budget.MinPerSecond == nil {
		m := DefaultRetryBudgetMinPerSecond
		r.Budget.MinPerSecond = &m
	}
	setDefault(&r.Budget.Window, DefaultRetryBudgetWindow)
	if h := r.Hedge; h != nil {
		setDefault(&h.After, HedgeAfterP95)
		setDefault(&h.Max, 1)
	}
}

// HedgeDelay returns the fixed delay of h.After, or 0 for "p95".
func (h *RetryHedge) HedgeDelay() time.Duration {
	if h.After == HedgeAfterP95 {
		return 0
	}
	d, _ := ParseDuration(h.After)
	return d.D()
}

// validate checks r, a route's retry block at path p.
func (r *RouteRetry) validate(col *Collector, p string) {
	if r.Attempts < 1 || r.Attempts > MaxRetryAttempts {
		col.Addf(p+".attempts", "must be between 1 and %d, got %d", MaxRetryAttempts, r.Attempts)
	}
	seen := map[string]bool{}
	for i, on := range r.On {
		ip := indexPath(p+".on", i)
		switch {
		case !slices.Contains(RetryConditions(), on):
			col.Addf(ip, "unknown retry condition %q (one of %s)%s", on, strings.Join(RetryConditions(), ", "),
				didYouMean(on, RetryConditions()))
		case seen[on]:
			col.Addf(ip, "%q is listed twice", on)
		}
		seen[on] = true
	}
	methods := map[string]bool{}
	for i, m := range r.Methods {
		mp := indexPath(p+".methods", i)
		switch {
		case !isToken(m):
			col.Addf(mp, "invalid method %q", m)
		case m != strings.ToUpper(m):
			col.Addf(mp, "method %q must be uppercase: %q", m, strings.ToUpper(m))
		case methods[m]:
			col.Addf(mp, "method %q is listed twice", m)
		}
		methods[m] = true
	}
	checkDuration(col, p+".per_try_timeout", r.PerTryTimeout)
	if b := r.ReplayBody; b != nil && (*b < 0 || *b > MaxRetryReplayBody) {
		col.Addf(p+".replay_body", "must be between 0 and %s, got %s", MaxRetryReplayBody, *b)
	}
	checkDuration(col, p+".backoff.base", r.Backoff.Base)
	checkDuration(col, p+".backoff.max", r.Backoff.Max)
	if r.Backoff.Max < r.Backoff.Base {
		col.Addf(p+".backoff.max", "must be at least backoff.base (%s), got %s", r.Backoff.Base, r.Backoff.Max)
	}
	if pc := r.Budget.Percent; pc != nil && !(*pc >= 0 && *pc <= 100) {
		col.Addf(p+".budget.percent", "must be between 0 and 100, got %v", *pc)
	}
	if m := r.Budget.MinPerSecond; m != nil && !(*m >= 0 && *m <= 1e6) {
		col.Addf(p+".budget.min_per_second", "must be between 0 and 1000000, got %v", *m)
	}
	if w := r.Budget.Window; w < Duration(time.Second) || w > Duration(10*time.Minute) {
		col.Addf(p+".budget.window", "must be between 1s and 10m, got %s", w)
	}
	if h := r.Hedge; h != nil {
		if h.After != HedgeAfterP95 {
			if d, err := ParseDuration(h.After); err != nil || d <= 0 {
				col.Addf(p+".hedge.after", "must be %q or a positive duration such as \"50ms\", got %q", HedgeAfterP95, h.After)
			}
		}
		if h.Max < 1 || h.Max >= r.Attempts {
			col.Addf(p+".hedge.max", "must be between 1 and attempts − 1 (%d), got %d", r.Attempts-1, h.Max)
		}
	}
}
