package server_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/rollout"
	"github.com/penstock-dev/penstock/internal/server"
	"github.com/penstock-dev/penstock/internal/split"
)

// runModelUpstream serves a model whose behaviour a test changes while it
// runs, with POST /__control?error=F&delay=D&ttft=D: error is the share of
// requests answered 503, delay is added to every answer, ttft is how long
// a streamed generation (a path ending in /generate) waits before its
// first event. Every answer takes 5 ms plus an exponential jitter of mean
// 2 ms, and 1 % of them 40 ms more: a noisy server. It prints "ready"
// once it listens.
func runModelUpstream(addr string) int {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("ready")
	var errRate, delay, ttft atomic.Int64 // error share in millionths; durations in ns
	ttft.Store(int64(20 * time.Millisecond))
	mux := http.NewServeMux()
	mux.HandleFunc("POST /__control", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if v := q.Get("error"); v != "" {
			var f float64
			fmt.Sscan(v, &f)
			errRate.Store(int64(f * 1e6))
		}
		for name, p := range map[string]*atomic.Int64{"delay": &delay, "ttft": &ttft} {
			if v := q.Get(name); v != "" {
				d, err := time.ParseDuration(v)
				if err != nil {
					http.Error(w, err.Error(), http.StatusBadRequest)
					return
				}
				p.Store(int64(d))
			}
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		wait := 5*time.Millisecond + time.Duration(rand.ExpFloat64()*float64(2*time.Millisecond)) + time.Duration(delay.Load())
		if rand.IntN(100) == 0 {
			wait += 40 * time.Millisecond
		}
		if rand.Int64N(1e6) < errRate.Load() {
			time.Sleep(wait)
			http.Error(w, "overloaded", http.StatusServiceUnavailable)
			return
		}
		if strings.HasSuffix(r.URL.Path, "/generate") {
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(http.StatusOK)
			time.Sleep(time.Duration(ttft.Load()) + wait - 5*time.Millisecond)
			rc := http.NewResponseController(w)
			for i := range 4 {
				fmt.Fprintf(w, "data: {\"token\":%d}\n\n", i)
				rc.Flush()
				time.Sleep(2 * time.Millisecond)
			}
			io.WriteString(w, "data: [DONE]\n\n")
			return
		}
		time.Sleep(wait)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"predictions":[[0.1,0.9]]}`)
	})
	return exitCode(http.Serve(ln, mux))
}

// control changes a model upstream's behaviour.
func (p *upstreamProcess) control(t *testing.T, query string) {
	t.Helper()
	resp, err := http.Post("http://"+p.addr+"/__control?"+query, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("control %s: %s", query, resp.Status)
	}
}

// armLoad drives one URL at a fixed rate from a client that never retries
// and counts the answers by arm (the X-Penstock-Arm header), status and
// time, until ctx ends.
type armLoad struct {
	mu      sync.Mutex
	answers []armAnswer
	failed  int // transport errors
}

type armAnswer struct {
	at     time.Time
	arm    string
	status int
}

func (l *armLoad) run(ctx context.Context, client *http.Client, url, method, body string, rate float64) {
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, 64) // a bound on requests in flight
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		select {
		case sem <- struct{}{}:
		default:
			continue // the gateway is behind: drop rather than pile up
		}
		wg.Go(func() {
			defer func() { <-sem }()
			req, _ := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
			resp, err := client.Do(req)
			if err != nil {
				if ctx.Err() == nil {
					l.mu.Lock()
					l.failed++
					l.mu.Unlock()
				}
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			l.mu.Lock()
			l.answers = append(l.answers, armAnswer{at: time.Now(), arm: resp.Header.Get("X-Penstock-Arm"), status: resp.StatusCode})
			l.mu.Unlock()
		})
	}
}

// count counts the answers of arm (any arm when "") from since on whose
// status matches ok.
func (l *armLoad) count(arm string, since time.Time, match func(int) bool) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, a := range l.answers {
		if (arm == "" || a.arm == arm) && !a.at.Before(since) && match(a.status) {
			n++
		}
	}
	return n
}

func anyStatus(int) bool     { return true }
func unavailable(s int) bool { return s == http.StatusServiceUnavailable }

func rolloutOf(g *server.Server, route string) *split.Control {
	for _, c := range g.Snapshot().Rollouts() {
		if c.Options().Route == route {
			return c
		}
	}
	return nil
}

// waitPhase waits until route's rollout leaves progressing (or timeout),
// and returns its state.
func waitPhase(g *server.Server, route string, timeout time.Duration) rollout.State {
	deadline := time.Now().Add(timeout)
	for {
		st := rolloutOf(g, route).Rollout().Snapshot()
		if st.Phase != rollout.Progressing || time.Now().After(deadline) {
			return st
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func historyKinds(st rollout.State) string {
	var k []string
	for _, e := range st.History {
		k = append(k, fmt.Sprintf("%s@%d", e.Kind, e.Weight))
	}
	return strings.Join(k, " ")
}

// rolloutRoute is a split route with a rollout, for the tests below.
func rolloutRoute(name, path, baseline, canary, stateDir, steps, window, slo string, minRequests int) string {
	return lines(`
  - name: %s
    match: {path: %s}
    upstream: %s
    split:
      arm_header: X-Penstock-Arm
      arms:
        - {name: %s, upstream: %s, weight: 100}
        - {name: %s, upstream: %s}
      rollout:
        steps: %s
        window: %s
        slot: 100ms
        slo: %s
        analysis: {min_requests: %d}
        state_file: %s`, name, path, baseline, baseline, baseline, canary, canary, steps, window, slo, minRequests,
		filepath.Join(stateDir, name+".json"))
}

// TestRolloutAcceptance is the gray-release acceptance test, with real
// upstream processes and a client that never retries, four rollouts at
// once on one gateway:
//   - errors: the canary is healthy for its first step, then answers 5 %
//     503s from the moment it reaches 50 %; it must be rolled back within
//     one window (two at most: the figures are logged), the client
//     requests that met the bad canary are counted, and the baseline fails
//     none;
//   - healthy: the canary goes through every step to 100 %;
//   - ttft-slow: a streaming canary whose time to first token is twice
//     the baseline's is rolled back;
//   - ttft-equal: one with the same time to first token is promoted.
func TestRolloutAcceptance(t *testing.T) {
	if raceDetector {
		t.Skip("drives 500 requests/s for 20 s; run without the race detector (scripts/test does)")
	}
	base := startUpstreamProcess(t, "model")
	bad := startUpstreamProcess(t, "model")
	good := startUpstreamProcess(t, "model")
	slow := startUpstreamProcess(t, "model")
	slow.control(t, "ttft=40ms")
	dir := t.TempDir()
	const window = 3 * time.Second
	// P99 is left loose (100 %): a window here holds about 140 requests
	// per arm, whose P99 is their second slowest, and its bootstrap bound
	// is no guide (docs/rollouts.md); one scheduling stall on a loaded
	// machine rolled the equal canary back once in CI. What this test
	// judges is the error rate and the time to first token.
	slo := `{max_error_rate_increase: 0.01, max_p99_increase: 1.0, max_ttft_increase: 0.5}`
	steps := `[{weight: 20}, {weight: 50}, {weight: 100}]`
	cfg := lines(`
listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams:
  - {name: base, endpoints: [{address: %q}]}
  - {name: bad, endpoints: [{address: %q}]}
  - {name: good, endpoints: [{address: %q}]}
  - {name: slow, endpoints: [{address: %q}]}
access_log: {enabled: false}
routes:`, base.addr, bad.addr, good.addr, slow.addr) +
		rolloutRoute("errors", "/errors/predict", "base", "bad", dir, steps, window.String(), slo, 40) +
		rolloutRoute("healthy", "/healthy/predict", "base", "good", dir, steps, window.String(), slo, 40) +
		rolloutRoute("ttft-slow", "/slow/generate", "base", "slow", dir, steps, window.String(), slo, 40) +
		rolloutRoute("ttft-equal", "/equal/generate", "base", "good", dir, steps, window.String(), slo, 40) + "\n"
	g := startGateway(t, cfg)
	url := baseURL(g, "main")
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()

	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	loads := map[string]*armLoad{}
	var wg sync.WaitGroup
	for _, r := range []struct {
		route, path string
		rate        float64
	}{{"errors", "/errors/predict", 300}, {"healthy", "/healthy/predict", 100},
		{"ttft-slow", "/slow/generate", 100}, {"ttft-equal", "/equal/generate", 100}} {
		l := &armLoad{}
		loads[r.route] = l
		wg.Go(func() { l.run(ctx, client, url+r.path, "POST", `{"prompt":"hi"}`, r.rate) })
	}
	defer func() { cancel(); wg.Wait() }()

	// The errors canary turns bad as it reaches 50 %.
	errs := rolloutOf(g, "errors").Rollout()
	for errs.Weight() < 50 && errs.Snapshot().Phase == rollout.Progressing && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	if errs.Weight() != 50 {
		t.Fatalf("errors rollout never reached 50 %% with a healthy canary: %s; last analysis %+v", historyKinds(errs.Snapshot()), errs.Snapshot().Last)
	}
	bad.control(t, "error=0.05")
	flip := time.Now()
	st := waitPhase(g, "errors", 3*window)
	rolledBack := time.Since(flip)
	if st.Phase != rollout.RolledBack {
		t.Fatalf("errors rollout is %s %v after its canary began failing 5 %% of requests: %s", st.Phase, rolledBack, historyKinds(st))
	}
	last := st.History[len(st.History)-1]
	afterFlip := loads["errors"].count("bad", flip, anyStatus)
	badAnswers := loads["errors"].count("bad", flip, unavailable)
	t.Logf("errors: rolled back %v after the canary turned bad (window %v): %q; %d client requests met the bad canary, %d of them got 503",
		last.At.Sub(flip).Round(time.Millisecond), window, last.Reason, afterFlip, badAnswers)
	if d := last.At.Sub(flip); d > 2*window+window/2 {
		t.Errorf("rolled back %v after the breach began, want within one window (%v), two at most", d, window)
	}
	// Bounded: at 50 % of 300 requests/s, two windows and a half of canary
	// traffic at most.
	if bound := int(150 * (2.5*window.Seconds() + 1)); afterFlip > bound {
		t.Errorf("%d requests met the bad canary, want at most %d", afterFlip, bound)
	}
	time.Sleep(time.Second) // after the rollback, everything goes to the baseline
	since := time.Now()
	time.Sleep(time.Second)
	if n := loads["errors"].count("bad", since, anyStatus); n != 0 {
		t.Errorf("%d requests went to the rolled back canary", n)
	}

	for route, want := range map[string]rollout.Phase{"healthy": rollout.Promoted, "ttft-slow": rollout.RolledBack, "ttft-equal": rollout.Promoted} {
		st := waitPhase(g, route, 6*window)
		t.Logf("%s: %s: %s", route, st.Phase, historyKinds(st))
		if st.Phase != want {
			t.Errorf("%s rollout is %s, want %s; last analysis: %+v", route, st.Phase, want, st.Last)
		}
		if want == rollout.RolledBack && !strings.Contains(st.History[len(st.History)-1].Reason, "first token") {
			t.Errorf("%s rolled back for %q, want the time to first token", route, st.History[len(st.History)-1].Reason)
		}
	}
	if st := rolloutOf(g, "healthy").Rollout().Snapshot(); historyKinds(st) != "started@20 advanced@50 promoted@100" {
		t.Errorf("healthy rollout went %s, want every step", historyKinds(st))
	}
	cancel()
	wg.Wait()
	for route, l := range loads {
		if n := l.count("base", time.Time{}, func(s int) bool { return s >= 500 }); n != 0 || l.failed != 0 {
			t.Errorf("%s: the baseline answered %d errors, %d transport errors", route, n, l.failed)
		}
	}
}

// TestRolloutAA runs 20 rollouts whose two arms are identical upstream
// processes (a noisy server: jitter and 1 % slow answers), at once, under
// the default SLO, and reports how many were rolled back: each is a false
// rollback. At most one of 20 (5 %) may be.
func TestRolloutAA(t *testing.T) {
	if raceDetector {
		t.Skip("drives 2 000 requests/s; run without the race detector (scripts/test does)")
	}
	a := startUpstreamProcess(t, "model")
	b := startUpstreamProcess(t, "model")
	dir := t.TempDir()
	const n = 20
	const window = 3 * time.Second
	var ups, routes strings.Builder
	for i := range n {
		fmt.Fprintf(&ups, "  - {name: a%d, endpoints: [{address: %q}]}\n  - {name: b%d, endpoints: [{address: %q}]}\n", i, a.addr, i, b.addr)
		routes.WriteString(rolloutRoute(fmt.Sprintf("aa%d", i), fmt.Sprintf("/aa%d/predict", i), fmt.Sprintf("a%d", i), fmt.Sprintf("b%d", i),
			dir, `[{weight: 25}, {weight: 50}, {weight: 100}]`, window.String(),
			`{max_error_rate_increase: 0.01, max_p99_increase: 0.25, max_latency_shift: 0.15}`, 60))
	}
	g := startGateway(t, "listeners: [{name: main, address: \"127.0.0.1:0\"}]\naccess_log: {enabled: false}\nupstreams:\n"+ups.String()+"routes:"+routes.String()+"\n")
	url := baseURL(g, "main")
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512, DisableCompression: true}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 8*window)
	defer cancel()
	var wg sync.WaitGroup
	for i := range n {
		l := &armLoad{}
		wg.Go(func() { l.run(ctx, client, fmt.Sprintf("%s/aa%d/predict", url, i), "POST", `{}`, 100) })
	}
	defer func() { cancel(); wg.Wait() }()
	var rolledBack, promoted int
	for i := range n {
		st := waitPhase(g, fmt.Sprintf("aa%d", i), 8*window)
		switch st.Phase {
		case rollout.RolledBack:
			rolledBack++
			t.Logf("aa%d: false rollback: %s", i, st.History[len(st.History)-1].Reason)
		case rollout.Promoted:
			promoted++
		default:
			t.Logf("aa%d: still %s at %d %%: last analysis %v", i, st.Phase, st.Weight, st.Last)
		}
	}
	t.Logf("A/A: %d of %d rollouts rolled back (%.0f %%), %d promoted", rolledBack, n, 100*float64(rolledBack)/n, promoted)
	if rolledBack > 1 {
		t.Errorf("%d of %d identical canaries rolled back, want at most 1 (5 %%)", rolledBack, n)
	}
	if promoted+rolledBack < n-1 {
		t.Errorf("only %d of %d rollouts ended", promoted+rolledBack, n)
	}
}

// TestRolloutAcrossReloadsAndRestarts checks what becomes of a rollout's
// state: a reload that keeps its definition keeps the rollout itself; a
// restart from the same file restores it from the state file next to the
// configuration; a reload that changes the definition starts it anew, and
// the log says why.
func TestRolloutAcrossReloadsAndRestarts(t *testing.T) {
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	dir := t.TempDir()
	file := filepath.Join(dir, "penstock.yaml")
	write := func(window string) {
		t.Helper()
		text := lines(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams: [{name: v1, endpoints: [{address: %s}]}, {name: v2, endpoints: [{address: %s}]}]
access_log: {enabled: false}
routes:
  - name: predict
    match: {path: /}
    upstream: v1
    split:
      arms: [{name: stable, upstream: v1, weight: 100}, {name: canary, upstream: v2}]
      rollout: {steps: [{weight: 10}, {weight: 50}, {weight: 100}], window: %s, slot: 1s}
`, up, up, window)
		if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	load := func() *config.Config {
		t.Helper()
		cfg, err := config.Load(file)
		if err != nil {
			t.Fatal(err)
		}
		cfg.SetDefaults()
		return cfg
	}
	var logs strings.Builder
	var logMu sync.Mutex
	start := func() *server.Server {
		t.Helper()
		log := slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logs}, nil))
		g, err := server.New(load(), server.Options{Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		if err := g.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		return g
	}
	stop := func(g *server.Server) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		g.Shutdown(ctx)
	}

	write("1h")
	g := start()
	first := rolloutOf(g, "predict")
	if err := first.Act("pause", "before the reload"); err != nil {
		t.Fatal(err)
	}
	if err := g.Reload(load()); err != nil {
		t.Fatal(err)
	}
	if c := rolloutOf(g, "predict"); c != first {
		t.Fatalf("a reload that kept the definition replaced the rollout")
	}
	stop(g)

	g = start()
	st := rolloutOf(g, "predict").Rollout().Snapshot()
	if st.Phase != rollout.Paused || st.History[len(st.History)-1].Kind != rollout.EventRestored {
		t.Fatalf("after a restart: %s, %s; want paused, restored from %s.rollout.predict.json", st.Phase, historyKinds(st), file)
	}
	write("30m")
	if err := g.Reload(load()); err != nil {
		t.Fatal(err)
	}
	st = rolloutOf(g, "predict").Rollout().Snapshot()
	if st.Phase != rollout.Progressing || st.Weight != 10 || len(st.History) != 1 {
		t.Errorf("after a reload that changed the definition: %s at %d %%, %s; want started anew", st.Phase, st.Weight, historyKinds(st))
	}
	stop(g)
	logMu.Lock()
	defer logMu.Unlock()
	if !strings.Contains(logs.String(), "rollout state not restored: definition changed") {
		t.Errorf("no log line says the rollout started anew:\n%s", logs.String())
	}
}

// lockedWriter serializes writes to w.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
