package upstream

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
)

// BreakerState is a circuit breaker's state.
type BreakerState uint32

const (
	// BreakerClosed lets every request through.
	BreakerClosed BreakerState = iota
	// BreakerOpen refuses every request until its open duration is over.
	BreakerOpen
	// BreakerHalfOpen lets a bounded number of trial requests through.
	BreakerHalfOpen
)

func (s BreakerState) String() string {
	switch s {
	case BreakerOpen:
		return "open"
	case BreakerHalfOpen:
		return "half_open"
	}
	return "closed"
}

// MarshalText makes the state read as its name in the admin API.
func (s BreakerState) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Result is what one attempt teaches the breakers and outlier detection.
type Result uint8

const (
	// ResultNone: the upstream had no part in how the attempt ended (the
	// client left, its request body failed). Nothing is recorded.
	ResultNone Result = iota
	// ResultOK: a response below 500 arrived.
	ResultOK
	// Result5xx: a 5xx response arrived. A failure for the breakers and
	// outlier detection, but not for passive health (the endpoint is up).
	Result5xx
	// ResultGatewayFailure: no usable response (connect error or timeout,
	// response timeout, reset, malformed or truncated response).
	ResultGatewayFailure
)

// breakerBucket counts one second of a breaker's window. sec is the Unix
// second the counts belong to; the first request of a new second resets
// them. Two requests racing over that reset may lose a count or two, which
// a ratio over a window of many does not notice; the request path takes no
// lock.
type breakerBucket struct {
	sec               atomic.Int64
	total, fail, slow atomic.Int32
}

// breaker is one circuit breaker (a pool's, or an endpoint's). A request
// that finds it closed costs an atomic load to admit and a few atomic adds
// to record; only transitions, and the window sums taken when a failed or
// slow request is recorded, do more.
type breaker struct {
	window        int64 // seconds
	minRequests   int32
	errorRatio    float64
	slowThreshold time.Duration
	slowRatio     float64
	openDuration  int64 // nanoseconds
	maxTrials     int32

	state  atomic.Uint32
	since  atomic.Int64 // Unix ns the current state began
	trials atomic.Int32 // half-open: requests admitted
	passed atomic.Int32 // half-open: trials that passed

	buckets []breakerBucket

	// mu serializes transitions; the request path never takes it while
	// the breaker is closed and requests pass.
	mu          sync.Mutex
	transitions atomic.Uint64
	reason      atomic.Value // string: why it last opened
	onChange    func(from, to BreakerState)
}

func newBreaker(c *config.CircuitBreaker, onChange func(from, to BreakerState)) *breaker {
	w := max(int64(c.Window.D()/time.Second), 1)
	b := &breaker{window: w, minRequests: int32(c.MinRequests), errorRatio: c.ErrorRatio,
		slowThreshold: c.SlowThreshold.D(), slowRatio: c.SlowRatio, openDuration: int64(c.OpenDuration.D()),
		maxTrials: int32(max(c.MaxTrialRequests, 1)), buckets: make([]breakerBucket, w), onChange: onChange}
	b.reason.Store("")
	return b
}

// State reports the breaker's state at now: an open breaker whose open
// duration is over reads half-open, though it changes only at the next
// request.
func (b *breaker) State(now int64) BreakerState {
	s := BreakerState(b.state.Load())
	if s == BreakerOpen && now-b.since.Load() >= b.openDuration {
		return BreakerHalfOpen
	}
	return s
}

// Open reports, without changing anything, whether the breaker refuses
// every request at now. Balancers ask it for each endpoint they look at.
func (b *breaker) Open(now int64) bool {
	return BreakerState(b.state.Load()) == BreakerOpen && now-b.since.Load() < b.openDuration
}

