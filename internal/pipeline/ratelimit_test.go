package pipeline

import (
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/exchange/exchangetest"
	"github.com/penstock-dev/penstock/internal/metrics"
)

// limitRequest is one request of a rate_limit table case.
type limitRequest struct {
	at      time.Duration // on the stage's clock
	ip      string        // client address (default 192.0.2.1)
	trusted bool          // the peer is a trusted proxy
	header  [][2]string   // request header fields
	param   string        // the route's :model
	length  int64         // Content-Length (0: none)
	// want
	status     int    // 0: forwarded
	retryAfter string // when refused
	rateLimit  string // the RateLimit header, when checked
}

func TestRateLimitStage(t *testing.T) {
	jwt := func(payload string) string {
		return "Bearer eyJhbGciOiJub25lIn0." + base64.RawURLEncoding.EncodeToString([]byte(payload)) + ".sig"
	}
	tests := []struct {
		name   string
		limits string // the limits section
		route  string // the route's limits field
		reqs   []limitRequest
	}{
		{
			name:   "token bucket per client IP refuses with Retry-After",
			limits: `[{name: ip, algorithm: token_bucket, rate: 1, burst: 2}]`,
			route:  `[ip]`,
			reqs: []limitRequest{
				{rateLimit: `"ip";r=1;t=1`},
				{rateLimit: `"ip";r=0;t=2`},
				{status: 429, retryAfter: "1", rateLimit: `"ip";r=0;t=2`},
				{ip: "192.0.2.2"},
				{at: time.Second},
			},
		},
		{
			name:   "behind a trusted proxy the forwarded client counts",
			limits: `[{name: ip, algorithm: token_bucket, rate: 1, burst: 1}]`,
			route:  `[ip]`,
			reqs: []limitRequest{
				{trusted: true, header: [][2]string{{"X-Forwarded-For", "203.0.113.9, 198.51.100.7"}}},
				{trusted: true, header: [][2]string{{"X-Forwarded-For", "203.0.113.9, 198.51.100.8"}}},
				{trusted: true, header: [][2]string{{"X-Forwarded-For", "198.51.100.8"}}, status: 429},
				// An untrusted peer's X-Forwarded-For is ignored.
				{header: [][2]string{{"X-Forwarded-For", "198.51.100.99"}}},
				{header: [][2]string{{"X-Forwarded-For", "198.51.100.100"}}, status: 429},
			},
		},
		{
			name:   "sliding window by header with a cost header",
			limits: `[{name: tenant, algorithm: sliding_window, count: 10, window: 10s, key: {from: header, name: X-Tenant}, cost: {from: header, name: X-Tokens}}]`,
			route:  `[tenant]`,
			reqs: []limitRequest{
				{header: [][2]string{{"X-Tenant", "a"}, {"X-Tokens", "8"}}, rateLimit: `"tenant";r=2;t=10`},
				{header: [][2]string{{"X-Tenant", "a"}, {"X-Tokens", "3"}}, status: 429},
				{header: [][2]string{{"X-Tenant", "a"}, {"X-Tokens", "bad"}}, rateLimit: `"tenant";r=1;t=10`},
				{header: [][2]string{{"X-Tenant", "b"}, {"X-Tokens", "10"}}},
			},
		},
		{
			name:   "path parameter key and body bytes cost",
			limits: `[{name: bytes, algorithm: token_bucket, rate: 100, burst: 1000, key: {from: param, name: model}, cost: {from: body_bytes}}]`,
			route:  `[bytes]`,
			reqs: []limitRequest{
				{param: "llama", length: 900},
				{param: "llama", length: 200, status: 429, retryAfter: "1"},
				{param: "gpt", length: 1000},
				{param: "llama", length: 0},
			},
		},
		{
			name:   "JWT claim read without verifying",
			limits: `[{name: sub, algorithm: token_bucket, rate: 1, burst: 1, key: {from: jwt_claim, name: sub}}]`,
			route:  `[sub]`,
			reqs: []limitRequest{
				{header: [][2]string{{"Authorization", jwt(`{"sub":"alice","n":1}`)}}},
				{header: [][2]string{{"Authorization", jwt(`{"sub": "alice"}`)}}, status: 429},
				{header: [][2]string{{"Authorization", jwt(`{"sub":"bob"}`)}}},
			},
		},
		{
			name:   "shadow mode counts but admits",
			limits: `[{name: s, algorithm: token_bucket, rate: 1, burst: 1, mode: shadow}]`,
			route:  `[s]`,
			reqs:   []limitRequest{{}, {}, {}},
		},
		{
			name: "a refusal by a later limit gives back the earlier one's tokens",
			limits: `[{name: wide, algorithm: token_bucket, rate: 1, burst: 2, key: {from: constant}},
  {name: narrow, algorithm: token_bucket, rate: 1, burst: 1, key: {from: header, name: X-Tenant}}]`,
			route: `[wide, narrow]`,
			reqs: []limitRequest{
				{header: [][2]string{{"X-Tenant", "a"}}, rateLimit: `"wide";r=1;t=1, "narrow";r=0;t=1`},
				{header: [][2]string{{"X-Tenant", "a"}}, status: 429, rateLimit: `"narrow";r=0;t=1`},
				// wide still has its second token.
				{header: [][2]string{{"X-Tenant", "b"}}},
				{header: [][2]string{{"X-Tenant", "c"}}, status: 429},
			},
		},
		{
			name:   "all_routes applies to a route that names nothing; add_headers false",
			limits: `[{name: all, algorithm: sliding_window, count: 1, window: 1m, all_routes: true, add_headers: false}]`,
			route:  `[]`,
			reqs:   []limitRequest{{rateLimit: ""}, {status: 429, rateLimit: `"all";r=0;t=60`}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := parseRoute(t, "    limits: "+tt.route+"\nlimits: "+tt.limits+"\n")
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			if err := Standard().Check(cfg); err != nil {
				t.Fatal(err)
			}
			reg := prometheus.NewRegistry()
			m := metrics.New(config.Metrics{}, reg)
			h, clock := buildRateLimit(t, cfg, m, NewState(nil))
			for i, rq := range tt.reqs {
				*clock = int64(rq.at)
				x, rec := newExchange(t, "POST")
				x.Ctx = context.Background()
				ip := rq.ip
				if ip == "" {
					ip = "192.0.2.1"
				}
				x.Req.RemoteAddr = netip.AddrPortFrom(netip.MustParseAddr(ip), 4000)
				x.State.TrustedPeer = rq.trusted
				for _, f := range rq.header {
					x.Req.Header.Add(f[0], f[1])
					if rq.trusted && f[0] == "X-Forwarded-For" {
						// What the front handler resolves from a trusted
						// peer: the last address (front.forwardedClient).
						xff := f[1][strings.LastIndexByte(f[1], ',')+1:]
						x.State.ClientAddr = netip.MustParseAddr(strings.TrimSpace(xff))
					}
				}
				x.State.Params.Match([]string{"model"})
				x.State.Params.Add(rq.param)
				x.Req.ContentLength = -1
				if rq.length > 0 {
					x.Req.ContentLength = rq.length
				}
				forwarded := false
				h.next = exchange.HandlerFunc(func(*exchange.Exchange) { forwarded = true })
				h.ServeExchange(x)
				status := 0
				if !forwarded {
					status = x.State.Status
				}
				if status != rq.status {
					t.Fatalf("request %d: status %d, want %d (0: forwarded)", i, status, rq.status)
				}
				got, _ := rec.Hdr.Get("RateLimit")
				if rq.rateLimit != "" || status == 0 && strings.Contains(tt.limits, "add_headers: false") {
					if got != rq.rateLimit {
						t.Errorf("request %d: RateLimit %q, want %q", i, got, rq.rateLimit)
					}
				}
				if status == 429 {
					ra, _ := rec.Hdr.Get("Retry-After")
					if rq.retryAfter != "" && ra != rq.retryAfter {
						t.Errorf("request %d: Retry-After %q, want %q", i, ra, rq.retryAfter)
					}
					if x.State.ErrorKind != "rate_limited" || x.State.Error == "" {
						t.Errorf("request %d: error kind %q, error %q", i, x.State.ErrorKind, x.State.Error)
					}
					if !strings.Contains(string(rec.Body), `"error":"rate_limited","status":429`) {
						t.Errorf("request %d: body %s", i, rec.Body)
					}
					if p, _ := rec.Hdr.Get("RateLimit-Policy"); !strings.Contains(p, ";q=") {
						t.Errorf("request %d: RateLimit-Policy %q", i, p)
					}
				}
			}
			if tt.name == "shadow mode counts but admits" {
				c := testutil.ToFloat64(m.RateLimit("s", "client_ip").ResultCounter(metrics.RateLimitShadowLimited))
				if c != 2 {
					t.Errorf("shadow_limited = %v, want 2", c)
				}
			}
		})
	}
}

