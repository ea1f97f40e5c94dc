package config

import (
	"math"
	"slices"
	"strings"
	"time"
)

// Limit is one named rate limit of the top-level limits section. Routes
// name the limits they apply in their limits field (the rate_limit stage);
// a limit with all_routes applies to every route.
type Limit struct {
	// Name identifies the limit in routes, metrics, logs and the
	// RateLimit headers. Required, unique.
	Name string `yaml:"name"`
	// Algorithm is how the limit counts: "token_bucket" (rate and burst)
	// or "sliding_window" (count per window). Required.
	Algorithm string `yaml:"algorithm"`
	// Rate is the token bucket's refill, in units per second (a
	// fraction is allowed: 0.5 is one unit every two seconds).
	// token_bucket only; required there.
	Rate float64 `yaml:"rate"`
	// Burst is the most units the token bucket holds (it starts full).
	// token_bucket only. Default: rate rounded up, at least 1.
	Burst int64 `yaml:"burst"`
	// Count is the most units admitted per window. sliding_window only;
	// required there.
	Count int64 `yaml:"count"`
	// Window is the sliding window's length (duration). sliding_window
	// only; required there.
	Window Duration `yaml:"window"`
	// Key is what requests are counted by. Default: the client IP.
	Key LimitKey `yaml:"key"`
	// Cost is how many units a request takes. Default: 1.
	Cost LimitCost `yaml:"cost"`
	// Mode is "enforce" (refuse with 429) or "shadow" (count and report
	// what would be refused, admit everything). Default "enforce".
	Mode string `yaml:"mode"`
	// MaxKeys bounds how many keys the limit tracks in memory; the least
	// recently used key is forgotten beyond it. Default 100000.
	MaxKeys int `yaml:"max_keys"`
	// AllRoutes applies the limit to every route, besides those that name
	// it. Default false.
	AllRoutes bool `yaml:"all_routes"`
	// AddHeaders adds RateLimit-Policy and RateLimit headers to admitted
	// responses too (refusals always have them). Default true.
	AddHeaders *bool `yaml:"add_headers"`
	// Redis makes the limit global: one budget shared by every gateway
	// using the same Redis and prefix. Absent means a local limit (each
	// gateway counts alone).
	Redis *LimitRedis `yaml:"redis"`
}

// LimitKey is where a limit's key comes from.
type LimitKey struct {
	// From is "client_ip" (the client's address; behind trusted proxies,
	// the rightmost X-Forwarded-For address that is not itself a trusted
	// proxy), "header" (the value of header
	// Name), "param" (the route's path parameter Name), "jwt_claim" (claim
	// Name of the bearer token's payload, read without verifying the
	// token: put the limit behind authentication) or "constant" (one key
	// for all requests). Default "client_ip".
	From string `yaml:"from"`
	// Name is the header, path parameter or claim. Required for header,
	// param and jwt_claim.
	Name string `yaml:"name"`
}

// LimitCost is how many units a request takes.
type LimitCost struct {
	// From is "constant" (Value units), "header" (the integer value of
	// header Name; a missing or bad value costs Value) or "body_bytes" (the
	// request's Content-Length; a body of unknown length costs Value).
	// Default "constant".
	From string `yaml:"from"`
	// Name is the header, for from: header.
	Name string `yaml:"name"`
	// Value is the constant cost, and the cost when the header or length
	// is missing. Default 1.
	Value int64 `yaml:"value"`
}

// LimitRedis is a global limit's Redis.
type LimitRedis struct {
	// Address is the Redis server, host:port. Required.
	Address string `yaml:"address"`
	// Prefix is put before the limit's keys in Redis. Default
	// "penstock:<limit name>:".
	Prefix string `yaml:"prefix"`
	// Timeout is the most a request waits for Redis's decision (duration);
	// past it, on_failure decides and Redis is skipped for a short while.
	// Default 2ms.
	Timeout Duration `yaml:"timeout"`
	// Replicas is how many gateways share the limit: when Redis fails, each
	// allows 1/replicas of it locally. Default 1.
	Replicas int `yaml:"replicas"`
	// OnFailure is what decides when Redis does not answer in time:
	// "local" (this gateway's share of the limit), "open" (admit) or
	// "closed" (refuse). Default "local".
	OnFailure string `yaml:"on_failure"`
}

// Limit algorithms, key sources, cost sources, modes and fallbacks.
const (
	LimitTokenBucket   = "token_bucket"
	LimitSlidingWindow = "sliding_window"

	LimitKeyClientIP = "client_ip"
	LimitKeyHeader   = "header"
	LimitKeyParam    = "param"
	LimitKeyJWTClaim = "jwt_claim"
	LimitKeyConstant = "constant"

	LimitCostConstant  = "constant"
	LimitCostHeader    = "header"
	LimitCostBodyBytes = "body_bytes"

	LimitEnforce = "enforce"
	LimitShadow  = "shadow"

	LimitFailLocal  = "local"
	LimitFailOpen   = "open"
	LimitFailClosed = "closed"
)

// Limit defaults.
const (
	DefaultLimitMaxKeys      = 100_000
	DefaultLimitRedisTimeout = Duration(2 * time.Millisecond)
)

// LimitNamed returns the limit called name, or nil and a suggestion
// (`; did you mean "x"?` or "") for an error message.
func (c *Config) LimitNamed(name string) (*Limit, string) {
	names := make([]string, 0, len(c.Limits))
	for i := range c.Limits {
		if c.Limits[i].Name == name {
			return &c.Limits[i], ""
		}
		names = append(names, c.Limits[i].Name)
	}
	return nil, didYouMean(name, names)
}

