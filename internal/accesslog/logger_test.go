package accesslog

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

func TestRateCap(t *testing.T) {
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clock := newFakeClock(base)
	var out sink
	l, reg := newTestLogger(t, `
access_log:
  max_lines_per_second: 10
  sampling: [{name: health, match: {path_prefixes: [/healthz]}, drop: true}]`, &out, clock.now)

	steps := []struct {
		name       string
		at         time.Duration // since base
		n          int
		health     int // lines sampled out first: they must not use the cap
		wantKept   int
		wantCapped int
	}{
		{"a burst is cut at the cap", 0, 25, 0, 10, 15},
		{"the rest of the second stays capped", 999 * time.Millisecond, 5, 0, 0, 5},
		{"the next second starts afresh", time.Second, 3, 0, 3, 0},
		{"within that second", 1500 * time.Millisecond, 10, 0, 7, 3},
		{"after a gap", 10 * time.Second, 10, 0, 10, 0},
		{"sampled-out lines do not count against the cap", 11 * time.Second, 10, 50, 10, 0},
	}
	kept := 0
	capped := 0
	n := 0
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			clock.set(base.Add(st.at))
			for range st.health {
				l.Log(&Record{Path: "/healthz", RequestID: "health"})
			}
			before := linesTotal(t, reg, resultRateLimited)
			for range st.n {
				l.Log(&Record{Path: "/v1/chat", RequestID: reqID(n)})
				n++
			}
			if got := linesTotal(t, reg, resultRateLimited) - before; got != float64(st.wantCapped) {
				t.Errorf("capped %v lines, want %d", got, st.wantCapped)
			}
			kept += st.wantKept
			capped += st.wantCapped
		})
	}
	l.Close()
	if got := len(out.lines()); got != kept {
		t.Errorf("%d lines written, want %d", got, kept)
	}
	if got := linesTotal(t, reg, resultRateLimited); got != float64(capped) {
		t.Errorf("dropped_rate_limit = %v, want %d", got, capped)
	}
}

func TestRateCapConcurrent(t *testing.T) {
	clock := newFakeClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	var out sink
	l, reg := newTestLogger(t, "access_log: {max_lines_per_second: 50}", &out, clock.now)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				l.Log(&Record{Path: "/"})
			}
		})
	}
	wg.Wait()
	l.Close()
	if got := len(out.lines()); got != 50 {
		t.Errorf("%d lines in one second, cap 50", got)
	}
	if got := linesTotal(t, reg, resultRateLimited); got != 750 {
		t.Errorf("dropped_rate_limit = %v, want 750", got)
	}
}

func TestReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	cfg := parseConfig(t, "access_log: {output: "+path+"}")
	reg := prometheus.NewRegistry()
	l, err := New(cfg, reg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := range 3 {
		l.Log(&Record{RequestID: fmt.Sprintf("before-%d", i)})
	}
	// Rotation as logrotate does it: rename, then signal.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		l.Log(&Record{RequestID: fmt.Sprintf("after-%d", i)})
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		path string
		want []string
	}{
		{path + ".1", []string{"before-0", "before-1", "before-2"}},
		{path, []string{"after-0", "after-1"}},
	} {
		data, err := os.ReadFile(f.path)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
			got = append(got, requestID(t, line))
		}
		if !slices.Equal(got, f.want) {
			t.Errorf("%s has %v, want %v", filepath.Base(f.path), got, f.want)
		}
	}
	if err := l.Reopen(); err == nil {
		t.Error("Reopen after Close succeeded")
	}
}

func TestReopenConcurrentWithLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	reg := prometheus.NewRegistry()
	l, err := New(parseConfig(t, "access_log: {output: "+path+"}"), reg)
	if err != nil {
		t.Fatal(err)
	}
	const goroutines, perGoroutine = 4, 3000
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range perGoroutine {
				l.Log(&Record{RequestID: "x"})
			}
		})
	}
	for i := range 5 {
		os.Rename(path, fmt.Sprintf("%s.%d", path, i))
		if err := l.Reopen(); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// Every line is in one of the files, whole, or counted as dropped.
	files, _ := filepath.Glob(path + "*")
	lines := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
			if line != "" {
				requestID(t, line)
				lines++
			}
		}
	}
	written, dropped := linesTotal(t, reg, resultWritten), linesTotal(t, reg, resultBufferFull)
	if float64(lines) != written || written+dropped != goroutines*perGoroutine {
		t.Errorf("%d lines in %d files, written %v, dropped %v, logged %d", lines, len(files), written, dropped, goroutines*perGoroutine)
	}
}

