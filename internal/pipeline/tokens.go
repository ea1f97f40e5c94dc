package pipeline

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/failure"
	"github.com/penstock-dev/penstock/internal/metrics"
	"github.com/penstock-dev/penstock/internal/tokens"
)

// TokensSettings are the tokens stage's route fields.
type TokensSettings struct {
	// Tokens holds each tenant of an OpenAI-compatible route
	// (/v1/chat/completions, /v1/completions) to a tokens-per-minute
	// budget. Off by default.
	Tokens *RouteTokens `yaml:"tokens"`
}

// RouteTokens is token-aware admission (internal/tokens): a request's
// cost, its prompt's characters over chars_per_token plus its max_tokens,
// is reserved against its tenant's budget before it is sent (a request the
// budget cannot cover gets 429 rate_limited with Retry-After), and the
// reservation is settled with the usage the response reports, plain or
// streamed (stream_options.include_usage; without it, the streamed text
// is counted). A stream that runs past its reservation and its tenant's
// balance is cut with a final error event.
type RouteTokens struct {
	// TokensPerMinute is each tenant's budget (tokens a minute). Default
	// none (required).
	TokensPerMinute int `yaml:"tokens_per_minute"`
	// TenantHeader names the request header that says which tenant a
	// request is charged to. Requests without it share the tenant "".
	// Default none: one budget for the route.
	TenantHeader string `yaml:"tenant_header"`
	// TenantBudgets overrides tokens_per_minute per tenant (tokens a
	// minute). Default none.
	TenantBudgets map[string]int `yaml:"tenant_budgets"`
	// Burst bounds the tokens a tenant may use at once after being idle,
	// as time at its budget's rate (duration). Default 10s.
	Burst config.Duration `yaml:"burst"`
	// CharsPerToken converts prompt and streamed characters to tokens
	// (factor). Default 4.
	CharsPerToken float64 `yaml:"chars_per_token"`
	// DefaultMaxTokens is the completion length reserved for a request
	// that sets no max_tokens (tokens). Default 256.
	DefaultMaxTokens int `yaml:"default_max_tokens"`
	// MaxRequestBytes bounds a request body read to estimate its cost
	// (bytes); a larger one gets 413. Default 1MiB.
	MaxRequestBytes config.ByteSize `yaml:"max_request_bytes"`
	// CutStreams ends a stream that runs past its reservation when its
	// tenant's balance cannot cover the rest, with a final error event
	// (bool). Default true.
	CutStreams *bool `yaml:"cut_streams"`
	// MaxTenants bounds the tenants whose budgets are kept at once
	// (count); full budgets are forgotten first. Default 10000.
	MaxTenants int `yaml:"max_tenants"`
}

// SetDefaults implements Settings.
func (s *TokensSettings) SetDefaults() {
	t := s.Tokens
	if t == nil {
		return
	}
	if t.Burst == 0 {
		t.Burst = config.Duration(10 * time.Second)
	}
	if t.CharsPerToken == 0 {
		t.CharsPerToken = 4
	}
	if t.DefaultMaxTokens == 0 {
		t.DefaultMaxTokens = 256
	}
	if t.MaxRequestBytes == 0 {
		t.MaxRequestBytes = 1 << 20
	}
	if t.CutStreams == nil {
		yes := true
		t.CutStreams = &yes
	}
	if t.MaxTenants == 0 {
		t.MaxTenants = 10000
	}
}

// Check implements Settings.
func (s *TokensSettings) Check(r *Route) {
	t := s.Tokens
	if t == nil {
		return
	}
	if t.TokensPerMinute < 1 {
		r.Errorf("tokens.tokens_per_minute", "must be at least 1, got %d", t.TokensPerMinute)
	}
	for _, k := range slices.Sorted(maps.Keys(t.TenantBudgets)) {
		if t.TenantBudgets[k] < 1 {
			r.Errorf("tokens.tenant_budgets."+k, "must be at least 1, got %d", t.TenantBudgets[k])
		}
	}
	if t.Burst < config.Duration(time.Second) {
		r.Errorf("tokens.burst", "must be at least 1s, got %s", t.Burst)
	}
	if !(t.CharsPerToken >= 1 && t.CharsPerToken <= 100) {
		r.Errorf("tokens.chars_per_token", "must be between 1 and 100, got %v", t.CharsPerToken)
	}
	if t.DefaultMaxTokens < 1 {
		r.Errorf("tokens.default_max_tokens", "must be at least 1, got %d", t.DefaultMaxTokens)
	}
	if t.MaxRequestBytes < 1 {
		r.Errorf("tokens.max_request_bytes", "must be positive, got %s", t.MaxRequestBytes)
	}
	if t.MaxTenants < 1 {
		r.Errorf("tokens.max_tenants", "must be at least 1, got %d", t.MaxTenants)
	}
	if strings.ContainsAny(t.TenantHeader, " \t:") {
		r.Errorf("tokens.tenant_header", "invalid header name %q", t.TenantHeader)
	}
}

