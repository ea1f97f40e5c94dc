package server_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/loadtest"
	"github.com/penstock-dev/penstock/internal/loadtest/runlog"
)

// faultUpstreamEnv makes the test binary an upstream process instead of a
// test run: "MODE ADDRESS", where MODE is ok, slow, flaky or model (see
// runModelUpstream).
const faultUpstreamEnv = "PENSTOCK_TEST_FAULT_UPSTREAM"

func TestMain(m *testing.M) {
	if spec := os.Getenv(faultUpstreamEnv); spec != "" {
		mode, addr, _ := strings.Cut(spec, " ")
		os.Exit(runFaultUpstream(mode, addr))
	}
	os.Exit(m.Run())
}

// runFaultUpstream serves a small model-like answer on addr until killed:
// "ok" answers at once, "slow" after 2 s, "flaky" answers 503 to half the
// requests at random. It prints "ready" once it listens.
func runFaultUpstream(mode, addr string) int {
	if mode == "model" {
		return runModelUpstream(addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("ready")
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		switch {
		case mode == "slow":
			time.Sleep(2 * time.Second)
		case mode == "flaky" && rand.IntN(2) == 0:
			http.Error(w, "overloaded", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"predictions":[[0.1,0.9]]}`)
	})
	return exitCode(http.Serve(ln, h))
}

func exitCode(err error) int {
	if err != nil {
		return 1
	}
	return 0
}

// upstreamProcess is one upstream running as a process of its own, so that
// it can be killed and restarted like a real server.
type upstreamProcess struct {
	t    *testing.T
	mode string
	addr string

	mu  sync.Mutex
	cmd *exec.Cmd
}

// startUpstreamProcess starts an upstream process on a free loopback port.
func startUpstreamProcess(t *testing.T, mode string) *upstreamProcess {
	t.Helper()
	p := &upstreamProcess{t: t, mode: mode, addr: closedAddr(t)}
	p.start()
	t.Cleanup(p.kill)
	return p
}

// start runs the process on p.addr and waits until it listens.
func (p *upstreamProcess) start() {
	p.t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), faultUpstreamEnv+"="+p.mode+" "+p.addr)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		p.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		cmd.Process.Kill()
		cmd.Wait()
		p.t.Fatalf("upstream %s on %s did not start: %q %v", p.mode, p.addr, line, err)
	}
	p.mu.Lock()
	p.cmd = cmd
	p.mu.Unlock()
}

// kill ends the process (SIGKILL, as a crash would) and reaps it.
func (p *upstreamProcess) kill() {
	p.mu.Lock()
	cmd := p.cmd
	p.cmd = nil
	p.mu.Unlock()
	if cmd != nil {
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
	}
}

// faultLoad drives url open loop at rate for d with a client that never
// retries, and returns the run's result.
func faultLoad(ctx context.Context, url string, rate float64, d time.Duration) (*loadtest.Result, error) {
	return loadtest.Run(ctx, loadtest.Options{
		URLs:        []string{url},
		Proto:       loadtest.ProtoH1,
		Method:      "POST",
		Body:        []byte(`{"instances":[[1,2,3]]}`),
		Header:      http.Header{"Content-Type": {"application/json"}},
		Rate:        rate,
		Connections: 32,
		Timeout:     10 * time.Second,
		Duration:    d,
	})
}

// failedShare is the share of a run's requests that did not get a 2xx.
func failedShare(r *loadtest.Result) float64 {
	if r.Requests == 0 {
		return 1
	}
	ok := int64(0)
	for code, n := range r.Status {
		if strings.HasPrefix(code, "2") {
			ok += n
		}
	}
	return 1 - float64(ok)/float64(r.Requests)
}

func p99(r *loadtest.Result) float64 { return r.Phases[runlog.Total].P99 }

// TestFaultyPoolWithAndWithoutProtection is the traffic control fault
// test: a pool of three upstream processes, one slow (2 s per answer), one
// answering 503 to half its requests, one killed and restarted, driven by
// a client that never retries. Two gateways serve the same pool at the
// same time, one with no protection and one with active health checks,
// outlier ejection, circuit breakers, retries and a retry budget; both see
// the same faults at the same moments. The protected one must fail fewer
// requests and have the lower P99; the figures are logged.
func TestFaultyPoolWithAndWithoutProtection(t *testing.T) {
	slow := startUpstreamProcess(t, "slow")
	flaky := startUpstreamProcess(t, "flaky")
	crashy := startUpstreamProcess(t, "ok")
	pool := lines(`    endpoints: [{address: %q}, {address: %q}, {address: %q}]`, slow.addr, flaky.addr, crashy.addr)
	unprotected := startGateway(t, lines(`
listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams:
  - name: models
%s
routes:
  - {name: predict, match: {path: /predict}, upstream: models}
access_log: {enabled: false}
`, pool))
	protected := startGateway(t, lines(`
listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams:
  - name: models
%s
    health_check: {type: http, path: /, interval: 500ms, timeout: 300ms, rise: 2, fall: 3}
    outlier_detection: {interval: 1s, consecutive_5xx: 5, consecutive_gateway_failure: 3, base_ejection_time: 5s, max_ejection_percent: 66}
    circuit_breaker: {window: 5s, min_requests: 10, error_ratio: 0.9, slow_threshold: 500ms, slow_ratio: 0.5, open_duration: 3s}
routes:
  - name: predict
    match: {path: /predict}
    upstream: models
    retry:
      attempts: 3
      on: [connect_failure, reset, timeout, 502, 503, 504]
      methods: [GET, POST]
      per_try_timeout: 400ms
      backoff: {base: 5ms, max: 50ms}
access_log: {enabled: false}
`, pool))

	const (
		rate = 60.0
		run  = 16 * time.Second
	)
	ctx, cancel := context.WithTimeout(context.Background(), run+30*time.Second)
	defer cancel()
	type outcome struct {
		res *loadtest.Result
		err error
	}
	results := make([]outcome, 2)
	var wg sync.WaitGroup
	for i, g := range []string{baseURL(unprotected, "main"), baseURL(protected, "main")} {
		wg.Go(func() {
			res, err := faultLoad(ctx, g+"/predict", rate, run)
			results[i] = outcome{res, err}
		})
	}
	// The third endpoint crashes after 4 s and is back 5 s later, on the
	// same port.
	time.Sleep(4 * time.Second)
	crashy.kill()
	time.Sleep(5 * time.Second)
	crashy.start()
	wg.Wait()

	names := []string{"without protection", "with protection"}
	for i, r := range results {
		if r.err != nil {
			t.Fatalf("load %s: %v", names[i], r.err)
		}
		t.Logf("%-20s requests %5d  failed %5.1f%%  P50 %7.1f ms  P99 %7.1f ms  statuses %v errors %v",
			names[i], r.res.Requests, 100*failedShare(r.res), r.res.Phases[runlog.Total].P50, p99(r.res),
			r.res.Status, r.res.Errors)
	}
	off, on := results[0].res, results[1].res
	if failedShare(on) >= failedShare(off) {
		t.Errorf("protection failed %.1f%% of requests, no better than %.1f%% without it",
			100*failedShare(on), 100*failedShare(off))
	}
	if p99(on) >= p99(off) {
		t.Errorf("protection's P99 %.0f ms is no better than %.0f ms without it", p99(on), p99(off))
	}
}