func TestReopenFailureKeepsTheOldFile(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "logs")
	os.Mkdir(sub, 0o755)
	path := filepath.Join(sub, "access.log")
	l, err := New(parseConfig(t, "access_log: {output: "+path+"}"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	os.Rename(sub, filepath.Join(dir, "moved"))
	if err := l.Reopen(); err == nil {
		t.Fatal("Reopen succeeded without its directory")
	}
	l.Log(&Record{RequestID: "still-logged"})
	l.Close()
	data, _ := os.ReadFile(filepath.Join(dir, "moved", "access.log"))
	if !strings.Contains(string(data), "still-logged") {
		t.Errorf("line after a failed reopen lost; file has %q", data)
	}
}

func TestReopenNoopForStreams(t *testing.T) {
	for _, out := range []string{"stdout", "stderr"} {
		l, err := New(parseConfig(t, "access_log: {output: "+out+"}"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Reopen(); err != nil {
			t.Errorf("%s: %v", out, err)
		}
		if err := l.Close(); err != nil {
			t.Errorf("%s: %v", out, err)
		}
	}
}

// blockingWriter blocks every Write until release is closed, as a stuck
// disk or a full pipe does.
type blockingWriter struct {
	entered chan struct{} // closed by the first Write
	once    sync.Once
	release chan struct{}
	sink
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.entered) })
	<-w.release
	return w.sink.Write(p)
}

func TestBlockedWriterDropsInsteadOfBlocking(t *testing.T) {
	w := &blockingWriter{entered: make(chan struct{}), release: make(chan struct{})}
	l, reg := newTestLogger(t, "access_log: {buffer: 4}", w, nil)
	l.Log(&Record{RequestID: "first"})
	<-w.entered // the writer goroutine is now stuck in Write

	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		for i := range 100 {
			l.Log(&Record{RequestID: reqID(i)})
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Log blocked behind a stuck writer")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("100 Log calls took %v with the writer stuck", d)
	}
	// The queue holds 4; the other 96 are dropped and counted.
	if got := linesTotal(t, reg, resultBufferFull); got != 96 {
		t.Errorf("dropped_buffer_full = %v, want 96", got)
	}
	close(w.release)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, line := range w.lines() {
		got = append(got, requestID(t, line))
	}
	if want := []string{"first", "req-0", "req-1", "req-2", "req-3"}; !slices.Equal(got, want) {
		t.Errorf("written %v, want %v", got, want)
	}
	if got := linesTotal(t, reg, resultWritten); got != 5 {
		t.Errorf("written = %v, want 5", got)
	}
}

// slowWriter delays its first write, so that lines are still queued when
// Close is called.
type slowWriter struct {
	once sync.Once
	sink
}

func (w *slowWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { time.Sleep(50 * time.Millisecond) })
	return w.sink.Write(p)
}