// tokenStage is the tokens stage's handler.
type tokenStage struct {
	budget  *tokens.Budget
	cfg     RouteTokens
	route   string
	next    exchange.Handler
	maxBody int64
	// metrics per tenant named in tenant_budgets, the rest as other; nil
	// records nothing.
	metrics map[string]*metrics.Tokens
	other   *metrics.Tokens
}

func newTokens(s *TokensSettings, r *Route, next exchange.Handler) (exchange.Handler, error) {
	t := s.Tokens
	if t == nil {
		return next, nil
	}
	v, err := r.State.Keep(fmt.Sprintf("tokens|%s|%d|%s|%d", r.Config.Name, t.TokensPerMinute, t.Burst, t.MaxTenants), func() (any, error) {
		return tokens.NewBudget(float64(t.TokensPerMinute), t.Burst.D().Seconds(), t.MaxTenants), nil
	})
	if err != nil {
		return nil, err
	}
	h := &tokenStage{budget: v.(*tokens.Budget), cfg: *t, route: r.Config.Name, next: next, maxBody: t.MaxRequestBytes.Int64()}
	if r.Metrics != nil {
		h.metrics = map[string]*metrics.Tokens{}
		for tenant := range t.TenantBudgets {
			h.metrics[tenant] = r.Metrics.Tokens(r.Config.Name, tenant)
		}
		h.other = r.Metrics.Tokens(r.Config.Name, "other")
	}
	return h, nil
}

// tenantMetrics returns tenant's metrics, or nil.
func (h *tokenStage) tenantMetrics(tenant string) *metrics.Tokens {
	if m, ok := h.metrics[tenant]; ok {
		return m
	}
	return h.other
}

func (h *tokenStage) ServeExchange(x *exchange.Exchange) {
	if x.Req.Method != "POST" {
		h.next.ServeExchange(x)
		return
	}
	body, err := io.ReadAll(io.LimitReader(x.Req.Body, h.maxBody+1))
	x.State.BytesIn = int64(len(body))
	switch {
	case err != nil:
		x.State.Error = err.Error()
		x.W.Header().Set("Connection", "close")
		code := failure.BadRequest
		if errors.Is(err, failure.ErrBodyTooLarge) {
			code = failure.BodyTooLarge
		}
		failure.Fail(x, code)
		return
	case int64(len(body)) > h.maxBody:
		x.State.Error = "request body larger than tokens.max_request_bytes"
		x.W.Header().Set("Connection", "close")
		failure.Fail(x, failure.BodyTooLarge)
		return
	}
	x.Req.Body, x.Req.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	req, err := tokens.ParseRequest(body)
	if err != nil {
		// Not a completion request: the upstream answers it (400), and it
		// costs nothing.
		h.next.ServeExchange(x)
		return
	}
	var tenant string
	if h.cfg.TenantHeader != "" {
		tenant, _ = x.Req.Header.Get(h.cfg.TenantHeader)
		tenant = strings.Clone(tenant)
	}
	perMinute := float64(h.cfg.TokensPerMinute)
	if b, ok := h.cfg.TenantBudgets[tenant]; ok {
		perMinute = float64(b)
	}
	prompt := tokens.Tokens(req.PromptChars, h.cfg.CharsPerToken)
	completion := req.MaxTokens
	if completion == 0 {
		completion = h.cfg.DefaultMaxTokens
	}
	estimate := prompt + float64(completion)
	ok, wait := h.budget.Reserve(tenant, perMinute, estimate)
	m := h.tenantMetrics(tenant)
	if !ok {
		if m != nil {
			m.Refused.Inc()
		}
		secs := int64((wait + time.Second - 1) / time.Second)
		x.W.Header().Set("Retry-After", strconv.FormatInt(max(secs, 1), 10))
		x.State.Error = "token budget exhausted (tokens_per_minute)"
		failure.Fail(x, failure.RateLimited)
		return
	}
	w := &tokenWriter{inner: x.W, h: h, tenant: tenant, perMinute: perMinute, prompt: prompt, reserved: estimate}
	x.W = w
	h.next.ServeExchange(x)
	x.W = w.inner
	in, out := w.used(x.State.Status)
	h.budget.Settle(tenant, perMinute, w.reserved, in+out)
	if w.cut {
		x.State.Error = "stream cut: token budget exhausted"
	}
	if m != nil {
		m.In.Add(in)
		m.Out.Add(out)
		if w.cut {
			m.StreamCut.Inc()
		}
		if !w.first.IsZero() {
			m.TTFT.Observe(w.first.Sub(x.Start).Seconds())
			if w.sse && out > 1 {
				m.TPOT.Observe(w.last.Sub(w.first).Seconds() / (out - 1))
			}
		}
	}
}

