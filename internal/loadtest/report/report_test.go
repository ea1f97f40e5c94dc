package report

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/loadtest/compare"
	"github.com/penstock-dev/penstock/internal/loadtest/runlog/synthetic"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// fixedRuns are two small synthetic runs: B is A's process 2 ms slower.
func fixedRuns(t *testing.T) []Run {
	t.Helper()
	spec := synthetic.Spec{
		Seconds: 20, Rate: 200,
		Dist:  synthetic.LogNormal(5*time.Millisecond, 0.5),
		Noise: 0.1, Rho: 0.5, PauseProb: 0.05, Pause: 40 * time.Millisecond,
		Meta: map[string]string{"rate": "200", "protocol": "h1"},
	}
	var runs []Run
	for i, name := range []string{"before.hlog", "after.hlog"} {
		s := spec
		s.Seed = uint64(i + 1)
		if i == 1 {
			s.Shift = 2 * time.Millisecond
		}
		l, err := synthetic.Log(s)
		if err != nil {
			t.Fatal(err)
		}
		runs = append(runs, Run{Name: name, Log: l})
	}
	return runs
}

func render(t *testing.T, runs []Run) string {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, runs, Options{Compare: compare.Options{Resamples: 200}}); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func TestGolden(t *testing.T) {
	runs := fixedRuns(t)
	cases := []struct {
		name, file string
		runs       []Run
	}{
		{"two runs with comparison", "two-runs.golden", runs},
		{"one run", "one-run.golden", runs[:1]},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := render(t, tc.runs)
			path := filepath.Join("testdata", tc.file)
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("report differs from %s (go test -update rewrites it after a deliberate change)", path)
			}
		})
	}
}

// chartIDs are the charts every report holds.
var chartIDs = []string{"chart-latency-over-time", "chart-percentiles", "chart-histogram"}

// svgOf returns the <svg> element with the given id in an HTML document.
func svgOf(doc, id string) string {
	i := strings.Index(doc, `id="`+id+`"`)
	if i < 0 {
		return ""
	}
	start := strings.LastIndex(doc[:i], "<svg")
	end := strings.Index(doc[i:], "</svg>")
	if start < 0 || end < 0 {
		return ""
	}
	return doc[start : i+end]
}

var drawnPath = regexp.MustCompile(`<path class="(line|area)" d="M[0-9.]+ [0-9.]+ L`)

func TestReportContent(t *testing.T) {
	runs := fixedRuns(t)
	cases := []struct {
		name       string
		runs       []Run
		seriesPer  map[string]int
		comparison bool
	}{
		{"one run", runs[:1], map[string]int{"chart-latency-over-time": 3, "chart-percentiles": 1, "chart-histogram": 1}, false},
		{"two runs", runs, map[string]int{"chart-latency-over-time": 6, "chart-percentiles": 2, "chart-histogram": 2}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			doc := render(t, tc.runs)
			for _, id := range chartIDs {
				svg := svgOf(doc, id)
				if svg == "" {
					t.Errorf("no <svg id=%q>", id)
					continue
				}
				if n := len(drawnPath.FindAllString(svg, -1)); n != tc.seriesPer[id] {
					t.Errorf("%s: %d drawn paths, want %d", id, n, tc.seriesPer[id])
				}
			}
			if got := strings.Contains(doc, `id="comparison"`); got != tc.comparison {
				t.Errorf("comparison table present = %v, want %v", got, tc.comparison)
			}
			if tc.comparison && !strings.Contains(doc, "different at p&lt;0.05") {
				t.Error("a 2 ms shift is not reported as a difference")
			}
		})
	}
}

func TestSelfContained(t *testing.T) {
	doc := render(t, fixedRuns(t))
	// Nothing may be fetched: no scripts or style sheets by reference, no
	// images, no url() in CSS. The SVG namespace URI is a name, not a fetch.
	for _, bad := range []string{"<script", "<link", "src=", "href=", "url(", "@import", "<img", "<iframe"} {
		if strings.Contains(doc, bad) {
			t.Errorf("report contains %q", bad)
		}
	}
	if n := strings.Count(doc, "http"); n != strings.Count(doc, `xmlns="http://www.w3.org/2000/svg"`) {
		t.Errorf("report mentions http %d times beyond the SVG namespace", n-strings.Count(doc, `xmlns="http://www.w3.org/2000/svg"`))
	}
}

func TestWriteRejects(t *testing.T) {
	runs := fixedRuns(t)
	cases := []struct {
		name string
		runs []Run
		opt  Options
		want string
	}{
		{"no runs", nil, Options{}, "one or two runs"},
		{"three runs", []Run{runs[0], runs[1], runs[0]}, Options{}, "one or two runs"},
		{"missing phase", runs, Options{Compare: compare.Options{Phase: "tls"}}, `phase "tls"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := Write(&bytes.Buffer{}, tc.runs, tc.opt)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}
