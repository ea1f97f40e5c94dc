package ratelimit

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// OnFailure is what a global limit decides when Redis does not answer in
// time.
type OnFailure uint8

// Fallback policies.
const (
	// FallbackLocal decides with this gateway's share of the limit (the
	// limit divided by the number of replicas), kept locally.
	FallbackLocal OnFailure = iota + 1
	// FallbackOpen admits the request.
	FallbackOpen
	// FallbackClosed refuses the request.
	FallbackClosed
)

// DefaultBackoff is how long a global limit stops asking Redis after a
// failed or late answer: requests meanwhile go straight to the fallback
// instead of each paying the timeout.
const DefaultBackoff = 500 * time.Millisecond

// GlobalOptions configure a global limit.
type GlobalOptions struct {
	// Client is the Redis client (see NewRedisClient). The Global does not
	// close it.
	Client redis.UniversalClient
	// Prefix is put before every key in Redis.
	Prefix string
	// Timeout bounds a decision's round trip to Redis; past it the
	// decision falls back.
	Timeout time.Duration
	// Backoff is how long Redis is skipped after a failure; 0 means
	// DefaultBackoff.
	Backoff time.Duration
	// Replicas is how many gateways share the limit: the local fallback
	// allows 1/Replicas of it.
	Replicas int
	// OnFailure is the fallback policy; 0 means FallbackLocal.
	OnFailure OnFailure
	// MaxKeys bounds the local fallback's keys.
	MaxKeys int
}

// Global is a limit shared by every gateway that uses the same Redis and
// prefix: each decision is one round trip (EVALSHA of a Lua script that
// reads, decides and counts atomically, with the Redis server's clock, so
// gateways whose clocks differ still share one window). When Redis does not
// answer within Timeout, the decision falls back (OnFailure) and Redis is
// skipped for Backoff; after that one request at a time asks it again
// while the others fall back at once, so that while Redis is down only
// that probe waits for it.
type Global struct {
	o        GlobalOptions
	p        Params
	local    *Local
	script   *redis.Script
	args     func(cost int64) []any
	skipTill atomic.Int64 // unix nanos before which Redis is not asked
	failing  atomic.Bool  // the last answer from Redis was a failure
	probing  atomic.Bool  // a probe is asking Redis whether it is back
}

// Source says who decided a global limit's request.
type Source uint8

// Sources of a decision.
const (
	// FromRedis is a decision Redis made.
	FromRedis Source = iota
	// FromFallback is a decision of the fallback policy.
	FromFallback
)

// NewGlobal makes a global limit with p's numbers.
func NewGlobal(p Params, o GlobalOptions) (*Global, error) {
	if o.Client == nil {
		return nil, errors.New("global limit needs a Redis client")
	}
	if o.Backoff <= 0 {
		o.Backoff = DefaultBackoff
	}
	if o.OnFailure == 0 {
		o.OnFailure = FallbackLocal
	}
	local, err := NewLocal(p.Share(o.Replicas), o.MaxKeys)
	if err != nil {
		return nil, err
	}
	// Redis counts in microseconds: unix time in µs fits a Lua number
	// (a double) exactly.
	g := &Global{o: o, p: p, local: local}
	switch p.Algorithm {
	case TokenBucket:
		t := max(1, int64(1e6/p.Rate))
		burstT := p.Burst * t
		g.script = gcraScript
		g.args = func(cost int64) []any { return []any{t, burstT, cost} }
	case SlidingWindow:
		w := max(1, p.Window.Microseconds())
		g.script = windowScript
		g.args = func(cost int64) []any { return []any{w, p.Count, cost} }
	}
	// Load the script now, so that the first decisions are one EVALSHA
	// each rather than a NOSCRIPT answer and an EVAL (which together can
	// exceed the budget). A Redis that is down now only delays this.
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		g.script.Load(ctx, o.Client)
	}()
	return g, nil
}

// Params returns the limit's numbers.
func (g *Global) Params() Params { return g.p }

// Fallback is the local limit used when Redis fails (FallbackLocal). It
// also counts what Redis admitted through this gateway.
func (g *Global) Fallback() *Local { return g.local }

// gcraScript is the token bucket: KEYS[1] holds the theoretical arrival
// time in µs; ARGV are the emission interval T and Burst×T (µs) and the
// cost. It returns {allowed, tat-now after the decision}.
var gcraScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local T, burstT, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local nxt = tat + cost * T
if cost * T > burstT or nxt - now > burstT then
  return {0, tat - now}
