package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/metrics"
	"github.com/penstock-dev/penstock/internal/proxy"
	"github.com/penstock-dev/penstock/internal/upstream"
)

// llm is a loopback OpenAI-compatible chat completions server. Its
// tokenizer is not penstock's estimate: a prompt costs one token per 3.5
// characters. It generates max_tokens tokens of 4 characters (or, with
// ignoreMax, twice as many), streamed when asked, and records what each
// request really cost.
type llm struct {
	srv       *httptest.Server
	ignoreMax bool

	mu   sync.Mutex
	cost map[string]int64 // by x-id
}

func newLLM(t *testing.T, ignoreMax bool) *llm {
	m := &llm{ignoreMax: ignoreMax, cost: map[string]int64{}}
	m.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Messages []struct {
				Content string `json:"content"`
			} `json:"messages"`
			MaxTokens     int  `json:"max_tokens"`
			Stream        bool `json:"stream"`
			StreamOptions struct {
				IncludeUsage bool `json:"include_usage"`
			} `json:"stream_options"`
		}
		json.NewDecoder(r.Body).Decode(&req)
		chars := 0
		for _, msg := range req.Messages {
			chars += len(msg.Content)
		}
		prompt := int64(math.Ceil(float64(chars) / 3.5))
		completion := int64(req.MaxTokens)
		if m.ignoreMax || completion == 0 {
			completion = 2*completion + 300
		}
		usage := fmt.Sprintf(`{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}`, prompt, completion, prompt+completion)
		m.mu.Lock()
		m.cost[r.Header.Get("x-id")] = prompt + completion
		m.mu.Unlock()
		if !req.Stream {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"choices":[{"message":{"content":%q}}],"usage":%s}`, strings.Repeat("abcd", int(completion)), usage)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range completion {
			fmt.Fprint(w, `data: {"choices":[{"delta":{"content":"abcd"}}]}`+"\n\n")
			if i%16 == 15 {
				w.(http.Flusher).Flush()
			}
		}
		if req.StreamOptions.IncludeUsage {
			fmt.Fprintf(w, "data: {\"choices\":[],\"usage\":%s}\n\n", usage)
		}
		fmt.Fprint(w, "data: [DONE]\n\n")
	}))
	t.Cleanup(m.srv.Close)
	return m
}

// buildTokens builds route 0 with the given fields in front of a real
// forwarder to m, and returns the tokens stage with its clock at now.
func buildTokens(t *testing.T, fields string, m *llm, now *time.Time, met ...*metrics.Metrics) *tokenStage {
	t.Helper()
	cfg := parseRoute(t, fields)
	cfg.SetDefaults()
	up := config.Upstream{Name: "app", Endpoints: []config.Endpoint{{Address: m.srv.Listener.Addr().String()}}, Protocol: "h1",
		Balancing: "round_robin", Pool: config.Pool{MaxIdlePerEndpoint: 16, IdleTimeout: config.Duration(time.Minute)}}
	p, err := upstream.NewPoolWith(&up, upstream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	fwd := &proxy.Forwarder{Pool: p, ResponseHeaderTimeout: 30 * time.Second, Logger: slog.New(slog.DiscardHandler)}
	reg, err := NewRegistry(Define("tokens", newTokens))
	if err != nil {
		t.Fatal(err)
	}
	env := &Env{Logger: slog.New(slog.DiscardHandler)}
	if len(met) > 0 {
		env.Metrics = met[0]
	}
	h, err := reg.Build(cfg, 0, fwd, env)
	if err != nil {
		t.Fatal(err)
	}
	ts := h.(*tokenStage)
	ts.budget.Now = func() time.Time { return *now }
	return ts
}

// complete sends a chat completion request through h.
func complete(t *testing.T, h *tokenStage, id, tenant, body string) (int, string) {
	x, rec := newExchange(t, "POST")
	x.Ctx = context.Background()
	x.Req.Path = "/v1/chat/completions"
	x.Req.Header.Add("Content-Type", "application/json")
	x.Req.Header.Add("x-tenant", tenant)
	x.Req.Header.Add("x-id", id)
	x.Req.Body = io.NopCloser(strings.NewReader(body))
	x.Req.ContentLength = int64(len(body))
	h.ServeExchange(x)
	status := x.State.Status
	if len(rec.Statuses) > 0 {
		status = rec.Statuses[len(rec.Statuses)-1]
	}
	return status, string(rec.Body)
}

// Acceptance 7: a tenant with a budget of 10k tokens a minute is held to
// it within 2 % over a run of mixed prompt sizes, streamed or not, with
// demand far above it. The clock is simulated (ten minutes in 1200
// steps); the requests are real, through the forwarder to a loopback
// server that reports its own token counts.
func TestTokensHoldATenantToItsBudget(t *testing.T) {
	m := newLLM(t, false)
	now := time.Unix(1_700_000_000, 0)
	h := buildTokens(t, `    tokens: {tokens_per_minute: 10000, tenant_header: x-tenant, tenant_budgets: {big: 100000}}