// buildRateLimit builds the rate_limit stage of cfg's first route with a
// clock the test sets (nanoseconds).
func buildRateLimit(t *testing.T, cfg *config.Config, m *metrics.Metrics, st *State) (*rateLimit, *int64) {
	t.Helper()
	var s RateLimitSettings
	if err := cfg.DecodeStageFields(0, &s); err != nil {
		t.Fatal(err)
	}
	r := &Route{Config: &cfg.Routes[0], Root: cfg, Path: "routes[0]", Metrics: m, State: st,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	h, err := newRateLimit(&s, r, nil)
	if err != nil {
		t.Fatal(err)
	}
	rl, ok := h.(*rateLimit)
	if !ok {
		t.Fatalf("the stage built %T, want *rateLimit", h)
	}
	clock := new(int64)
	rl.now = func() int64 { return *clock }
	return rl, clock
}

func TestRateLimitSettingsCheck(t *testing.T) {
	tests := []struct {
		name, fields string
		want         []string
	}{
		{"known limits", "    limits: [a]\nlimits: [{name: a, algorithm: token_bucket, rate: 1}]\n", nil},
		{"unknown limit with a suggestion", "    limits: [a, bb]\nlimits: [{name: a, algorithm: token_bucket, rate: 1}, {name: b, algorithm: token_bucket, rate: 1}, {name: bc1, algorithm: token_bucket, rate: 1}]\n",
			[]string{`routes[0].limits[1] (line 7): unknown limit "bb"; did you mean "b"?`}},
		{"listed twice", "    limits: [a, a]\nlimits: [{name: a, algorithm: token_bucket, rate: 1}]\n",
			[]string{`routes[0].limits[1] (line 7): limit "a" is listed twice`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := errorLines(Standard().Check(parseRoute(t, tt.fields)))
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// TestRateLimitStateAcrossReloads checks that an unchanged limit keeps its
// counts across a reload and a changed one starts afresh.
func TestRateLimitStateAcrossReloads(t *testing.T) {
	const fields = "    limits: [a]\nlimits: [{name: a, algorithm: token_bucket, rate: 1, burst: %s}]\n"
	serve := func(h *rateLimit) int {
		x, _ := newExchange(t, "GET")
		x.Req.RemoteAddr = netip.MustParseAddrPort("192.0.2.1:1")
		h.next = exchange.HandlerFunc(func(*exchange.Exchange) {})
		h.ServeExchange(x)
		return x.State.Status
	}
	old := NewState(nil)
	h1, _ := buildRateLimit(t, parseRoute(t, strings.Replace(fields, "%s", "1", 1)), nil, old)
	if serve(h1) != 0 {
		t.Fatal("first request refused")
	}
	same := NewState(old)
	h2, _ := buildRateLimit(t, parseRoute(t, strings.Replace(fields, "%s", "1", 1)), nil, same)
	if serve(h2) != 429 {
		t.Error("an unchanged limit forgot its state across a reload")
	}
	if len(Limiters(same)) != 1 || len(old.Leaving(same)) != 0 {
		t.Error("the kept limiter is not listed, or is closed by the reload")
	}
	changed := NewState(same)
	h3, _ := buildRateLimit(t, parseRoute(t, strings.Replace(fields, "%s", "2", 1)), nil, changed)
	if serve(h3) != 0 {
		t.Error("a changed limit kept the old state")
	}
	if len(same.Leaving(changed)) != 1 {
		t.Error("the replaced limiter is not closed")
	}
}

func TestClaimValue(t *testing.T) {
	tests := []struct{ name, json, claim, want string }{
		{"string", `{"sub":"alice"}`, "sub", "alice"},
		{"spaces", `{ "sub" : "alice" }`, "sub", "alice"},
		{"number", `{"tenant":42,"x":1}`, "tenant", "42"},
		{"escaped quote", `{"sub":"a\"b"}`, "sub", `a\"b`},
		{"a value equal to the name is not a key", `{"x":"sub","sub":"bob"}`, "sub", "bob"},
		{"missing", `{"iss":"x"}`, "sub", ""},
		{"unterminated", `{"sub":"ali`, "sub", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := claimValue([]byte(tt.json), tt.claim); got != tt.want {
				t.Errorf("claimValue(%s, %q) = %q, want %q", tt.json, tt.claim, got, tt.want)
			}
		})
	}
}

// BenchmarkRateLimitStage is one admitted request through the stage with
// one local limit keyed by client IP, headers included.
func BenchmarkRateLimitStage(b *testing.B) {
	cfg, err := config.Parse([]byte(`listeners: [{name: web, address: "127.0.0.1:8080"}]
upstreams: [{name: app, endpoints: [{address: "127.0.0.1:9000"}]}]
routes:
  - {name: r, match: {path_prefix: /}, upstream: app, limits: [ip]}
limits: [{name: ip, algorithm: token_bucket, rate: 1e9, burst: 1000000000}]
`), "")
	if err != nil {
		b.Fatal(err)
	}
	var s RateLimitSettings
	cfg.DecodeStageFields(0, &s)
	h, err := newRateLimit(&s, &Route{Config: &cfg.Routes[0], Root: cfg, Logger: slog.Default(), State: NewState(nil)},
		exchange.HandlerFunc(func(*exchange.Exchange) {}))
	if err != nil {
		b.Fatal(err)
	}
	x, rec := exchangetest.NewExchange(b, "GET")
	x.Req.RemoteAddr = netip.MustParseAddrPort("192.0.2.1:4000")
	b.ReportAllocs()
	for b.Loop() {
		rec.Hdr.Reset()
		h.ServeExchange(x)
	}
}
