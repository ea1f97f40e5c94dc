package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/penstock-dev/penstock/internal/loadtest/runlog"
)

// `penstock bench run` end to end: flags, the text summary, the run log and
// the JSON summary.
func TestBenchRun(t *testing.T) {
	// The handler runs on one goroutine per connection: what it saw is
	// counted under a lock.
	var (
		mu                 sync.Mutex
		requests, wellMade int
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		requests++
		if string(b) == "hello" && r.Header.Get("X-Test") == "yes" {
			wellMade++
		}
		mu.Unlock()
		w.Write([]byte("ok"))
	}))
	defer srv.Close()
	dir := t.TempDir()
	hlog, js := filepath.Join(dir, "run.hlog"), filepath.Join(dir, "run.json")

	code, stdout, stderr := runCLI("bench", "run", "--rate", "100", "--duration", "300ms", "--method", "POST",
		"-H", "X-Test: yes", "--body", "hello", "--out", hlog, "--json", js, srv.URL+"/a", srv.URL+"/b")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"open loop, constant:100", "30 responses", "total", "200: 30"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout)
		}
	}
	mu.Lock()
	if requests != 30 || wellMade != requests {
		t.Errorf("server got %d requests (want 30), %d of them with body \"hello\" and X-Test: yes", requests, wellMade)
	}
	mu.Unlock()
	f, err := os.Open(hlog)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	l, err := runlog.Read(f)
	if err != nil {
		t.Fatal(err)
	}
	if l.Meta["rate"] != "100" || l.Meta["responses"] != "30" || l.Merged(runlog.Total).TotalCount() != 30 {
		t.Errorf("run log: meta %v, %d samples", l.Meta, l.Merged(runlog.Total).TotalCount())
	}
	b, err := os.ReadFile(js)
	if err != nil {
		t.Fatal(err)
	}
	var sum struct {
		Responses int64 `json:"responses"`
		Phases    map[string]struct {
			P99 float64 `json:"p99_ms"`
		} `json:"phases"`
	}
	if err := json.Unmarshal(b, &sum); err != nil || sum.Responses != 30 || sum.Phases["total"].P99 <= 0 {
		t.Errorf("JSON summary %s (err %v)", b, err)
	}
}

func TestBenchRunUsage(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"no URL", []string{"--rate", "10"}, 2, "no target URL"},
		{"no rate", []string{"http://127.0.0.1:1/"}, 1, "needs --rate"},
		{"bad profile", []string{"--profile", "sine:1", "http://127.0.0.1:1/"}, 1, "unknown kind"},
		{"bad group", []string{"--rate", "1", "--group", "x448", "https://127.0.0.1:1/"}, 1, "--group"},
		{"h2 needs https", []string{"--rate", "1", "--proto", "h2", "http://127.0.0.1:1/"}, 1, "needs an https URL"},
		{"help", []string{"--help"}, 0, "coordinated omission"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(append([]string{"bench", "run"}, tc.args...)...)
			if code != tc.code || !strings.Contains(stderr, tc.stderr) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr, tc.code, tc.stderr)
			}
		})
	}
}
