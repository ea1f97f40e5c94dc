package proxy

import (
	"math/rand/v2"
	"slices"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/metrics"
)

// maxAttempts bounds the endpoints one request may be sent to, whatever the
// policy says (config.MaxRetryAttempts): the loop keeps the endpoints tried
// in an array of this size on its stack.
const maxAttempts = config.MaxRetryAttempts

// RetryPolicy is a route's compiled retry policy (config.RouteRetry). It is
// built once per route and read by every request; its Budget is shared and
// safe for concurrent use.
type RetryPolicy struct {
	// Attempts bounds the attempts of one request, the first included
	// (1 to maxAttempts; larger values are treated as maxAttempts).
	Attempts int
	// On holds the retried failures, one bit per retryReason.
	On retryReasons
	// Methods are the methods retried on a reason other than
	// connect_failure.
	Methods []string
	// PerTryTimeout lowers the response header timeout of each attempt;
	// 0 leaves it.
	PerTryTimeout time.Duration
	// ReplayBody is the largest request body kept so that it can be sent
	// again (replay.go); 0 keeps none.
	ReplayBody int64
	// BackoffBase and BackoffMax shape the wait before each retry
	// (Backoff); a zero BackoffBase waits not at all.
	BackoffBase, BackoffMax time.Duration
	// Budget bounds the retries; nil allows every retry.
	Budget *Budget
	// Metrics counts the retries; nil counts nothing.
	Metrics *metrics.Retries

	// HedgeMax bounds the hedged attempts of one request (hedge.go); 0
	// hedges none.
	HedgeMax int
	// HedgeAfter is the fixed delay before a hedge; 0 takes the estimate
	// of Latency.
	HedgeAfter time.Duration
	// Latency estimates the route's P95 response head latency, the delay
	// before a hedge when HedgeAfter is 0; nil when the route does not
	// hedge by it.
	Latency *LatencyEstimator
}

// defaultRetry is the policy of a Forwarder without one: a failure to
// connect is tried on up to three endpoints at once, nothing else is
// retried (NGINX's proxy_next_upstream error, on by default).
var defaultRetry = RetryPolicy{Attempts: config.DefaultRetryAttempts, On: 1 << reasonConnect}

// NewRetryPolicy compiles a route's retry block (defaults applied). The
// budget is made by budget, so that a caller can keep it across reloads;
// nil makes a new one.
func NewRetryPolicy(rc *config.RouteRetry, m *metrics.Retries, budget func() *Budget) *RetryPolicy {
	p := &RetryPolicy{
		Attempts:      min(rc.Attempts, maxAttempts),
		Methods:       slices.Clone(rc.Methods),
		PerTryTimeout: rc.PerTryTimeout.D(),
		ReplayBody:    replayBodyOf(rc),
		BackoffBase:   rc.Backoff.Base.D(),
		BackoffMax:    rc.Backoff.Max.D(),
		Metrics:       m,
	}
	for _, on := range rc.On {
		if r, ok := reasonOf(on); ok {
			p.On |= 1 << r
		}
	}
	if h := rc.Hedge; h != nil {
		p.HedgeMax = min(h.Max, p.Attempts-1)
		p.HedgeAfter = h.HedgeDelay()
		if p.HedgeAfter == 0 {
			p.Latency = NewLatencyEstimator(0.95)
		}
	}
	if budget != nil {
		p.Budget = budget()
	} else {
		p.Budget = NewRetryBudget(&rc.Budget)
	}
	return p
}

// NewRetryBudget makes the budget of a retry block (defaults applied).
func NewRetryBudget(b *config.RetryBudget) *Budget {
	return NewBudget(*b.Percent, *b.MinPerSecond, b.Window.D())
}

// retryReason is why an attempt is retried: one of the retry conditions of
// config.RouteRetry.On. Its zero value is none.
type retryReason uint8

const (
	// reasonNone: the outcome is not retried by any policy.
	reasonNone retryReason = iota
	reasonConnect
	reasonReset
	reasonTimeout
	reason502
	reason503
	reason504
	// reasonHedge: a hedged attempt (hedge.go), not a condition of
	// config.RouteRetry.On.
	reasonHedge
)

// metric is r's index in metrics.RetryReasons (the same order, from 0).
func (r retryReason) metric() int { return int(r) - 1 }

// retryReasons is a set of retryReason, one bit each.
type retryReasons uint16

func (s retryReasons) has(r retryReason) bool { return r != reasonNone && s&(1<<r) != 0 }

// reasonOf maps a config.RouteRetry.On value to its reason.
func reasonOf(on string) (retryReason, bool) {
	switch on {
	case config.RetryOnConnectFailure:
		return reasonConnect, true
	case config.RetryOnReset:
		return reasonReset, true
	case config.RetryOnTimeout:
		return reasonTimeout, true
	case config.RetryOn502:
		return reason502, true
	case config.RetryOn503:
		return reason503, true
	case config.RetryOn504:
		return reason504, true
	}
	return reasonNone, false
}

// statusReason is the reason to retry a response of status, reasonNone for
// a status that never is.
func statusReason(status int) retryReason {
	switch status {
	case 502:
		return reason502
	case 503:
		return reason503
	case 504:
		return reason504
	}
	return reasonNone
}

// retryable reports whether p retries a failure for reason of a request
// with method: the reason is listed, and is a failure to connect (nothing
// was sent, so any method is safe) or the method may be sent twice.
func (p *RetryPolicy) retryable(r retryReason, method string) bool {
	return p.On.has(r) && (r == reasonConnect || slices.Contains(p.Methods, method))
}

// withdraw asks p's budget for a retry and counts the answer.
func (p *RetryPolicy) withdraw(r retryReason) bool {
	ok := p.Budget == nil || p.Budget.Withdraw(monotime())
	if p.Metrics != nil {
		p.Metrics.Retry(r.metric(), ok)
	}
	return ok
}

// backoff returns the wait before retry n (1 for the first): a random
// duration in [0, min(max, base × 2^(n-1))] ("full jitter", as in the AWS
// Architecture Blog's "Exponential Backoff And Jitter"), so the retries of
// requests that failed together are spread out. rnd returns a random
// number in [0, n).
func backoff(n int, base, max time.Duration, rnd func(n int64) int64) time.Duration {
	if base <= 0 {
		return 0
	}
	bound := base
	for i := 1; i < n && bound < max; i++ {
		bound *= 2
	}
	bound = min(bound, max)
	return time.Duration(rnd(int64(bound) + 1))
}

// sleepBackoff waits the backoff before retry n, or until done closes or
// deadline (if not zero) passes. It reports whether the wait ran to its
// end.
func (p *RetryPolicy) sleepBackoff(n int, done <-chan struct{}, deadline time.Time) bool {
	d := backoff(n, p.BackoffBase, p.BackoffMax, rand.Int64N)
	if !deadline.IsZero() && time.Until(deadline) <= d {
		return false
	}
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-done:
		return false
	}
}

// monoStart is the origin of monotime.
var monoStart = time.Now()

// monotime is the time on the monotonic clock, in nanoseconds since the
// process started: the budgets' clock, which a change of the wall clock
// does not move.
func monotime() int64 { return int64(time.Since(monoStart)) }

func replayBodyOf(rc *config.RouteRetry) int64 {
	if rc.ReplayBody == nil {
		return 0
	}
	return rc.ReplayBody.Int64()
}
