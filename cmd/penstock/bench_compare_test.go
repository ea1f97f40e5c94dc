package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/loadtest/runlog/synthetic"
)

// writeRuns writes three synthetic run logs: a, a2 (same process as a) and
// slow (a's process 2 ms slower).
func writeRuns(t *testing.T) (a, a2, slow string) {
	t.Helper()
	dir := t.TempDir()
	spec := synthetic.Spec{
		Seconds: 40, Rate: 200,
		Dist:  synthetic.LogNormal(5*time.Millisecond, 0.5),
		Noise: 0.1, Rho: 0.5,
	}
	write := func(name string, seed uint64, shift time.Duration) string {
		s := spec
		s.Seed, s.Shift = seed, shift
		path := filepath.Join(dir, name)
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := synthetic.Write(f, s); err != nil {
			t.Fatal(err)
		}
		return path
	}
	return write("a.hlog", 1, 0), write("a2.hlog", 2, 0), write("slow.hlog", 3, 2*time.Millisecond)
}

func TestBenchCompareCLI(t *testing.T) {
	a, a2, slow := writeRuns(t)
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout []string
		stderr string
	}{
		{name: "same process: exit 0, no difference", args: []string{"bench", "compare", a, a2, "--resamples", "300"}, code: 0,
			stdout: []string{"p50 ", "p99.9", "mean", "CI of delta", "KS: D = ", "no significant difference"}},
		{name: "slower run: exit 0, different", args: []string{"bench", "compare", "--resamples", "300", a, slow}, code: 0,
			stdout: []string{"+2.", "different at p<0.05"}},
		{name: "flags after the files", args: []string{"bench", "compare", a, slow, "--alpha", "0.01", "--confidence", "0.9", "--phase", "first_byte"}, code: 0,
			stdout: []string{"phase first_byte", "90% CI of delta", "different at p<0.01"}},
		{name: "one file", args: []string{"bench", "compare", a}, code: 2, stderr: "want two run logs"},
		{name: "missing file", args: []string{"bench", "compare", a, filepath.Join(t.TempDir(), "nope.hlog")}, code: 1, stderr: "no such file"},
		{name: "bad confidence", args: []string{"bench", "compare", a, a2, "--confidence", "95"}, code: 1, stderr: "confidence 95"},
		{name: "unknown phase", args: []string{"bench", "compare", a, a2, "--phase", "dns"}, code: 1, stderr: `phase "dns"`},
		{name: "help", args: []string{"bench", "compare", "--help"}, code: 0, stderr: "exit code is 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCLI(tc.args...)
			if code != tc.code {
				t.Fatalf("exit code %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out, errOut)
			}
			for _, s := range tc.stdout {
				if !strings.Contains(out, s) {
					t.Errorf("stdout lacks %q:\n%s", s, out)
				}
			}
			if !strings.Contains(errOut, tc.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.stderr, errOut)
			}
		})
	}
}

func TestBenchCompareJSON(t *testing.T) {
	a, _, slow := writeRuns(t)
	code, out, errOut := runCLI("bench", "compare", a, slow, "--json", "--resamples", "300")
	if code != 0 {
		t.Fatalf("exit code %d: %s", code, errOut)
	}
	var got struct {
		FileA string `json:"file_a"`
		Stats []struct {
			Name  string  `json:"name"`
			Delta float64 `json:"delta_us"`
			Low   float64 `json:"ci_low_us"`
			High  float64 `json:"ci_high_us"`
		} `json:"stats"`
		KS struct {
			D         float64 `json:"d"`
			P         float64 `json:"p"`
			Different bool    `json:"different"`
		} `json:"ks"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if got.FileA != a || len(got.Stats) != 5 || got.Stats[0].Name != "p50" {
		t.Errorf("file_a %q, %d stats; want %q and 5 stats from p50", got.FileA, len(got.Stats), a)
	}
	if p50 := got.Stats[0]; p50.Low > 2000 || p50.High < 2000 {
		t.Errorf("p50 delta interval [%v, %v] µs misses the 2000 µs shift", p50.Low, p50.High)
	}
	if !got.KS.Different || got.KS.D <= 0 {
		t.Errorf("ks = %+v, want a difference", got.KS)
	}
}

func TestBenchReportCLI(t *testing.T) {
	a, _, slow := writeRuns(t)
	dir := t.TempDir()
	tests := []struct {
		name   string
		args   []string
		code   int
		want   []string // in the written file
		stderr string
	}{
		{name: "one run", args: []string{a}, code: 0, want: []string{`id="chart-latency-over-time"`, "a.hlog"}},
		{name: "two runs", args: []string{a, slow, "--resamples", "300"}, code: 0, want: []string{`id="comparison"`, "slow.hlog", "different at p&lt;0.05"}},
		{name: "no runs", args: nil, code: 2, stderr: "want one or two run logs"},
		{name: "three runs", args: []string{a, a, a}, code: 2, stderr: "want one or two run logs"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, "r"+string(rune('0'+i))+".html")
			args := append([]string{"bench", "report", "-o", out}, tc.args...)
			code, stdout, errOut := runCLI(args...)
			if code != tc.code {
				t.Fatalf("exit code %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, stdout, errOut)
			}
			if !strings.Contains(errOut, tc.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.stderr, errOut)
			}
			if tc.code != 0 {
				return
			}
			html, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range tc.want {
				if !strings.Contains(string(html), s) {
					t.Errorf("report lacks %q", s)
				}
			}
		})
	}
}