// tokenWriter watches a response on its way to the client: it keeps a
// JSON body (to read its usage) and follows an event stream, cutting it
// when it runs past what its tenant can pay.
type tokenWriter struct {
	inner     exchange.ResponseWriter
	h         *tokenStage
	tenant    string
	perMinute float64
	prompt    float64 // the prompt's estimated tokens
	reserved  float64 // taken from the budget so far

	started, sse, cut bool
	first, last       time.Time // the first and the last body write
	body              []byte
	over              bool // body beyond the kept size
	stream            tokens.Stream
}

// maxUsageBody bounds the JSON body kept to read its usage.
const maxUsageBody = 4 << 20

func (w *tokenWriter) Header() *exchange.Header { return w.inner.Header() }

func (w *tokenWriter) WriteHeader(status int) {
	if status >= 200 && !w.started {
		w.started = true
		ct, _ := w.inner.Header().Get("Content-Type")
		w.sse = strings.Contains(ct, "text/event-stream")
	}
	w.inner.WriteHeader(status)
}

// streamError is the last event of a stream cut for its budget.
const streamError = "data: {\"error\":{\"message\":\"token budget exhausted\",\"type\":\"token_budget_exceeded\"}}\n\ndata: [DONE]\n\n"

func (w *tokenWriter) Write(p []byte) (int, error) {
	if !w.started {
		w.WriteHeader(200)
	}
	if len(p) > 0 {
		w.last = time.Now()
		if w.first.IsZero() {
			w.first = w.last
		}
	}
	if w.cut {
		// The rest of the stream is read from the upstream and dropped:
		// the client's stream ended cleanly with the error event.
		return len(p), nil
	}
	if !w.sse {
		if !w.over && len(w.body)+len(p) <= maxUsageBody {
			w.body = append(w.body, p...)
		} else {
			w.over = true
		}
		return w.inner.Write(p)
	}
	w.stream.Feed(p)
	if used := w.prompt + tokens.Tokens(w.stream.OutputChars, w.h.cfg.CharsPerToken); used > w.reserved {
		more := used - w.reserved
		if !w.h.budget.Take(w.tenant, w.perMinute, more) && *w.h.cfg.CutStreams {
			w.cut = true
			if _, err := io.WriteString(w.inner, streamError); err != nil {
				return 0, err
			}
			w.inner.Flush()
			return len(p), nil
		}
		w.reserved = used
	}
	return w.inner.Write(p)
}

// used is what the request cost, prompt and completion: the usage the
// response reported, else the streamed text counted, else (no usage) the
// reservation for a successful response and nothing for a failed one.
func (w *tokenWriter) used(status int) (in, out float64) {
	if w.sse {
		if w.stream.Seen {
			u := w.stream.Usage
			return float64(u.Prompt), float64(u.Total - u.Prompt)
		}
		return w.prompt, tokens.Tokens(w.stream.OutputChars, w.h.cfg.CharsPerToken)
	}
	if u, ok := tokens.ParseUsage(w.body); ok && !w.over {
		return float64(u.Prompt), float64(u.Total - u.Prompt)
	}
	if status >= 200 && status < 300 {
		return w.prompt, w.reserved - w.prompt
	}
	return 0, 0
}

func (w *tokenWriter) Flush() error { return w.inner.Flush() }

func (w *tokenWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) { return w.inner.Hijack() }
