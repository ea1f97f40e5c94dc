package ratelimit

import "errors"

// Local is a limit kept in this process: one token bucket or sliding window
// per key, in a store bounded to MaxKeys keys. Its methods are safe for
// concurrent use; a decision on a known key allocates nothing and takes
// one shard's lock.
type Local struct {
	p      Params
	t      int64 // TokenBucket: nanoseconds per token
	burstT int64 // TokenBucket: Burst×t
	w      int64 // SlidingWindow: window in nanoseconds
	store  *store
}

// NewLocal makes a local limit with p's numbers that tracks at most maxKeys
// keys (DefaultMaxKeys when <= 0), evicting the least recently used.
func NewLocal(p Params, maxKeys int) (*Local, error) {
	l := &Local{p: p, store: newStore(maxKeys)}
	switch p.Algorithm {
	case TokenBucket:
		if !(p.Rate > 0) || p.Rate > 1e9 || p.Burst < 1 {
			return nil, errors.New("token bucket needs 0 < rate <= 1e9 and burst >= 1")
		}
		l.t = p.interval()
		if p.Burst > (1<<62)/l.t {
			return nil, errors.New("token bucket: burst/rate is too long")
		}
		l.burstT = p.Burst * l.t
	case SlidingWindow:
		if p.Count < 1 || p.Window <= 0 {
			return nil, errors.New("sliding window needs count >= 1 and window > 0")
		}
		l.w = int64(p.Window)
	default:
		return nil, errors.New("unknown algorithm")
	}
	return l, nil
}

// OnEvict sets a function called (with a shard locked: it must be quick)
// each time a key is forgotten to stay within the key bound, such as a
// metric's Inc. Call it before the first Take.
func (l *Local) OnEvict(f func()) { l.store.onEvict = f }

// Params returns the limit's numbers.
func (l *Local) Params() Params { return l.p }

// Evicted counts keys dropped to stay within the key bound.
func (l *Local) Evicted() int64 { return l.store.evicted.Load() }

// Keys counts the keys tracked now.
func (l *Local) Keys() int { return l.store.size() }

// Hottest returns up to n keys, those with the most refusals first, then
// those with the most use.
func (l *Local) Hottest(n int) []KeyStat { return l.store.hottest(n) }

// Take decides a request of cost units (>= 0) for key at now (nanoseconds)
// and, if it passes, counts it.
func (l *Local) Take(key string, cost, now int64) Decision {
	cost = max(0, cost)
	sh, e := l.store.lock(key)
	var d Decision
	if l.p.Algorithm == TokenBucket {
		if cost > l.p.Burst {
			// It can never pass (and cost×t could overflow).
			debt := max(e.a, now) - now
			d = Decision{Remaining: (l.burstT - debt) / l.t, Reset: debt, RetryAfter: l.burstT}
		} else {
			d, e.a = gcra(e.a, now, cost, l.t, l.burstT)
		}
	} else {
		idx := floorDiv(now, l.w)
		switch {
		case e.a == unset:
			e.a = idx
		case idx == e.a+1:
			e.count, e.cur, e.a = e.cur, 0, idx
		case idx > e.a+1:
			e.count, e.cur, e.a = 0, 0, idx
		}
		// A clock that went back stays in the window it had reached.
		elapsed := min(l.w-1, max(0, now-e.a*l.w))
		d = window(e.count, e.cur, elapsed, l.w, l.p.Count, cost)
		if d.Allowed {
			e.cur += cost
		}
		d.epoch = e.a
	}
	if d.Allowed {
		e.used += cost
		d.e, d.s, d.cost = e, sh, cost
	} else {
		e.refused++
	}
	sh.mu.Unlock()
	return d
}

// Add counts cost units for key at now whatever the limit has left: what
// another decider (Redis) admitted through this gateway. A token bucket's
// debt is capped at a full burst.
func (l *Local) Add(key string, cost, now int64) {
	if cost <= 0 {
		return
	}
	sh, e := l.store.lock(key)
	if l.p.Algorithm == TokenBucket {
		e.a = min(max(e.a, now)+min(cost, l.p.Burst)*l.t, now+l.burstT)
	} else {
		idx := floorDiv(now, l.w)
		switch {
		case e.a == unset || idx > e.a+1:
			e.count, e.cur, e.a = 0, 0, idx
		case idx == e.a+1:
			e.count, e.cur, e.a = e.cur, 0, idx
		}
		e.cur += cost
	}
	e.used += cost
	sh.mu.Unlock()
}

// Refund gives back what an allowed decision d took, when a later limit
// refused the request. It does nothing for a refused decision.
func (l *Local) Refund(d Decision) {
	if !d.Allowed || d.e == nil {
		return
	}
	d.s.mu.Lock()
	e := d.e
	e.used -= d.cost
	if l.p.Algorithm == TokenBucket {
		e.a -= d.cost * l.t
	} else if e.a == d.epoch {
		e.cur = max(0, e.cur-d.cost)
	} else if e.a == d.epoch+1 {
		e.count = max(0, e.count-d.cost)
	}
	d.s.mu.Unlock()
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}
