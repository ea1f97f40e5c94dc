// Package ratelimit decides whether a request may pass a rate limit: the
// algorithms (token bucket and sliding-window counter), the bounded store of
// per-key state they run on, and global limits shared by several gateways
// through Redis (global.go).
//
// Every decision takes the time as an argument (nanoseconds on any clock
// that only moves forward in normal operation, such as time.Now().UnixNano()
// or a monotonic reading): the algorithms never read a clock themselves, so
// tests drive them with exact times, including jumps.
//
// # Algorithms
//
// A token bucket (Rate, Burst) holds at most Burst tokens, starts full and
// refills at Rate tokens per second; a request of cost c passes when c tokens
// are in the bucket and takes them. It is computed as GCRA (the generic cell
// rate algorithm): one "theoretical arrival time" per key instead of a token
// count and a timestamp, which is the same bucket in one integer.
//
// A sliding window (Count, Window) admits at most Count units in any window
// of length Window, estimated with a sliding-window counter: the counts of
// the current and the previous fixed window, the previous one weighted by
// how much of it the sliding window still covers. A sliding log (one
// timestamp per admitted unit) would be exact, but its memory grows with the
// limit (a 10,000 token per minute limit keeps up to 10,000 timestamps per
// key) and so does the cost of a decision; the counter keeps three integers
// per key whatever the limit, and decides in constant time. Its error is
// bounded: within any fixed window it never admits more than Count (the
// current count alone must stay under Count), and over a sliding window it
// can admit more than Count only when the previous window's traffic was not
// evenly spread (the estimate assumes it was); the excess is at most the
// previous window's count minus its weighted share, and under steady load
// it is zero.
//
// # Several limits
//
// A request can be subject to several limits (per route, per tenant,
// global); it passes only if every one admits it. Limits are taken in order
// and, when one refuses, what the earlier ones took is given back (Refund),
// so a refused request costs nothing on any local limit. A global limit's
// take is not given back (that would cost a second round trip to Redis):
// place global limits last (the rate_limit stage does) and at most one per
// request if that matters.
package ratelimit

import (
	"math"
	"time"
)

// Algorithm is how a limit counts.
type Algorithm uint8

// Algorithms.
const (
	// TokenBucket refills Rate tokens per second up to Burst.
	TokenBucket Algorithm = iota + 1
	// SlidingWindow admits Count units per Window (sliding-window counter).
	SlidingWindow
)

// Params are a limit's numbers. For TokenBucket, Rate (tokens per second,
// > 0) and Burst (tokens, >= 1); for SlidingWindow, Count (units per window,
// >= 1) and Window (> 0).
type Params struct {
	Algorithm Algorithm
	Rate      float64
	Burst     int64
	Count     int64
	Window    time.Duration
}

// Share returns p divided among n gateways (at least one unit each): the
// local share of a global limit when its store cannot be reached.
func (p Params) Share(n int) Params {
	if n <= 1 {
		return p
	}
	p.Rate /= float64(n)
	p.Burst = max(1, p.Burst/int64(n))
	p.Count = max(1, p.Count/int64(n))
	return p
}

// Quota is the limit's size for the RateLimit-Policy header: q units per w
// seconds.
func (p Params) Quota() (q int64, w int64) {
	if p.Algorithm == SlidingWindow {
		return p.Count, int64(math.Ceil(p.Window.Seconds()))
	}
	// A bucket's "window" is the time it takes to refill from empty.
	return p.Burst, int64(math.Ceil(float64(p.Burst) / p.Rate))
}

// interval is the token bucket's emission interval: nanoseconds per token.
func (p Params) interval() int64 {
	return max(1, int64(math.Round(1e9/p.Rate)))
}

// Decision is the outcome of one take.
type Decision struct {
	// Allowed reports whether the request passes this limit.
	Allowed bool
	// Remaining is how many units the limit has left after the decision
	// (RateLimit's r), never negative.
	Remaining int64
	// Reset is how long until the limit is whole again (RateLimit's t), in
	// nanoseconds.
	Reset int64
	// RetryAfter is, for a refused request, how long until the same
	// request could pass, in nanoseconds (Retry-After); 0 when allowed.
	RetryAfter int64

	e     *entry
	s     *shard
	cost  int64
	epoch int64 // the window index the take counted in (SlidingWindow)
}

// gcra decides a token bucket take of cost at now, given the key's
// theoretical arrival time tat; it returns the decision and the new tat.
// burstT is Burst×T, the most the tat may run ahead of now.
func gcra(tat, now, cost, t, burstT int64) (Decision, int64) {
	tat = max(tat, now)
	next := tat + cost*t
	if cost*t > burstT || next-now > burstT {
		// Refused: wait until enough of the debt has drained for this
		// cost; a cost above the burst can never pass, report a full
		// refill.
		wait := next - now - burstT
		if cost*t > burstT {
			wait = burstT
		}
		return Decision{Remaining: max(0, (burstT-(tat-now))/t), Reset: tat - now, RetryAfter: wait}, tat
	}
	return Decision{Allowed: true, Remaining: (burstT - (next - now)) / t, Reset: next - now}, next
}

// window decides a sliding window take of cost: prev and cur are the
// previous and current fixed windows' counts, elapsed how far into the
// current window now is (0 <= elapsed < w).
func window(prev, cur, elapsed, w, limit, cost int64) Decision {
	weight := float64(w-elapsed) / float64(w)
	est := int64(math.Ceil(float64(prev)*weight)) + cur
	if cost > limit || est+cost > limit {
		return Decision{Remaining: max(0, limit-est), Reset: w - elapsed, RetryAfter: windowWait(prev, cur, elapsed, w, limit, cost)}
	}
	return Decision{Allowed: true, Remaining: limit - est - cost, Reset: w - elapsed}
}

// windowWait is how long until a take of cost could pass, if nothing else
// is taken meanwhile.
func windowWait(prev, cur, elapsed, w, limit, cost int64) int64 {
	if cost > limit {
		return w
	}
	room := limit - cur - cost
	if room >= 0 {
		// The previous window's weight must shrink until
		// prev×(w-x)/w <= room, at x = w×(1 - room/prev).
		x := int64(math.Ceil(float64(w) * (1 - float64(room)/float64(prev))))
		return max(1, x-elapsed)
	}
	// Not in this window: in the next one, cur becomes the previous count
	// and must shrink until cur×(w-y)/w + cost <= limit.
	y := int64(math.Ceil(float64(w) * (1 - float64(limit-cost)/float64(cur))))
	return w - elapsed + max(0, y)
}
