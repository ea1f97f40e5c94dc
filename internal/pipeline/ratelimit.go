package pipeline

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/failure"
	"github.com/penstock-dev/penstock/internal/metrics"
	"github.com/penstock-dev/penstock/internal/ratelimit"
)

// RateLimitSettings are the rate_limit stage's route fields.
type RateLimitSettings struct {
	// Limits names the limits (of the top-level limits section) the route
	// applies; a request must pass every one, and those with all_routes.
	// Refused requests get 429 with Retry-After and the RateLimit headers.
	// At most 8 per route. Default none.
	Limits []string `yaml:"limits"`
}

// maxRouteLimits bounds the limits one route applies, so that a request's
// decisions fit in a fixed array.
const maxRouteLimits = 8

// SetDefaults implements Settings: no limits is the default.
func (s *RateLimitSettings) SetDefaults() {}

// Check implements Settings: every name must be a limit of the
// configuration, named once.
func (s *RateLimitSettings) Check(r *Route) {
	seen := map[string]bool{}
	for j, name := range s.Limits {
		field := "limits[" + strconv.Itoa(j) + "]"
		switch l, hint := r.Root.LimitNamed(name); {
		case l == nil:
			r.Errorf(field, "unknown limit %q%s", name, hint)
		case seen[name]:
			r.Errorf(field, "limit %q is listed twice", name)
		}
		seen[name] = true
	}
	if n := len(s.applied(r.Root)); n > maxRouteLimits {
		r.Errorf("limits", "the route applies %d limits (with those of all_routes); at most %d", n, maxRouteLimits)
	}
}

// applied returns the limits a route with these settings applies: those it
// names and those with all_routes, local limits first (a refusal by a local
// limit then costs no round trip to Redis, and local takes can be given
// back when a later limit refuses).
func (s *RateLimitSettings) applied(cfg *config.Config) []*config.Limit {
	var local, global []*config.Limit
	add := func(l *config.Limit) {
		for _, o := range append(local, global...) {
			if o == l {
				return
			}
		}
		if l.Redis != nil {
			global = append(global, l)
		} else {
			local = append(local, l)
		}
	}
	for _, name := range s.Limits {
		if l, _ := cfg.LimitNamed(name); l != nil {
			add(l)
		}
	}
	for i := range cfg.Limits {
		if cfg.Limits[i].AllRoutes {
			add(&cfg.Limits[i])
		}
	}
	return append(local, global...)
}

// Limiter is a limit's state, kept across reloads while the limit's
// settings are unchanged (pipeline State); the admin API lists them.
type Limiter struct {
	// Config is the limit's settings (defaults applied).
	Config config.Limit

	local  *ratelimit.Local
	global *ratelimit.Global
	client interface{ Close() error }
	evict  atomic.Pointer[metrics.RateLimit]
}

// Close closes the limit's Redis connections, once no configuration uses
// it.
func (l *Limiter) Close() error {
	if l.client != nil {
		return l.client.Close()
	}
	return nil
}

// Hottest returns up to n keys, most refused first, then most used. For a
// global limit, these are the local fallback's keys (Redis holds the rest).
func (l *Limiter) Hottest(n int) []ratelimit.KeyStat {
	if l.global != nil {
		return l.global.Fallback().Hottest(n)
	}
	return l.local.Hottest(n)
}

// Keys counts the keys tracked in this process.
func (l *Limiter) Keys() int {
	if l.global != nil {
		return l.global.Fallback().Keys()
	}
	return l.local.Keys()
}

// Limiters lists the limiters kept in s, by limit name: the admin API's
// view of the configuration being served.
func Limiters(s *State) []*Limiter {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*Limiter
	for _, v := range s.vals {
		if l, ok := v.(*Limiter); ok {
			out = append(out, l)
		}
	}
	return out
}

// params converts a limit's settings to the algorithm's.
func params(l *config.Limit) ratelimit.Params {
	if l.Algorithm == config.LimitTokenBucket {
		return ratelimit.Params{Algorithm: ratelimit.TokenBucket, Rate: l.Rate, Burst: l.Burst}
	}
	return ratelimit.Params{Algorithm: ratelimit.SlidingWindow, Count: l.Count, Window: l.Window.D()}
}

