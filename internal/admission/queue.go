package admission

import (
	"container/heap"
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Results of a Queue besides those of a Limiter.
const (
	// Unreachable: the request's deadline cannot be met (its expected wait
	// and service time end after it); refused at once, never queued.
	Unreachable Result = iota + Canceled + 1
	// Expired: the request's deadline came while it waited; it is refused
	// rather than sent late.
	Expired
)

// QueueLevel bounds one priority level of a Queue.
type QueueLevel struct {
	// MaxQueue bounds the level's waiting requests (count, at least 1).
	MaxQueue int
	// MaxWait bounds a request's wait (positive).
	MaxWait time.Duration
	// Reserve is the slots of the limit kept for this level and the ones
	// above it: a request of a lower level is admitted only while more
	// than the reserves above it are free.
	Reserve int
}

// QueueConfig configures a Queue.
type QueueConfig struct {
	// Limit is the requests in flight at once (at least 1).
	Limit int
	// Levels are the priority levels, highest first.
	Levels []QueueLevel
	// MaxTenants bounds the tenants with waiting requests at once; a
	// request of another tenant is rejected. 0 means no bound.
	MaxTenants int
}

// sendMargin is the least time a request must have left before its
// deadline to be sent: one sent closer to it would reach the upstream
// after it.
const sendMargin = time.Millisecond

// QueueRequest is what the queue knows of a request.
type QueueRequest struct {
	// Level is the index of its priority level (0 is the highest).
	Level int
	// Tenant is the tenant it is charged to ("" is a tenant too).
	Tenant string
	// Weight is the tenant's weight inside the level (> 0).
	Weight float64
	// Deadline is when its response is needed; zero means none.
	Deadline time.Time
}

// Queue is a concurrency limit whose waiting requests are ordered by
// priority, not by arrival: strictly by level first (a request of a higher
// level goes before every request of a lower one, so interactive traffic
// overtakes queued batch traffic, never a request already sent); inside a
// level, tenants share the slots by weight (weighted fair queuing, as
// stride scheduling: the backlogged tenant with the least service per
// weight goes next, and a tenant that was idle starts level with the
// others rather than with credit); inside a tenant, the earliest deadline
// goes first (EDF), then the earliest arrival.
//
// A request whose deadline cannot be met is refused at once (Unreachable):
// the expected wait (the requests ahead of it over the limit, times the
// measured service time) plus its own service time would end after it. A
// waiting request whose deadline comes is refused then (Expired): nothing
// is sent after its deadline.
//
// Slots are counted by a Limiter without a queue of its own.
type Queue struct {
	lim     *Limiter
	levels  []*queueLevel
	maxTen  int
	waiting atomic.Int64
	// service is the measured service time (ns), an exponentially
	// weighted moving average of the completed requests' times.
	service atomic.Int64

	mu      sync.Mutex
	seq     uint64
	tenants int
}

type queueLevel struct {
	cfg QueueLevel
	// cap is the in-flight count below which the level's requests are
	// admitted: the limit less the reserves of the levels above.
	cap     int64
	queued  int
	gauge   atomic.Int64 // queued, for readers without the lock
	tenants map[string]*queueTenant
	active  []*queueTenant // tenants with waiting requests
	vfloor  float64        // the service per weight of the last tenant served
}

type queueTenant struct {
	name    string
	v       float64 // service received per weight
	waiters waiterHeap
}

// qwaiter is one request waiting in a Queue.
type qwaiter struct {
	req    QueueRequest
	seq    uint64
	index  int
	tenant *queueTenant
	ready  chan Result // gets the outcome once decided by the queue
	done   bool        // set under Queue.mu once the outcome is sent
}

// waiterHeap orders a tenant's waiters: earliest deadline first (none
// counts as latest), then arrival.
type waiterHeap []*qwaiter

func (h waiterHeap) Len() int { return len(h) }
func (h waiterHeap) Less(i, j int) bool {
	a, b := h[i], h[j]
	switch az, bz := a.req.Deadline.IsZero(), b.req.Deadline.IsZero(); {
	case az != bz:
		return bz
	case !az && !a.req.Deadline.Equal(b.req.Deadline):
		return a.req.Deadline.Before(b.req.Deadline)
	}
	return a.seq < b.seq
}
func (h waiterHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *waiterHeap) Push(x any) {
	w := x.(*qwaiter)
	w.index = len(*h)
	*h = append(*h, w)
}
func (h *waiterHeap) Pop() any {
	old := *h
	w := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return w
}

// NewQueue returns a queue for cfg.
func NewQueue(cfg QueueConfig) *Queue {
	q := &Queue{lim: NewLimiter(cfg.Limit, 0, 0), maxTen: cfg.MaxTenants}
	reserved := 0
	for _, l := range cfg.Levels {
		q.levels = append(q.levels, &queueLevel{cfg: l, cap: int64(max(cfg.Limit-reserved, 1)), tenants: map[string]*queueTenant{}})
		reserved += l.Reserve
	}
	if len(q.levels) == 0 {
		q.levels = append(q.levels, &queueLevel{cfg: QueueLevel{MaxQueue: 1, MaxWait: time.Second}, cap: int64(cfg.Limit), tenants: map[string]*queueTenant{}})
	}
	return q
}

// Acquire takes a slot for r, waiting in its level when none is free.
// Only an Admitted caller holds a slot; it gives it back with Release.
func (q *Queue) Acquire(ctx context.Context, r QueueRequest) Result {
	r.Level = min(max(r.Level, 0), len(q.levels)-1)
	if !(r.Weight > 0) || math.IsInf(r.Weight, 0) {
		r.Weight = 1
	}
	now := time.Now()
	if !r.Deadline.IsZero() && r.Deadline.Sub(now) < sendMargin {
		return Unreachable
	}
	lv := q.levels[r.Level]
	if q.waiting.Load() == 0 && q.lim.TryAcquireBelow(lv.cap) {
		return Admitted
	}
	q.mu.Lock()
	if lv.queued >= lv.cfg.MaxQueue {
		q.mu.Unlock()
		return Rejected
	}
	if !r.Deadline.IsZero() {
		// The requests that go before this one: those waiting at its
		// level and above (the lower levels wait behind it).
		ahead := 0
		for _, l := range q.levels[:r.Level+1] {
			ahead += l.queued
		}
		if s := time.Duration(q.service.Load()); now.Add(q.wait(ahead+1, s) + s).After(r.Deadline) {
			q.mu.Unlock()
			return Unreachable
		}
	}
	t := lv.tenants[r.Tenant]
	if t == nil {
		if q.maxTen > 0 && q.tenants >= q.maxTen {
			q.mu.Unlock()
			return Rejected
		}
		t = &queueTenant{name: r.Tenant, v: lv.vfloor}
		lv.tenants[r.Tenant] = t
		q.tenants++
	}
	if t.waiters.Len() == 0 {
		// Back from idle: level with the others, no credit kept.
		t.v = max(t.v, lv.vfloor)
		lv.active = append(lv.active, t)
	}
	q.seq++
	w := &qwaiter{req: r, seq: q.seq, tenant: t, ready: make(chan Result, 1)}
	heap.Push(&t.waiters, w)
	lv.queued++
	lv.gauge.Add(1)
	q.waiting.Add(1)
	q.dispatch()
	q.mu.Unlock()

	timeout, onTimeout := lv.cfg.MaxWait, TimedOut
	if !r.Deadline.IsZero() {
		if d := time.Until(r.Deadline) - sendMargin; d < timeout {
			timeout, onTimeout = d, Expired
		}
	}
	timer := time.NewTimer(max(timeout, 0))
	defer timer.Stop()
	var res Result
	select {
	case res = <-w.ready:
		return res
	case <-timer.C:
		res = onTimeout
	case <-ctx.Done():
		res = Canceled
	}
	q.mu.Lock()
	if !w.done {
		q.remove(w)
		q.mu.Unlock()
		return res
	}
	q.mu.Unlock()
	// The queue decided just as the wait ended.
	got := <-w.ready
	if got == Admitted && res == Canceled {
		q.Release(0)
		return Canceled
	}
	return got
}

// wait estimates the wait of the n-th request in line: n/limit service
// times.
func (q *Queue) wait(n int, service time.Duration) time.Duration {
	return time.Duration(float64(service) * float64(n) / float64(q.lim.Limit()))
}

// Release gives back a slot; took is how long its request was served (0
// when unknown: not measured).
func (q *Queue) Release(took time.Duration) {
	if took > 0 {
		// An EWMA with weight 1/8, as TCP's smoothed RTT (RFC 6298).
		old := q.service.Load()
		if old == 0 {
			q.service.Store(int64(took))
		} else {
			q.service.Store(old + (int64(took)-old)/8)
		}
	}
	q.lim.Release()
	if q.waiting.Load() > 0 {
		q.mu.Lock()
		q.dispatch()
		q.mu.Unlock()
	}
}

// dispatch hands free slots to the waiters in order, and refuses those
// whose deadline is too close to be sent. q.mu is held.
func (q *Queue) dispatch() {
	now := time.Now()
	for {
		w := q.next()
		if w == nil {
			return
		}
		if !w.req.Deadline.IsZero() && w.req.Deadline.Sub(now) < sendMargin {
			q.remove(w)
			w.done = true
			w.ready <- Expired
			continue
		}
		lv := q.levels[w.req.Level]
		if !q.lim.TryAcquireBelow(lv.cap) {
			// Strict priority: a lower level never goes first, and
			// this level's reserve-less share is used.
			return
		}
		lv.vfloor = w.tenant.v
		w.tenant.v += 1 / w.req.Weight
		q.remove(w)
		w.done = true
		w.ready <- Admitted
	}
}

// next returns the waiter that goes next, or nil. q.mu is held.
func (q *Queue) next() *qwaiter {
	for _, lv := range q.levels {
		var best *queueTenant
		for _, t := range lv.active {
			if best == nil || t.v < best.v {
				best = t
			}
		}
		if best != nil {
			return best.waiters[0]
		}
	}
	return nil
}

// remove takes w out of its tenant and level. q.mu is held.
func (q *Queue) remove(w *qwaiter) {
	t := w.tenant
	lv := q.levels[w.req.Level]
	heap.Remove(&t.waiters, w.index)
	lv.queued--
	lv.gauge.Add(-1)
	q.waiting.Add(-1)
	if t.waiters.Len() == 0 {
		for i, a := range lv.active {
			if a == t {
				lv.active = append(lv.active[:i], lv.active[i+1:]...)
				break
			}
		}
		// An idle tenant keeps no state: the level's floor is where it
		// starts again.
		delete(lv.tenants, t.name)
		q.tenants--
	}
}

// Limit returns the requests in flight at once.
func (q *Queue) Limit() int { return q.lim.Limit() }

// InFlight returns the requests holding a slot.
func (q *Queue) InFlight() int { return q.lim.InFlight() }

// Queued returns the waiting requests.
func (q *Queue) Queued() int { return int(q.waiting.Load()) }

// LevelQueued returns the waiting requests of level i. It takes no lock.
func (q *Queue) LevelQueued(i int) int { return int(q.levels[i].gauge.Load()) }

// ServiceTime returns the measured service time (0 before any).
func (q *Queue) ServiceTime() time.Duration { return time.Duration(q.service.Load()) }

// RetryAfter estimates when a refused request may find room: the time to
// serve the requests waiting now, at least a second.
func (q *Queue) RetryAfter() time.Duration {
	d := q.wait(q.Queued()+1, q.ServiceTime())
	return max(d, time.Second)
}
