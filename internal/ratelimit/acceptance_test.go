package ratelimit_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/ratelimit"
	"github.com/penstock-dev/penstock/internal/server"
)

// The shared budget of the acceptance test: 1,000 requests per 10 s for
// one key, across three gateways.
const (
	budget   = 1000
	window   = 10 * time.Second
	gateways = 3
	// redisTimeout is the limit's redis.timeout. It is far above the 2ms
	// default because this test runs under the race detector on a busy
	// 2-core machine, where a healthy Redis answer was seen to take 300 ms:
	// past the budget the decision falls back to the local share, which
	// cannot know what Redis admitted meanwhile, and the window with Redis
	// up would no longer be exact. The mechanism under test is the same at
	// any budget. slack is what a request may take beyond it there (the
	// proxying, a starved scheduler: 2.45 s in all was seen with the load
	// average at 15). Waiting for Redis itself would take up to the 10 s it
	// is stopped for, far beyond the two.
	redisTimeout = time.Second
	slack        = 3 * time.Second
)

// gatewayEnv makes the test binary a penstock gateway process instead of a
// test run: the value is its configuration file. The process prints its
// listener's address, serves until its standard input closes, then shuts
// down.
const gatewayEnv = "PENSTOCK_TEST_GATEWAY"

func TestMain(m *testing.M) {
	if path := os.Getenv(gatewayEnv); path != "" {
		os.Exit(runGateway(path))
	}
	if err := ratelimit.StartSharedRedis(); err != nil {
		fmt.Fprintln(os.Stderr, "ratelimit tests:", err)
		os.Exit(1)
	}
	code := m.Run()
	ratelimit.StopSharedRedis()
	os.Exit(code)
}

// runGateway serves the configuration file at path as a gateway process
// (see gatewayEnv).
func runGateway(path string) int {
	cfg, err := config.Load(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cfg.Shutdown.IdleGrace = config.Duration(100 * time.Millisecond)
	g, err := server.New(cfg, server.Options{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))})
	if err == nil {
		err = g.Start(context.Background())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(g.Addr("main"))
	io.Copy(io.Discard, os.Stdin)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	g.Shutdown(ctx)
	return 0
}

// startGatewayProcess runs a gateway process serving the configuration in
// yamlText and returns its listener's address; it ends with the test.
func startGatewayProcess(t *testing.T, yamlText string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "penstock.yaml")
	if err := os.WriteFile(path, []byte(yamlText), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), gatewayEnv+"="+path)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close() // asks for a graceful shutdown
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("gateway process did not start: %v", err)
	}
	return strings.TrimSpace(addr)
}

// sample is one request of the load.
type sample struct {
	start, end time.Time
	seen       time.Time // when the upstream got it (admitted requests)
	status     int
}