// newLimiter makes a limit's state: a local store, or a Redis client and a
// global limit with its local fallback.
func newLimiter(l *config.Limit) (*Limiter, error) {
	lim := &Limiter{Config: *l}
	onEvict := func() { lim.evict.Load().Evicted() }
	if r := l.Redis; r != nil {
		client := ratelimit.NewRedisClient(r.Address, r.Timeout.D())
		policy := map[string]ratelimit.OnFailure{config.LimitFailLocal: ratelimit.FallbackLocal,
			config.LimitFailOpen: ratelimit.FallbackOpen, config.LimitFailClosed: ratelimit.FallbackClosed}[r.OnFailure]
		g, err := ratelimit.NewGlobal(params(l), ratelimit.GlobalOptions{Client: client, Prefix: r.Prefix,
			Timeout: r.Timeout.D(), Replicas: r.Replicas, OnFailure: policy, MaxKeys: l.MaxKeys})
		if err != nil {
			client.Close()
			return nil, err
		}
		g.Fallback().OnEvict(onEvict)
		lim.global, lim.client = g, client
		return lim, nil
	}
	local, err := ratelimit.NewLocal(params(l), l.MaxKeys)
	if err != nil {
		return nil, err
	}
	local.OnEvict(onEvict)
	lim.local = local
	return lim, nil
}

// routeLimit is one limit as a route applies it: the kept state, and what
// the request path needs precomputed.
type routeLimit struct {
	*Limiter
	name    string
	shadow  bool
	headers bool
	policy  string // RateLimit-Policy item: "name";q=100;w=10
	metrics *metrics.RateLimit
}

// rateLimit is the rate_limit stage: it asks each of the route's limits in
// turn and refuses the request (429) at the first that does not admit it.
type rateLimit struct {
	limits []routeLimit
	next   exchange.Handler
	log    *slog.Logger
	// logs bounds the refusal and fallback lines: 10 at once, then one a
	// second; the access log has every refusal.
	logs       *ratelimit.Local
	suppressed atomic.Int64
	now        func() int64
}

func newRateLimit(s *RateLimitSettings, r *Route, next exchange.Handler) (exchange.Handler, error) {
	applied := s.applied(r.Root)
	if len(applied) == 0 {
		return next, nil
	}
	h := &rateLimit{next: next, log: r.Logger, now: func() int64 { return time.Now().UnixNano() }}
	h.logs, _ = ratelimit.NewLocal(ratelimit.Params{Algorithm: ratelimit.TokenBucket, Rate: 1, Burst: 10}, 1)
	for _, l := range applied {
		// The key holds every setting: a changed limit starts afresh, an
		// unchanged one keeps its counts across reloads.
		settings, err := json.Marshal(l)
		if err != nil {
			return nil, err
		}
		v, err := r.State.Keep("rate_limit:"+string(settings), func() (any, error) { return newLimiter(l) })
		if err != nil {
			return nil, fmt.Errorf("limit %q: %w", l.Name, err)
		}
		lim := v.(*Limiter)
		m := r.Metrics.RateLimit(l.Name, l.Key.From)
		if m != nil {
			lim.evict.Store(m)
		}
		q, w := params(l).Quota()
		h.limits = append(h.limits, routeLimit{
			Limiter: lim,
			name:    l.Name,
			shadow:  l.Mode == config.LimitShadow,
			headers: *l.AddHeaders,
			policy:  strconv.Quote(l.Name) + ";q=" + strconv.FormatInt(q, 10) + ";w=" + strconv.FormatInt(w, 10),
			metrics: m,
		})
	}
	return h, nil
}

// keyBuf holds a request's key when it is computed (a client address, a
// decoded claim), so that building it allocates nothing.
type keyBuf [512]byte

