// Package admission decides whether a request may go to the upstream now:
// a concurrency limit (Limiter) with an optional bounded FIFO wait queue,
// the same limit kept per client key (Keyed), and an adaptive limit
// (Gradient) that follows the upstream's measured latency and sheds load
// early instead of letting a queue build up in front of a slow upstream.
//
// The pipeline's concurrency stage (internal/pipeline/concurrency.go) owns
// the configuration; this package holds only the mechanisms, which keep
// their state across configuration reloads (the stage keeps them in the
// pipeline State).
package admission

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Result is what an attempt to acquire a slot came to.
type Result uint8

const (
	// Admitted: the caller holds a slot and must Release it.
	Admitted Result = iota
	// Rejected: the limit was reached and the queue was full (or there is
	// none).
	Rejected
	// TimedOut: the request waited in the queue for the queue timeout
	// without getting a slot.
	TimedOut
	// Canceled: the request's context ended while it waited in the queue.
	Canceled
)

// String returns the result as metrics and logs name it.
func (r Result) String() string {
	switch r {
	case Admitted:
		return "admitted"
	case Rejected:
		return "rejected"
	case TimedOut:
		return "queue_timeout"
	case Canceled:
		return "canceled"
	case Unreachable:
		return "deadline_unreachable"
	case Expired:
		return "deadline_expired"
	}
	return "unknown"
}

// Limiter bounds the requests in flight. Under the limit a request takes
// its slot with one compare-and-swap and no lock; at the limit it waits in
// a FIFO queue of at most maxQueue requests, for at most the queue timeout,
// and is handed the slot of a request that completes. With maxQueue 0 a
// request at the limit is rejected at once.
//
// The limit can be changed while requests run (SetLimit, which the
// adaptive limit uses); lowering it never preempts requests already
// admitted, it only stops admitting until enough of them complete.
type Limiter struct {
	limit    atomic.Int64
	inflight atomic.Int64
	// queued counts the waiters; arrivals read it to keep FIFO order (they
	// do not overtake a queue) and Release reads it to know whether a
	// waiter needs its slot.
	queued   atomic.Int64
	maxQueue int64
	timeout  time.Duration

	mu         sync.Mutex // guards the queue
	head, tail *waiter
}

// waiter is one request in the queue. Waiters are pooled with their timer
// and channel, so queueing allocates nothing once warm.
type waiter struct {
	prev, next *waiter
	ready      chan struct{} // receives one value when granted
	granted    bool          // set under Limiter.mu when handed a slot
	timer      *time.Timer
}

var waiters = sync.Pool{New: func() any { return &waiter{ready: make(chan struct{}, 1)} }}

// NewLimiter returns a limiter admitting limit requests at once (at least
// 1), queueing up to maxQueue more for at most timeout each.
func NewLimiter(limit, maxQueue int, timeout time.Duration) *Limiter {
	l := &Limiter{maxQueue: int64(max(maxQueue, 0)), timeout: timeout}
	l.limit.Store(int64(max(limit, 1)))
	return l
}

// TryAcquire takes a slot if one is free and no request is queued for one
// (a newcomer does not overtake the queue). It never blocks.
func (l *Limiter) TryAcquire() bool {
	if l.queued.Load() > 0 {
		return false
	}
	for {
		n := l.inflight.Load()
		if n >= l.limit.Load() {
			return false
		}
		if l.inflight.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// TryAcquireBelow takes a slot only while fewer than n are in flight
// (and under the limit), without waiting: a priority level's share of the
// slots when higher levels hold a reserve.
func (l *Limiter) TryAcquireBelow(n int64) bool {
	if l.queued.Load() > 0 {
		return false
	}
	for {
		in := l.inflight.Load()
		if in >= l.limit.Load() || in >= n {
			return false
		}
		if l.inflight.CompareAndSwap(in, in+1) {
			return true
		}
	}
}

// Acquire takes a slot, waiting in the queue when the limit is reached and
// the queue has room. Only an Admitted caller holds a slot.
func (l *Limiter) Acquire(ctx context.Context) Result {
	if l.TryAcquire() {
		return Admitted
	}
	if l.maxQueue == 0 {
		return Rejected
	}
	return l.wait(ctx)
}

func (l *Limiter) wait(ctx context.Context) Result {
	l.mu.Lock()
	if l.queued.Load() >= l.maxQueue {
		l.mu.Unlock()
		return Rejected
	}
	w := waiters.Get().(*waiter)
	w.granted = false
	l.push(w)
	// queued is raised before dispatch reads inflight, and Release lowers
	// inflight before it reads queued: whichever runs second sees the
	// other, so a slot freed while this waiter enqueues is not lost.
	l.queued.Add(1)
	l.dispatch()
	l.mu.Unlock()

	if w.timer == nil {
		w.timer = time.NewTimer(l.timeout)
	} else {
		w.timer.Reset(l.timeout)
	}
	var res Result
	select {
	case <-w.ready:
		res = Admitted
	case <-w.timer.C:
		res = TimedOut
	case <-ctx.Done():
		res = Canceled
	}
	w.timer.Stop()
	if res != Admitted {
		l.mu.Lock()
		granted := w.granted
		if !granted {
			l.remove(w)
			l.queued.Add(-1)
		}
		l.mu.Unlock()
		if granted {
			// A slot was handed over just as the wait ended. A request
			// that timed out takes it (it was in time after all); one
			// whose client left gives it back.
			<-w.ready
			if res == Canceled {
				l.Release()
			} else {
				res = Admitted
			}
		}
	}
	waiters.Put(w)
	return res
}

// Release gives back a slot taken by TryAcquire or an Admitted Acquire,
// handing it to the oldest waiter if there is one.
func (l *Limiter) Release() {
	l.inflight.Add(-1)
	if l.queued.Load() > 0 {
		l.mu.Lock()
		l.dispatch()
		l.mu.Unlock()
	}
}

// dispatch hands free slots to waiters, oldest first. l.mu is held.
func (l *Limiter) dispatch() {
	for l.head != nil {
		n := l.inflight.Load()
		if n >= l.limit.Load() {
			return
		}
		if !l.inflight.CompareAndSwap(n, n+1) {
			continue
		}
		w := l.head
		l.remove(w)
		l.queued.Add(-1)
		w.granted = true
		w.ready <- struct{}{}
	}
}

func (l *Limiter) push(w *waiter) {
	w.prev, w.next = l.tail, nil
	if l.tail != nil {
		l.tail.next = w
	} else {
		l.head = w
	}
	l.tail = w
}

func (l *Limiter) remove(w *waiter) {
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		l.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		l.tail = w.prev
	}
	w.prev, w.next = nil, nil
}

// SetLimit changes the limit (at least 1). A higher limit admits waiters
// at once; a lower one admits nobody until the requests in flight are
// fewer than it.
func (l *Limiter) SetLimit(n int) {
	l.limit.Store(int64(max(n, 1)))
	if l.queued.Load() > 0 {
		l.mu.Lock()
		l.dispatch()
		l.mu.Unlock()
	}
}

// Limit returns the current limit.
func (l *Limiter) Limit() int { return int(l.limit.Load()) }

// InFlight returns the requests holding a slot.
func (l *Limiter) InFlight() int { return int(l.inflight.Load()) }

// Queued returns the requests waiting for a slot.
func (l *Limiter) Queued() int { return int(l.queued.Load()) }