`, m, &now)
	rng := rand.New(rand.NewPCG(7, 7))
	const (
		minutes = 10
		steps   = 1200
	)
	step := minutes * time.Minute / steps
	admitted, refused := 0, 0
	var ids []string
	for i := range steps {
		now = now.Add(step)
		prompt := strings.Repeat("w", 50+rng.IntN(2000))
		maxTokens := 64 + rng.IntN(448)
		var body string
		switch i % 6 {
		case 0, 1, 2: // plain
			body = fmt.Sprintf(`{"model":"m","messages":[{"role":"user","content":%q}],"max_tokens":%d}`, prompt, maxTokens)
		case 3, 4: // streamed, with the usage at the end
			body = fmt.Sprintf(`{"model":"m","messages":[{"role":"user","content":%q}],"max_tokens":%d,"stream":true,"stream_options":{"include_usage":true}}`, prompt, maxTokens)
		case 5: // streamed, counted by its text
			body = fmt.Sprintf(`{"model":"m","messages":[{"role":"user","content":%q}],"max_tokens":%d,"stream":true}`, prompt, maxTokens)
		}
		id := fmt.Sprint(i)
		switch status, resp := complete(t, h, id, "small", body); status {
		case 200:
			admitted++
			ids = append(ids, id)
		case 429:
			refused++
		default:
			t.Fatalf("request %d: %d %s", i, status, resp)
		}
	}
	var used int64
	m.mu.Lock()
	for _, id := range ids {
		used += m.cost[id]
	}
	m.mu.Unlock()
	allowed := 10000.0*minutes + 10000.0/60*10 // the budget over the run, plus the first burst (10s)
	t.Logf("admitted %d, refused %d; used %d tokens of %.0f allowed (%.2f%%)", admitted, refused, used, allowed, 100*float64(used)/allowed)
	if d := math.Abs(float64(used)-allowed) / allowed; d > 0.02 {
		t.Errorf("used %d tokens, allowed %.0f: off by %.2f%%, want within 2%%", used, allowed, 100*d)
	}
	if refused == 0 {
		t.Error("no request was refused: the demand did not exceed the budget")
	}
}

// A stream that runs past its reservation and its tenant's balance is cut
// with a final error event, and the client's stream still ends with
// [DONE].
func TestTokensCutAStreamPastTheBudget(t *testing.T) {
	m := newLLM(t, true)
	now := time.Unix(1_700_000_000, 0)
	h := buildTokens(t, `    tokens: {tokens_per_minute: 600, tenant_header: x-tenant}
`, m, &now)
	status, body := complete(t, h, "1", "t", `{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":50,"stream":true}`)
	if status != 200 {
		t.Fatalf("got %d %s", status, body)
	}
	if !strings.Contains(body, `"type":"token_budget_exceeded"`) || !strings.HasSuffix(body, "data: [DONE]\n\n") {
		t.Errorf("stream not cut with an error event:\n%.300s...%s", body, body[max(0, len(body)-200):])
	}
	if n := strings.Count(body, `"content":"abcd"`); n >= 400 {
		t.Errorf("%d chunks relayed: the stream was not cut", n)
	}
	// The tenant is in debt now, or at zero: its next request waits.
	if status, _ := complete(t, h, "2", "t", `{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":50}`); status != 429 {
		t.Errorf("next request: %d, want 429", status)
	}
}

func TestTokensSettingsErrors(t *testing.T) {
	got := errorLines(Standard().Check(parseRoute(t, `    tokens: {tokens_per_minute: 0, burst: 10ms, chars_per_token: 0.5, tenant_budgets: {a: -1}}
`)))
	want := []string{
		`routes[0].tokens.tokens_per_minute (line 7): must be at least 1, got 0`,
		`routes[0].tokens.tenant_budgets.a (line 7): must be at least 1, got -1`,
		`routes[0].tokens.burst (line 7): must be at least 1s, got 10ms`,
		`routes[0].tokens.chars_per_token (line 7): must be between 1 and 100, got 0.5`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// The tokens a tenant used, its refusals and its time to first token are
// counted per tenant named in the configuration.
func TestTokensMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	met := metrics.New(config.Metrics{}, reg)
	m := newLLM(t, false)
	now := time.Unix(1_700_000_000, 0)
	h := buildTokens(t, `    tokens: {tokens_per_minute: 600, tenant_header: x-tenant, tenant_budgets: {acme: 600}}
`, m, &now, met)
	body := `{"model":"m","messages":[{"role":"user","content":"abcdefg"}],"max_tokens":60}`
	if status, resp := complete(t, h, "1", "acme", body); status != 200 {
		t.Fatalf("first: %d %s", status, resp)
	}
	if status, _ := complete(t, h, "2", "acme", body); status != 429 {
		t.Fatalf("second: %d, want 429", status)
	}
	acme := met.Tokens("predict", "acme")
	// The server counts a prompt token per 3.5 characters: 2 for 7.
	if in, out, refused := testutil.ToFloat64(acme.In), testutil.ToFloat64(acme.Out), testutil.ToFloat64(acme.Refused); in != 2 || out != 60 || refused != 1 {
		t.Errorf("in %v, out %v, refused %v; want 2, 60, 1", in, out, refused)
	}
	if n := testutil.CollectAndCount(reg, "penstock_llm_time_to_first_token_seconds"); n == 0 {
		t.Error("no time to first token recorded")
	}
}