func (h *rateLimit) ServeExchange(x *exchange.Exchange) {
	now := h.now()
	var taken [maxRouteLimits]ratelimit.Decision
	var buf keyBuf
	for i := range h.limits {
		l := &h.limits[i]
		key := requestKey(x, &l.Config.Key, &buf)
		cost := requestCost(x, &l.Config.Cost)
		var d ratelimit.Decision
		if l.global != nil {
			var src ratelimit.Source
			d, src = l.global.Take(x.Ctx, key, cost, now)
			if src == ratelimit.FromFallback {
				l.metrics.Fallback()
				h.logf(now, "rate limit falling back: Redis did not answer in time", l.name, x)
			}
		} else {
			d = l.local.Take(key, cost, now)
		}
		taken[i] = d
		switch {
		case d.Allowed:
			l.metrics.Decided(metrics.RateLimitAdmitted)
		case l.shadow:
			l.metrics.Decided(metrics.RateLimitShadowLimited)
		default:
			l.metrics.Decided(metrics.RateLimitLimited)
			for j := range i {
				if h.limits[j].local != nil {
					h.limits[j].local.Refund(taken[j])
				}
			}
			h.refuse(x, l, d, now)
			return
		}
	}
	h.addHeaders(x, taken[:len(h.limits)])
	h.next.ServeExchange(x)
}

// refuse answers 429 through the error funnel, with Retry-After and the
// refusing limit's RateLimit headers.
func (h *rateLimit) refuse(x *exchange.Exchange, l *routeLimit, d ratelimit.Decision, now int64) {
	hdr := x.W.Header()
	var b [24]byte
	hdr.Del("Retry-After")
	hdr.AddBytes([]byte("Retry-After"), strconv.AppendInt(b[:0], ceilSeconds(d.RetryAfter), 10))
	hdr.Del("RateLimit-Policy")
	hdr.Add("RateLimit-Policy", l.policy)
	var rb [128]byte
	hdr.Del("RateLimit")
	hdr.AddBytes([]byte("RateLimit"), appendRateLimit(rb[:0], l, d))
	failure.Fail(x, failure.RateLimited)
	x.State.Error = l.name
	h.logf(now, "request rate limited", l.name, x)
}

// addHeaders adds RateLimit-Policy and RateLimit to an admitted response,
// one item per limit with add_headers.
func (h *rateLimit) addHeaders(x *exchange.Exchange, taken []ratelimit.Decision) {
	var pb, rb [512]byte
	p, r := pb[:0], rb[:0]
	for i := range h.limits {
		l := &h.limits[i]
		if !l.headers {
			continue
		}
		if len(p) > 0 {
			p, r = append(p, ", "...), append(r, ", "...)
		}
		p = append(p, l.policy...)
		r = appendRateLimit(r, l, taken[i])
	}
	if len(p) == 0 {
		return
	}
	hdr := x.W.Header()
	hdr.AddBytes([]byte("RateLimit-Policy"), p)
	hdr.AddBytes([]byte("RateLimit"), r)
}

// appendRateLimit appends the RateLimit item of l for decision d:
// "name";r=<remaining>;t=<seconds until reset> (draft-ietf-httpapi-
// ratelimit-headers, a structured field list).
func appendRateLimit(b []byte, l *routeLimit, d ratelimit.Decision) []byte {
	b = strconv.AppendQuote(b, l.name)
	b = append(b, ";r="...)
	b = strconv.AppendInt(b, d.Remaining, 10)
	b = append(b, ";t="...)
	return strconv.AppendInt(b, ceilSeconds(d.Reset), 10)
}

func ceilSeconds(ns int64) int64 {
	return max(0, (ns+int64(time.Second)-1)/int64(time.Second))
}

// logf writes a warning about limit l, at most 10 at once and then one a
// second across the route, saying how many were left out since the last.
func (h *rateLimit) logf(now int64, msg, limit string, x *exchange.Exchange) {
	if !h.logs.Take("", 1, now).Allowed {
		h.suppressed.Add(1)
		return
	}
	h.log.Warn(msg, "limit", limit, "route", x.State.RouteName, "request_id", x.State.RequestID,
		"suppressed", h.suppressed.Swap(0))
}