func (c *Config) setLimitDefaults() {
	for i := range c.Limits {
		l := &c.Limits[i]
		if l.Algorithm == LimitTokenBucket && l.Burst == 0 && l.Rate > 0 && l.Rate < 1e15 {
			l.Burst = max(1, int64(math.Ceil(l.Rate)))
		}
		setDefault(&l.Key.From, LimitKeyClientIP)
		setDefault(&l.Cost.From, LimitCostConstant)
		setDefault(&l.Cost.Value, 1)
		setDefault(&l.Mode, LimitEnforce)
		setDefault(&l.MaxKeys, DefaultLimitMaxKeys)
		if l.AddHeaders == nil {
			on := true
			l.AddHeaders = &on
		}
		if r := l.Redis; r != nil {
			setDefault(&r.Prefix, "penstock:"+l.Name+":")
			setDefault(&r.Timeout, DefaultLimitRedisTimeout)
			setDefault(&r.Replicas, 1)
			setDefault(&r.OnFailure, LimitFailLocal)
		}
	}
}

func (c *Config) validateLimits(col *Collector) {
	names := map[string]string{}
	for i, l := range c.Limits {
		p := indexPath("limits", i)
		checkName(col, p, "limit", l.Name, names)
		if l.Name != "" && !isToken(l.Name) {
			col.Addf(p+".name", "limit name %q must be a token (letters, digits, -_.)", l.Name)
		}
		switch l.Algorithm {
		case LimitTokenBucket:
			switch {
			case math.IsNaN(l.Rate) || l.Rate <= 0:
				col.Addf(p+".rate", "must be positive (units per second)")
			case l.Rate > 1e9:
				col.Addf(p+".rate", "must be at most 1e9 units per second")
			}
			if l.Burst < 1 {
				col.Addf(p+".burst", "must be at least 1")
			} else if l.Rate > 0 && float64(l.Burst)/l.Rate > 365*24*3600 {
				col.Addf(p+".burst", "burst/rate must be at most a year")
			}
			if l.Count != 0 || l.Window != 0 {
				col.Addf(p+".count", "count and window are for sliding_window; token_bucket uses rate and burst")
			}
		case LimitSlidingWindow:
			if l.Count < 1 {
				col.Addf(p+".count", "must be at least 1")
			}
			switch {
			case l.Window <= 0:
				col.Addf(p+".window", "must be positive")
			case l.Window < Duration(time.Millisecond):
				col.Addf(p+".window", "must be at least 1ms")
			}
			if l.Rate != 0 || l.Burst != 0 {
				col.Addf(p+".rate", "rate and burst are for token_bucket; sliding_window uses count and window")
			}
		case "":
			col.Addf(p+".algorithm", "is required: token_bucket or sliding_window")
		default:
			col.Addf(p+".algorithm", "unknown algorithm %q; want token_bucket or sliding_window%s", l.Algorithm,
				didYouMean(l.Algorithm, []string{LimitTokenBucket, LimitSlidingWindow}))
		}

		keys := []string{LimitKeyClientIP, LimitKeyHeader, LimitKeyParam, LimitKeyJWTClaim, LimitKeyConstant}
		switch {
		case !slices.Contains(keys, l.Key.From):
			col.Addf(p+".key.from", "unknown key source %q; want one of %s%s", l.Key.From, strings.Join(keys, ", "), didYouMean(l.Key.From, keys))
		case l.Key.From == LimitKeyHeader && !isToken(l.Key.Name):
			col.Addf(p+".key.name", "needs a header name")
		case (l.Key.From == LimitKeyParam || l.Key.From == LimitKeyJWTClaim) && l.Key.Name == "":
			col.Addf(p+".key.name", "needs the %s's name", map[string]string{LimitKeyParam: "path parameter", LimitKeyJWTClaim: "claim"}[l.Key.From])
		case (l.Key.From == LimitKeyClientIP || l.Key.From == LimitKeyConstant) && l.Key.Name != "":
			col.Addf(p+".key.name", "is not used with from: %s", l.Key.From)
		}

		costs := []string{LimitCostConstant, LimitCostHeader, LimitCostBodyBytes}
		switch {
		case !slices.Contains(costs, l.Cost.From):
			col.Addf(p+".cost.from", "unknown cost source %q; want one of %s%s", l.Cost.From, strings.Join(costs, ", "), didYouMean(l.Cost.From, costs))
		case l.Cost.From == LimitCostHeader && !isToken(l.Cost.Name):
			col.Addf(p+".cost.name", "needs a header name")
		case l.Cost.From != LimitCostHeader && l.Cost.Name != "":
			col.Addf(p+".cost.name", "is only used with from: header")
		}
		if l.Cost.Value < 0 {
			col.Addf(p+".cost.value", "must not be negative")
		}

		if !isKnown(l.Mode, LimitEnforce, LimitShadow) {
			col.Addf(p+".mode", "unknown mode %q; want enforce or shadow", l.Mode)
		}
		if l.MaxKeys < 0 {
			col.Addf(p+".max_keys", "must not be negative")
		}
		if r := l.Redis; r != nil {
			rp := p + ".redis"
			if r.Address == "" {
				col.Addf(rp+".address", "is required")
			} else {
				checkEndpointAddress(col, rp+".address", r.Address)
			}
			switch {
			case r.Timeout < 0:
				col.Addf(rp+".timeout", "must not be negative, got %s", r.Timeout)
			case r.Timeout > Duration(time.Second):
				col.Addf(rp+".timeout", "must be at most 1s (every request waits up to it)")
			}
			if r.Replicas < 0 {
				col.Addf(rp+".replicas", "must not be negative")
			}
			if !isKnown(r.OnFailure, LimitFailLocal, LimitFailOpen, LimitFailClosed) {
				col.Addf(rp+".on_failure", "unknown policy %q; want local, open or closed", r.OnFailure)
			}
		}
	}
}