func TestCloseFlushesQueuedLines(t *testing.T) {
	var w slowWriter
	l, reg := newTestLogger(t, "access_log: {buffer: 5000}", &w, nil)
	for i := range 3000 {
		l.Log(&Record{RequestID: reqID(i), Error: strings.Repeat("x", i%100)})
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	lines := w.lines()
	if len(lines) != 3000 {
		t.Fatalf("%d lines after Close, want 3000", len(lines))
	}
	for i, line := range lines {
		if id := requestID(t, line); id != reqID(i) {
			t.Fatalf("line %d is %s", i, id)
		}
	}
	if got := linesTotal(t, reg, resultWritten); got != 3000 {
		t.Errorf("written = %v", got)
	}
	l.Log(&Record{RequestID: "after close"})
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if n := len(w.lines()); n != 3000 {
		t.Errorf("Log after Close wrote a line")
	}
}

type failingWriter struct{ fail bool }

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.fail {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

func TestWriteErrorsAreCountedAndRecovered(t *testing.T) {
	w := &failingWriter{fail: true}
	l, reg := newTestLogger(t, "access_log: {}", w, nil)
	for range 3 {
		l.Log(&Record{})
	}
	l.Reopen() // a round trip through the writer goroutine: the 3 lines are flushed
	if got := counterValue(t, reg, "penstock_access_log_write_errors_total"); got != 3 {
		t.Errorf("write_errors_total = %v, want 3", got)
	}
	w.fail = false // safe: the writer goroutine is idle, and Reopen synchronised with it
	l.Log(&Record{})
	l.Close()
	if got := linesTotal(t, reg, resultWritten); got != 1 {
		t.Errorf("written = %v after the output recovered, want 1", got)
	}
}

func TestWithRules(t *testing.T) {
	var out sink
	cfgText := func(access string) string {
		return "routes: [{name: users}]\naccess_log: " + access
	}
	l, _ := newTestLogger(t, cfgText("{}"), &out, nil)
	rec := withRoute(&Record{Method: "GET", Path: "/v1/users/ann", Query: "q=1", RequestID: "r"})
	logPath := func() (string, bool) {
		before := len(out.lines())
		l.Log(rec)
		l.Reopen() // wait for the writer
		lines := out.lines()
		if len(lines) == before {
			return "", false
		}
		fields, _ := decodeJSONLine(t, lines[len(lines)-1])
		return fields["path"].(string), true
	}
	steps := []struct {
		name     string
		access   string
		wantErr  bool
		wantPath string
		wantKept bool
	}{
		{"initially full and kept", "", false, "/v1/users/ann?q=1", true},
		{"redacted", "{path: redacted}", false, "/v1/users/:id", true},
		{"a drop rule", "{path: redacted, sampling: [{drop: true}]}", false, "", false},
		{"an invalid config keeps the current rules", "{sampling: [{keep: true, drop: true}]}", true, "", false},
		{"disabled", "{enabled: false}", false, "", false},
		{"enabled again, no_query", "{path: no_query}", false, "/v1/users/ann", true},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if st.access != "" {
				next, err := l.WithRules(parseConfig(t, cfgText(st.access)))
				if (err != nil) != st.wantErr {
					t.Fatalf("WithRules: %v", err)
				}
				if err == nil {
					if !next.SameOutput(l) {
						t.Fatal("WithRules made a Logger with an output of its own")
					}
					l = next
				}
			}
			path, kept := logPath()
			if kept != st.wantKept || path != st.wantPath {
				t.Errorf("kept %v path %q, want %v %q", kept, path, st.wantKept, st.wantPath)
			}
		})
	}
}

// Loggers made by WithRules share one output and may log concurrently: a
// reload's requests and those still running on the previous snapshot.
func TestWithRulesConcurrentWithLog(t *testing.T) {
	l, _ := newTestLogger(t, "access_log: {}", io.Discard, nil)
	cfgs := []*config.Config{
		parseConfig(t, "access_log: {sampling: [{drop: true}]}"),
		parseConfig(t, "access_log: {path: redacted, sampling: [{keep_percent: 50}]}"),
		parseConfig(t, "routes: [{name: users, access_log: {sampling: [{keep: true}]}}]\naccess_log: {}"),
	}
	var wg sync.WaitGroup
	for i := range 300 {
		next, err := l.WithRules(cfgs[i%len(cfgs)])
		if err != nil {
			t.Fatal(err)
		}
		if i%75 == 0 {
			wg.Go(func() {
				r := withRoute(&Record{Method: "GET", Path: "/v1/users/u"})
				for range 2000 {
					next.Log(r)
				}
			})
		}
	}
	wg.Wait()
}

