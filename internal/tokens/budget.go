// Package tokens is token-aware admission for OpenAI-compatible LLM routes
// (/v1/chat/completions, /v1/completions): a request's token cost is
// estimated from its prompt and max_tokens (estimate.go) and reserved
// against its tenant's tokens-per-minute budget before it is sent; the
// reservation is settled with the usage the response reports, for plain
// JSON responses and for server-sent event streams (usage.go). The
// pipeline's tokens stage (internal/pipeline/tokens.go) owns the
// configuration; this package holds the mechanisms.
package tokens

import (
	"math"
	"sync"
	"time"
)

// Budget is a tokens-per-minute budget per tenant: a token bucket per
// tenant holding at most burst tokens, refilled at perMinute / 60 a
// second. A reservation takes its estimate at once; Settle gives back
// what the request did not use, or takes what it used beyond, so the
// balance may go below zero (a debt the refill pays before the tenant's
// next request is admitted). Over a run of m minutes a tenant with
// demand above its budget uses perMinute × m + burst tokens, plus what
// its last requests use beyond their estimates.
type Budget struct {
	perSecond float64
	burst     float64
	maxTen    int
	// Now is the clock; tests replace it. Default time.Now.
	Now func() time.Time

	mu      sync.Mutex
	tenants map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
	limit  float64 // this tenant's per minute
}

// NewBudget returns a budget of perMinute tokens per tenant (limits
// overrides it per tenant), with buckets of burstSeconds of refill, for
// at most maxTenants tenants at once (0: no bound; a full table forgets
// its fullest buckets first).
func NewBudget(perMinute float64, burstSeconds float64, maxTenants int) *Budget {
	return &Budget{perSecond: perMinute / 60, burst: burstSeconds, maxTen: maxTenants, Now: time.Now, tenants: map[string]*bucket{}}
}

// get returns tenant's bucket, refilled to now. b.mu is held.
func (b *Budget) get(tenant string, perMinute float64, now time.Time) *bucket {
	k := b.tenants[tenant]
	if k == nil {
		if b.maxTen > 0 && len(b.tenants) >= b.maxTen {
			b.forgetFull(now)
		}
		k = &bucket{tokens: perMinute / 60 * b.burst, at: now, limit: perMinute}
		b.tenants[tenant] = k
		return k
	}
	if d := now.Sub(k.at).Seconds(); d > 0 {
		k.tokens = math.Min(k.tokens+d*perMinute/60, perMinute/60*b.burst)
		k.at = now
	}
	return k
}

// forgetFull drops the buckets that are full (a full bucket is what a new
// one would be). b.mu is held.
func (b *Budget) forgetFull(now time.Time) {
	for t, k := range b.tenants {
		if k.tokens+now.Sub(k.at).Seconds()*k.limit/60 >= k.limit/60*b.burst {
			delete(b.tenants, t)
		}
	}
}

// Reserve takes n tokens from tenant's budget of perMinute (0: the
// budget's default). It reports whether they were there and, if not, how
// long until they will be.
func (b *Budget) Reserve(tenant string, perMinute float64, n float64) (bool, time.Duration) {
	if perMinute <= 0 {
		perMinute = b.perSecond * 60
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	k := b.get(tenant, perMinute, b.Now())
	// A request larger than the bucket could never be admitted: it may
	// go once the bucket is full, and leaves a debt.
	need := math.Min(n, perMinute/60*b.burst)
	if k.tokens < need {
		return false, time.Duration((need - k.tokens) / (perMinute / 60) * float64(time.Second))
	}
	k.tokens -= n
	return true, 0
}

// Settle corrects tenant's balance once a request's use is known: reserved
// was taken by Reserve, used is what the response reported.
func (b *Budget) Settle(tenant string, perMinute float64, reserved, used float64) {
	if perMinute <= 0 {
		perMinute = b.perSecond * 60
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	k := b.get(tenant, perMinute, b.Now())
	k.tokens += reserved - used
}

// Take takes n more tokens from tenant's balance if it holds them (a
// stream running past its reservation), and reports whether it did.
func (b *Budget) Take(tenant string, perMinute float64, n float64) bool {
	if perMinute <= 0 {
		perMinute = b.perSecond * 60
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	k := b.get(tenant, perMinute, b.Now())
	if k.tokens < n {
		return false
	}
	k.tokens -= n
	return true
}

// Balance returns tenant's tokens now (negative: a debt).
func (b *Budget) Balance(tenant string, perMinute float64) float64 {
	if perMinute <= 0 {
		perMinute = b.perSecond * 60
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.get(tenant, perMinute, b.Now()).tokens
}
