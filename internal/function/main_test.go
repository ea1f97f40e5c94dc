package function_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/engine/stdhttp"
	"github.com/penstock-dev/penstock/internal/function"
)

// The test functions, built once by TestMain: lambdaFn with the official
// aws-lambda-go runtime client, httpFn as a plain HTTP server.
var lambdaFn, httpFn string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "penstock-function-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	lambdaFn = filepath.Join(dir, "lambdafn")
	httpFn = filepath.Join(dir, "httpfn")
	for out, pkg := range map[string]string{lambdaFn: "./testdata/lambdafn", httpFn: "./testdata/httpfn"} {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n", pkg, err)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// logBuffer collects log lines for assertions.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitFor polls cond for up to 15 s (a loaded machine starts processes
// slowly), failing the test with what if it never holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fixture is one function served over loopback HTTP by the net/http engine
// adapter, with its own log and metrics registry.
type fixture struct {
	fn  *function.Function
	srv *httptest.Server
	log *logBuffer
	reg *prometheus.Registry
	m   *function.Metrics
}

// serve starts fc (defaults applied) behind a loopback server.
func serve(t *testing.T, fc config.Function) *fixture {
	t.Helper()
	c := config.Config{Functions: []config.Function{fc}}
	c.SetDefaults()
	fx := &fixture{log: &logBuffer{}, reg: prometheus.NewRegistry()}
	fx.m = function.NewMetrics(fx.reg)
	log := slog.New(slog.NewJSONHandler(fx.log, nil))
	fn, err := function.New(c.Functions[0], function.Options{Logger: log, Metrics: fx.m})
	if err != nil {
		t.Fatal(err)
	}
	fn.Start()
	fx.fn = fn
	fx.srv = httptest.NewServer(&stdhttp.Adapter{Handler: fn})
	t.Cleanup(func() {
		fx.srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		fn.Close(ctx)
		if t.Failed() {
			var keep []string
			for line := range strings.SplitSeq(fx.log.String(), "\n") {
				if !strings.Contains(line, `"msg":"function output"`) {
					keep = append(keep, line)
				}
			}
			t.Logf("log (without the function's output):\n%s", strings.Join(keep, "\n"))
		}
	})
	return fx
}

// get requests path and returns the status, header and body.
func (fx *fixture) get(t *testing.T, path string) (int, http.Header, string) {
	t.Helper()
	resp, err := http.Get(fx.srv.URL + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", path, err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

var pidRE = regexp.MustCompile(`pid=(\d+)`)

// pid returns the instance pid a /hello response names.
func pid(t *testing.T, body string) string {
	t.Helper()
	m := pidRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no pid in %q", body)
	}
	return m[1]
}

func (fx *fixture) counter(outcome string) float64 {
	return testutil.ToFloat64(fx.invocations().WithLabelValues(fx.fn.Name(), outcome))
}

func (fx *fixture) invocations() *prometheus.CounterVec {
	return function.InvocationsForTest(fx.m)
}

func (fx *fixture) coldStarts() float64 {
	return testutil.ToFloat64(function.ColdStartsForTest(fx.m).WithLabelValues(fx.fn.Name()))
}

func lambdaConfig(name string) config.Function {
	return config.Function{Name: name, Command: []string{lambdaFn}}
}

func contains(t *testing.T, what, s, sub string) {
	t.Helper()
	if !strings.Contains(s, sub) {
		t.Errorf("%s: %q does not contain %q", what, s, sub)
	}
}