// Admit reports whether a request may go through at now, and counts it as
// a trial while half-open. Closed costs one atomic load.
func (b *breaker) Admit(now int64) bool {
	switch BreakerState(b.state.Load()) {
	case BreakerClosed:
		return true
	case BreakerOpen:
		if now-b.since.Load() < b.openDuration {
			return false
		}
		b.transition(BreakerOpen, BreakerHalfOpen, now, "")
	}
	// Half-open. Trials that never report (the request found no endpoint,
	// or its endpoint was dropped) would hold their slots for ever; after
	// another open duration the slots are given out again.
	if since := b.since.Load(); now-since >= b.openDuration && b.since.CompareAndSwap(since, now) {
		b.trials.Store(0)
	}
	return BreakerState(b.state.Load()) != BreakerOpen && b.trials.Add(1) <= b.maxTrials
}

// Record counts one attempt's result at now.
func (b *breaker) Record(now int64, r Result, latency time.Duration) {
	if r == ResultNone {
		return
	}
	failed := r != ResultOK
	slow := b.slowThreshold > 0 && latency > b.slowThreshold
	switch BreakerState(b.state.Load()) {
	case BreakerOpen:
		// A request admitted before the breaker opened.
		return
	case BreakerHalfOpen:
		if failed || slow {
			reason := "trial request failed"
			if !failed {
				reason = "trial request slow"
			}
			b.transition(BreakerHalfOpen, BreakerOpen, now, reason)
		} else if b.passed.Add(1) >= b.maxTrials {
			b.transition(BreakerHalfOpen, BreakerClosed, now, "")
		}
		return
	}
	sec := now / int64(time.Second)
	bk := &b.buckets[sec%b.window]
	if s := bk.sec.Load(); s != sec && bk.sec.CompareAndSwap(s, sec) {
		bk.total.Store(0)
		bk.fail.Store(0)
		bk.slow.Store(0)
	}
	bk.total.Add(1)
	if !failed && !slow {
		return
	}
	if failed {
		bk.fail.Add(1)
	}
	if slow {
		bk.slow.Add(1)
	}
	if reason := b.trip(sec); reason != "" {
		b.transition(BreakerClosed, BreakerOpen, now, reason)
	}
}

// trip sums the window ending at second sec and returns why the breaker
// should open, or "".
func (b *breaker) trip(sec int64) string {
	var total, fail, slow int32
	for i := range b.buckets {
		bk := &b.buckets[i]
		if s := bk.sec.Load(); s > sec-b.window && s <= sec {
			total += bk.total.Load()
			fail += bk.fail.Load()
			slow += bk.slow.Load()
		}
	}
	switch {
	case total < b.minRequests:
		return ""
	case float64(fail) >= b.errorRatio*float64(total):
		return "error ratio"
	case b.slowThreshold > 0 && float64(slow) >= b.slowRatio*float64(total):
		return "slow ratio"
	}
	return ""
}

// transition moves the breaker from one state to another, unless another
// request moved it first.
func (b *breaker) transition(from, to BreakerState, now int64, reason string) {
	b.mu.Lock()
	if BreakerState(b.state.Load()) != from {
		b.mu.Unlock()
		return
	}
	b.since.Store(now)
	b.trials.Store(0)
	b.passed.Store(0)
	if to == BreakerOpen {
		b.reason.Store(reason)
	}
	if to == BreakerClosed {
		// Start from a clean window: the failures that opened the breaker
		// must not open it again at the next failure.
		for i := range b.buckets {
			b.buckets[i].sec.Store(0)
		}
	}
	b.state.Store(uint32(to))
	b.transitions.Add(1)
	b.mu.Unlock()
	if b.onChange != nil {
		b.onChange(from, to)
	}
}

// BreakerView is a breaker's state for the admin API.
type BreakerView struct {
	State       BreakerState `json:"state"`
	Since       time.Time    `json:"since,omitzero"`
	Reason      string       `json:"reason,omitempty"`
	Transitions uint64       `json:"transitions"`
}

func (b *breaker) view(now int64) BreakerView {
	v := BreakerView{State: b.State(now), Transitions: b.transitions.Load()}
	if s := b.since.Load(); s != 0 {
		v.Since = time.Unix(0, s)
	}
	if v.State != BreakerClosed {
		v.Reason, _ = b.reason.Load().(string)
	}
	return v
}