// TestThreeGatewaysShareOneRedisBudget is the acceptance test of global
// limits: three penstock gateway processes on loopback share one Redis budget of
// 1,000 requests per 10 s for one key, under 3× that load over 30 s (three
// windows, aligned to the Redis clock's 10 s windows). Redis is stopped
// (SIGSTOP) for 10 s, from the first window's last second to the second
// window's last (so that it is back when the third starts): no request may
// wait for it longer than the decision budget (plus
// slack for a loaded machine), the local fallback (a third of the budget on
// each gateway) applies, and in the last window, with Redis back, the
// limit is exact again. Admitted requests are counted per window.
func TestThreeGatewaysShareOneRedisBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 30-40 s")
	}
	rp := ratelimit.SharedRedis()
	if rp == nil {
		t.Skip("redis-server is not installed (scripts/test installs it)")
	}
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Seen", strconv.FormatInt(time.Now().UnixNano(), 10))
		w.Write([]byte("ok\n"))
	}))
	defer upstream.Close()

	prefix := fmt.Sprintf("accept:%d:%d:", os.Getpid(), time.Now().UnixNano())
	yaml := fmt.Sprintf(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams: [{name: app, endpoints: [{address: %q}]}]
routes:
  - {name: predict, match: {path_prefix: /}, upstream: app, limits: [shared]}
  - {name: warm, match: {path_prefix: /warm}, upstream: app, limits: [warm]}
access_log: {enabled: false}
limits:
  - name: shared
    algorithm: sliding_window
    count: %d
    window: %s
    key: {from: constant}
    redis: {address: %[4]q, prefix: %[5]q, timeout: %[6]s, replicas: %[7]d, on_failure: local}
  - name: warm
    algorithm: sliding_window
    count: 1000000
    window: 1s
    key: {from: constant}
    redis: {address: %[4]q, prefix: "%[5]swarm:", timeout: 1s}
`, upstream.Listener.Addr(), budget, window, rp.Addr, prefix, redisTimeout, gateways)
	var urls []string
	for range gateways {
		urls = append(urls, "http://"+startGatewayProcess(t, yaml)+"/v1/predict")
	}

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	// Warm up every connection the load will use (client to gateway,
	// gateway to upstream and to Redis) through a route with a limit of its
	// own, so that the measured windows see a running system.
	var warm sync.WaitGroup
	for _, url := range urls {
		for range 32 {
			warm.Add(1)
			go func() {
				defer warm.Done()
				for range 10 {
					if resp, err := client.Get(strings.Replace(url, "/v1/predict", "/warm", 1)); err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
				}
			}()
		}
	}
	warm.Wait()

	// Start on a window boundary (Redis's clock is this machine's), with
	// a margin so the first requests are inside the first window.
	t0 := time.Now().Truncate(window).Add(window)
	time.Sleep(time.Until(t0))
	stop, resume := t0.Add(window-time.Second), t0.Add(2*window-time.Second)
	end := t0.Add(3 * window)

	var (
		mu      sync.Mutex
		samples []sample
		wg      sync.WaitGroup
	)
	// Each gateway gets a third of 3× the budget, paced evenly: one
	// request every 10 ms, at most 128 in flight. A request whose slot comes
	// while 128 are in flight (Redis stopped, every decision waiting its
	// budget) is not sent, rather than sent late: a burst of late requests
	// at the next window's start would be decided in one window and seen
	// in the next.
	interval := window / (3 * budget / gateways)
	for _, url := range urls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem := make(chan struct{}, 128)
			var inner sync.WaitGroup
			for next := t0; next.Before(end); next = next.Add(interval) {
				time.Sleep(time.Until(next))
				select {
				case sem <- struct{}{}:
				default:
					continue
				}
				inner.Add(1)
				go func() {
					defer func() { <-sem; inner.Done() }()
					s := sample{start: time.Now()}
					resp, err := client.Get(url)
					if err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						s.status = resp.StatusCode
						if n, err := strconv.ParseInt(resp.Header.Get("X-Seen"), 10, 64); err == nil {
							s.seen = time.Unix(0, n)
						}
					}
					s.end = time.Now()
					mu.Lock()
					samples = append(samples, s)
					mu.Unlock()
				}()
			}
			inner.Wait()
		}()
	}
	// Stop Redis for 10 s.
	time.Sleep(time.Until(stop))
	if err := rp.Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(resume))
	if err := rp.Cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	// Count per phase. An admitted request is placed when the upstream
	// got it, just after its decision; a refused one at the middle of its
	// exchange. (On a loaded machine an exchange can take a second: its
	// start or end could be in another window than its decision.)
	type phase struct {
		name     string
		from, to time.Time
		sent     int
		admitted int
		other    int // neither 200 nor 429
		lat      []time.Duration
	}
	phases := []*phase{
		{name: "window 1, Redis stopped in its last 1 s", from: t0, to: t0.Add(window)},
		{name: "window 2, Redis stopped", from: t0.Add(window), to: resume},
		{name: "window 2, Redis back (last 1 s)", from: resume, to: t0.Add(2 * window)},
		{name: "window 3, Redis up", from: t0.Add(2 * window), to: end.Add(time.Minute)},
	}
	for _, s := range samples {
		mid := s.start.Add(s.end.Sub(s.start) / 2)
		if !s.seen.IsZero() {
			mid = s.seen
		}
		for _, p := range phases {
			if !mid.Before(p.from) && mid.Before(p.to) {
				p.sent++
				switch s.status {
				case 200:
					p.admitted++
				case 429:
				default:
					p.other++
				}
				p.lat = append(p.lat, s.end.Sub(s.start))
			}
		}
	}
	var table strings.Builder
	fmt.Fprintf(&table, "\n%-42s %6s %9s %7s %9s %9s %9s\n", "phase", "sent", "admitted", "other", "p50", "p99", "max")
	for _, p := range phases {
		slices.Sort(p.lat)
		pct := func(q int) time.Duration {
			if len(p.lat) == 0 {
				return 0
			}
			return p.lat[min(len(p.lat)-1, len(p.lat)*q/100)]
		}
		fmt.Fprintf(&table, "%-42s %6d %9d %7d %9s %9s %9s\n", p.name, p.sent, p.admitted, p.other,
			pct(50).Round(10*time.Microsecond), pct(99).Round(10*time.Microsecond), pct(100).Round(10*time.Microsecond))
	}
	t.Logf("budget %d per %s shared by %d gateways, Redis timeout %s; latencies are the clients' (whole exchange):%s", budget, window, gateways, redisTimeout, table.String())

	within := func(name string, got, lo, hi int) {
		if got < lo || got > hi {
			t.Errorf("%s: admitted %d, want %d..%d", name, got, lo, hi)
		}
	}
	// With Redis, each window admits the budget within 1 % (the first
	// window's budget is spent long before its last second, and the
	// fallback's share counts what Redis admitted, so it stays exact).
	within(phases[0].name, phases[0].admitted, budget*99/100, budget*101/100)
	within(phases[3].name, phases[3].admitted, budget*99/100, budget*101/100)
	// Without it, each gateway admits its third: about the budget in
	// all, never more than 1 % over it.
	within(phases[1].name, phases[1].admitted, budget/2, budget*101/100)
	for _, p := range phases {
		if p.other > 0 {
			t.Errorf("%s: %d requests failed otherwise than 200 or 429", p.name, p.other)
		}
	}
	// No request waited on the stopped Redis beyond the decision budget;
	// the slack covers the proxying itself on a loaded machine.
	if worst := max(phases[0].lat[len(phases[0].lat)-1], phases[1].lat[len(phases[1].lat)-1]); worst > redisTimeout+slack {
		t.Errorf("a request waited %s while Redis was stopped; the budget is %s (+%s slack)", worst, redisTimeout, slack)
	}
}