func TestDisabled(t *testing.T) {
	cfg := parseConfig(t, "access_log: {enabled: false, output: /nonexistent/dir/access.log}")
	l, err := New(cfg, prometheus.NewRegistry())
	if err != nil || l != nil {
		t.Fatalf("New = %v, %v; want nil, nil", l, err)
	}
	// Every method is safe on the nil Logger.
	l.Log(&Record{})
	if next, err := l.WithRules(cfg); next != nil || err != nil {
		t.Errorf("WithRules = %v, %v; want nil, nil", next, err)
	}
	if err := l.Reopen(); err != nil {
		t.Error(err)
	}
	if err := l.Close(); err != nil {
		t.Error(err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	ptr := func(f float64) *float64 { return &f }
	tests := []struct {
		name    string
		modify  func(*config.Config)
		wantErr string
	}{
		{"format", func(c *config.Config) { c.AccessLog.Format = "xml" }, "access_log.format"},
		{"path", func(c *config.Config) { c.AccessLog.Path = "hashed" }, "access_log.path"},
		{"negative cap", func(c *config.Config) { c.AccessLog.MaxLinesPerSecond = -1 }, "access_log.max_lines_per_second"},
		{"two actions", func(c *config.Config) {
			c.AccessLog.Sampling = []config.SamplingRule{{Keep: true, Drop: true}}
		}, "access_log.sampling[0]"},
		{"no action", func(c *config.Config) {
			c.AccessLog.Sampling = []config.SamplingRule{{}}
		}, "access_log.sampling[0]"},
		{"status", func(c *config.Config) {
			c.AccessLog.Sampling = []config.SamplingRule{{Drop: true, Match: config.SamplingMatch{Status: []string{"6xx"}}}}
		}, "access_log.sampling[0].match.status[0]"},
		{"percent", func(c *config.Config) {
			c.AccessLog.Sampling = []config.SamplingRule{{KeepPercent: ptr(101)}}
		}, "access_log.sampling[0].keep_percent"},
		{"keep_by", func(c *config.Config) {
			c.AccessLog.Sampling = []config.SamplingRule{{KeepPercent: ptr(1), KeepBy: "param:"}}
		}, "access_log.sampling[0].keep_by"},
		{"route rule", func(c *config.Config) {
			c.Routes = []config.Route{{Name: "a"}, {Name: "b", AccessLog: &config.RouteAccessLog{Sampling: []config.SamplingRule{{Match: config.SamplingMatch{Extensions: []string{"js"}}, Drop: true}}}}}
		}, "routes[1].access_log.sampling[0].match.extensions[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "access.log")
			cfg := &config.Config{AccessLog: config.AccessLog{Output: out}}
			tt.modify(cfg)
			l, err := New(cfg, nil)
			if err == nil {
				l.Close()
				t.Fatal("no error")
			}
			if !strings.HasPrefix(err.Error(), tt.wantErr+":") {
				t.Errorf("error %q does not start with %s:", err, tt.wantErr)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("a rejected config created the log file")
			}
		})
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := parseConfig(t, "access_log: {sampling: [{name: health, match: {path_prefixes: [/healthz]}, drop: true}]}")
	l, err := NewWithWriter(cfg, io.Discard, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// Every result and every rule's decisions exist before any request.
	for _, result := range []string{"written", "dropped_buffer_full", "dropped_rate_limit", "sampled_out"} {
		if got := linesTotal(t, reg, result); got != 0 {
			t.Errorf("%s = %v", result, got)
		}
	}
	for _, d := range []string{"keep", "drop"} {
		counterValue(t, reg, "penstock_access_log_sampled_total", "rule", "health", "decision", d)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	// A second Logger on the same registry (a restart in one process)
	// shares the series instead of failing.
	l2, err := NewWithWriter(cfg, io.Discard, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	l2.Log(&Record{Path: "/healthz"})
	l2.Close()
	if got := linesTotal(t, reg, resultSampledOut); got != 1 {
		t.Errorf("sampled_out = %v after the second Logger", got)
	}
}

// TestLogDoesNotAllocate holds Log to zero allocations in steady state, for
// every outcome.
func TestLogDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	rec := fullRecord()
	clock := newFakeClock(time.Now())
	tests := []struct {
		name   string
		config string
		w      io.Writer
		result string // what became of (nearly) every line
	}{
		{"kept json", "access_log: {sampling: [{match: {status: [5xx]}, keep: true}]}", io.Discard, resultWritten},
		{"kept logfmt", "access_log: {format: logfmt, path: redacted}", io.Discard, resultWritten},
		{"kept by param", `access_log: {sampling: [{keep_percent: 100, keep_by: "param:model"}]}`, io.Discard, resultWritten},
		{"sampled out", "access_log: {sampling: [{match: {routes: [models]}, drop: true}]}\nroutes: [{name: models}]", io.Discard, resultSampledOut},
		{"rate limited", "access_log: {max_lines_per_second: 1}", io.Discard, resultRateLimited},
		{"buffer full", "access_log: {buffer: 1}", &blockingWriter{entered: make(chan struct{}), release: make(chan struct{})}, resultBufferFull},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, reg := newTestLogger(t, tt.config, tt.w, clock.now)
			bw, blocking := tt.w.(*blockingWriter)
			defer func() {
				if blocking {
					close(bw.release)
				}
				l.Close()
				// 1001 calls: AllocsPerRun adds a warm-up run. When the
				// writer blocks, the lines already in its 64 KiB write
				// buffer (about 120 of these lines of some 550 bytes) were
				// taken before the queue filled, so "buffer full" counts
				// the rest.
				want := 990.0
				if blocking {
					want = 1001 - writeBufferSize/256
				}
				if got := linesTotal(t, reg, tt.result); got < want {
					t.Errorf("%s = %v of 1001 lines, want at least %.0f: the case did not exercise its path", tt.result, got, want)
				}
			}()
			// AllocsPerRun runs on one P: yielding after each Log lets the
			// writer goroutine take the line and return its buffer to the
			// pool, the steady state of a busy gateway. Without it every
			// line would wait in the queue on a buffer of its own.
			if n := testing.AllocsPerRun(1000, func() { l.Log(rec); runtime.Gosched() }); n != 0 {
				t.Errorf("%v allocations per Log", n)
			}
		})
	}
}