end
redis.call('SET', KEYS[1], string.format('%d', nxt), 'PX', math.floor((nxt - now) / 1000) + 1)
return {1, nxt - now}
`)

// windowScript is the sliding-window counter: KEYS[1] is a hash of the
// current window's index (i) and count (c) and the previous window's count
// (p); ARGV are the window (µs), the limit and the cost. It returns
// {allowed, previous count, current count, µs into the window}.
var windowScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local w, limit, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local idx = math.floor(now / w)
local h = redis.call('HMGET', KEYS[1], 'i', 'c', 'p')
local i, c, p = tonumber(h[1]) or idx, tonumber(h[2]) or 0, tonumber(h[3]) or 0
if idx == i + 1 then p, c, i = c, 0, idx elseif idx > i + 1 then p, c, i = 0, 0, idx end
local elapsed = now - i * w
if elapsed >= w then elapsed = w - 1 end
if elapsed < 0 then elapsed = 0 end
local est = math.ceil(p * (w - elapsed) / w) + c
local ok = 0
if cost <= limit and est + cost <= limit then
  ok = 1
  c = c + cost
end
redis.call('HSET', KEYS[1], 'i', string.format('%d', i), 'c', c, 'p', p)
redis.call('PEXPIRE', KEYS[1], math.floor(2 * w / 1000) + 1)
return {ok, p, c, elapsed}
`)

// Take decides a request of cost units for key. ctx bounds the wait
// further (the client's context); now (unix nanoseconds) decides whether
// Redis is being skipped and feeds the local fallback.
func (g *Global) Take(ctx context.Context, key string, cost, now int64) (Decision, Source) {
	cost = max(0, cost)
	// Once Redis has failed, one request at a time (a probe) asks it again
	// after the backoff, while the others decide locally at once: while
	// Redis is down only the probe pays the timeout.
	probe := g.failing.Load()
	if now >= g.skipTill.Load() && (!probe || g.probing.CompareAndSwap(false, true)) {
		d, err := g.ask(ctx, key, cost)
		if probe {
			g.probing.Store(false)
		}
		g.failing.Store(err != nil)
		if err == nil {
			if d.Allowed && g.o.OnFailure == FallbackLocal {
				// The fallback's share counts what this gateway admitted
				// through Redis: when Redis goes away mid-window, each
				// gateway goes on with what is left of its share, not a
				// fresh one on top of what the budget already spent.
				g.local.Add(key, cost, now)
			}
			return d, FromRedis
		}
		g.skipTill.Store(now + int64(g.o.Backoff))
	}
	switch g.o.OnFailure {
	case FallbackOpen:
		return Decision{Allowed: true, Remaining: 0}, FromFallback
	case FallbackClosed:
		return Decision{RetryAfter: int64(g.o.Backoff)}, FromFallback
	}
	return g.local.Take(key, cost, now), FromFallback
}

// ask is one round trip to Redis, bounded by Timeout.
func (g *Global) ask(ctx context.Context, key string, cost int64) (Decision, error) {
	ctx, cancel := context.WithTimeout(ctx, g.o.Timeout)
	defer cancel()
	res, err := g.script.Run(ctx, g.o.Client, []string{g.o.Prefix + key}, g.args(cost)...).Int64Slice()
	if err != nil {
		return Decision{}, err
	}
	switch g.p.Algorithm {
	case TokenBucket:
		if len(res) != 2 {
			return Decision{}, errors.New("ratelimit: unexpected reply from Redis")
		}
		t := max(1, int64(1e6/g.p.Rate)) * 1000
		burstT := g.p.Burst * t
		diff := res[1] * 1000
		if res[0] == 1 {
			return Decision{Allowed: true, Remaining: max(0, (burstT-diff)/t), Reset: diff}, nil
		}
		wait := diff + cost*t - burstT
		if cost > g.p.Burst {
			wait = burstT
		}
		return Decision{Remaining: max(0, (burstT-diff)/t), Reset: diff, RetryAfter: max(1, wait)}, nil
	default:
		if len(res) != 4 {
			return Decision{}, errors.New("ratelimit: unexpected reply from Redis")
		}
		w := g.p.Window.Microseconds() * 1000
		prev, cur, elapsed := res[1], res[2], res[3]*1000
		if res[0] == 1 {
			// The reply's count includes this request: decide as it was
			// before it, which gives the same verdict and the remainder.
			return window(prev, cur-cost, elapsed, w, g.p.Count, cost), nil
		}
		return window(prev, cur, elapsed, w, g.p.Count, cost), nil
	}
}

// NewRedisClient connects to the Redis at address (host:port or
// unix:/path) for global limits: no
// retries (a retry would exceed the decision's budget), timeouts taken from
// each call's context, and dial and pool waits bounded by timeout.
func NewRedisClient(address string, timeout time.Duration) *redis.Client {
	network := "tcp"
	if sock, ok := strings.CutPrefix(address, "unix:"); ok {
		network, address = "unix", sock
	}
	return redis.NewClient(&redis.Options{
		Network:               network,
		Addr:                  address,
		MaxRetries:            -1,
		ContextTimeoutEnabled: true,
		DialTimeout:           max(timeout, 100*time.Millisecond),
		ReadTimeout:           max(timeout, 100*time.Millisecond),
		WriteTimeout:          max(timeout, 100*time.Millisecond),
		PoolTimeout:           timeout,
		MinIdleConns:          2,
		DisableIdentity:       true,
	})
}