// requestKey returns the key k names for x. The string may alias x's
// memory or buf: the limit copies it when it keeps it. Keys longer than 64
// bytes are replaced by a hash of them, which bounds the memory a key set
// can take.
func requestKey(x *exchange.Exchange, k *config.LimitKey, buf *keyBuf) string {
	var key string
	switch k.From {
	case config.LimitKeyClientIP:
		key = clientIP(x, buf)
	case config.LimitKeyHeader:
		key, _ = x.Req.Header.Get(k.Name)
	case config.LimitKeyParam:
		key, _ = x.State.Params.Get(k.Name)
	case config.LimitKeyJWTClaim:
		key = jwtClaim(x, k.Name, buf)
	}
	if len(key) > 64 {
		sum := sha256.Sum256(unsafe.Slice(unsafe.StringData(key), len(key)))
		n := hex.Encode(buf[:], sum[:16])
		key = unsafe.String(&buf[0], n)
	}
	return key
}

// clientIP is the client's address (exchange.State.ClientAddr: the peer's,
// or the one a trusted proxy forwarded for).
func clientIP(x *exchange.Exchange, buf *keyBuf) string {
	return bytesKey(clientAddr(x).AppendTo(buf[:0]))
}

// clientAddr is x.State.ClientAddr, or the socket peer's address for an
// exchange that did not come through the front handler (which sets it).
func clientAddr(x *exchange.Exchange) netip.Addr {
	if a := x.State.ClientAddr; a.IsValid() {
		return a
	}
	return x.Req.RemoteAddr.Addr().Unmap()
}

func bytesKey(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// jwtClaim reads claim name from the payload of the request's bearer token
// WITHOUT verifying the token: any client can write any claim, so a limit
// keyed by a claim belongs behind authentication that verifies it. Only a
// top-level string or number claim is read; "" when there is none.
func jwtClaim(x *exchange.Exchange, name string, buf *keyBuf) string {
	auth, _ := x.Req.Header.Get("Authorization")
	tok, ok := cutPrefixFold(auth, "Bearer ")
	if !ok {
		return ""
	}
	_, rest, ok := strings.Cut(tok, ".")
	payload, _, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 || base64.RawURLEncoding.DecodedLen(len(payload)) > len(buf) {
		return ""
	}
	n, err := base64.RawURLEncoding.Decode(buf[:], unsafe.Slice(unsafe.StringData(payload), len(payload)))
	if err != nil {
		return ""
	}
	return claimValue(buf[:n], name)
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !exchange.EqualFold(s[:len(prefix)], prefix) {
		return "", false
	}
	return strings.TrimSpace(s[len(prefix):]), true
}

// claimValue finds "name": value in a JSON object's text and returns the
// value: a string's contents (escapes left as written) or a number. It
// scans rather than decodes, to allocate nothing; a key inside a nested
// object can match too, which an unverified claim cannot make worse.
func claimValue(js []byte, name string) string {
	s := bytesKey(js)
	for i := 0; ; {
		j := strings.Index(s[i:], `"`+name+`"`)
		if j < 0 {
			return ""
		}
		i += j + len(name) + 2
		rest := strings.TrimLeft(s[i:], " \t\r\n")
		if !strings.HasPrefix(rest, ":") {
			continue
		}
		rest = strings.TrimLeft(rest[1:], " \t\r\n")
		if strings.HasPrefix(rest, `"`) {
			for k := 1; k < len(rest); k++ {
				switch rest[k] {
				case '\\':
					k++
				case '"':
					return rest[1:k]
				}
			}
			return ""
		}
		end := strings.IndexAny(rest, ",} \t\r\n")
		if end < 0 {
			return ""
		}
		return rest[:end]
	}
}

// requestCost returns how many units x takes of a limit with cost c.
func requestCost(x *exchange.Exchange, c *config.LimitCost) int64 {
	switch c.From {
	case config.LimitCostHeader:
		if v, ok := x.Req.Header.Get(c.Name); ok {
			if n, ok := parseCost(v); ok {
				return n
			}
		}
	case config.LimitCostBodyBytes:
		if x.Req.ContentLength >= 0 {
			return x.Req.ContentLength
		}
	}
	return c.Value
}

// parseCost parses a non-negative decimal integer (strconv's errors
// allocate, and a client can send any value).
func parseCost(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int64(s[i]-'0')
	}
	return n, true
}
