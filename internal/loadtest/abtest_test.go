package loadtest_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/loadtest"
	"github.com/penstock-dev/penstock/internal/loadtest/compare"
	"github.com/penstock-dev/penstock/internal/loadtest/runlog"
)

// These tests check the whole A/B procedure end to end: real open-loop runs
// against a real loopback server, written as run logs, read back and
// compared. The short intervals (200 ms) give the block test enough blocks
// from runs of a few seconds.

const abInterval = 200 * time.Millisecond

// abRun runs one open-loop measurement against url and returns its log.
func abRun(t *testing.T, url string, rate float64, d time.Duration) *runlog.Log {
	t.Helper()
	var buf bytes.Buffer
	_, err := loadtest.Run(context.Background(), loadtest.Options{
		URLs:        []string{url},
		Rate:        rate,
		Connections: 16,
		Duration:    d,
		Warmup:      500 * time.Millisecond,
		Interval:    abInterval,
		Log:         &buf,
	})
	if err != nil {
		t.Fatal(err)
	}
	l, err := runlog.Read(&buf)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// delayServer answers every request after delay.
func delayServer(t *testing.T, delay time.Duration) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if delay > 0 {
			time.Sleep(delay)
		}
		io.WriteString(w, `{"outputs":[0.1,0.2]}`)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/v1/models/m/predict"
}

// TestABInjectedDelayIsJudgedDifferent: the same server, once as it is and
// once 2 ms slower per request, must be judged different, with a P50 delta
// whose interval holds about 2 ms.
func TestABInjectedDelayIsJudgedDifferent(t *testing.T) {
	if testing.Short() {
		t.Skip("two 5-second load runs")
	}
	a := abRun(t, delayServer(t, 0), 200, 5*time.Second)
	b := abRun(t, delayServer(t, 2*time.Millisecond), 200, 5*time.Second)
	r, err := compare.Compare(a, b, compare.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !r.KS.Different {
		t.Errorf("A/B with +2 ms: D=%.3f p=%.4f, want judged different at p<%.2f", r.KS.D, r.KS.P, r.Alpha)
	}
	p50 := r.Stats[0]
	if p50.Delta < 1500 || p50.Low < 1000 {
		t.Errorf("P50 delta %.0f µs [%.0f, %.0f], want about +2000 µs", p50.Delta, p50.Low, p50.High)
	}
	t.Logf("A/B +2 ms: D=%.3f p=%.4f, P50 %.0f → %.0f µs", r.KS.D, r.KS.P, p50.A, p50.B)
}

// TestAARepeated runs twenty A/A pairs (two runs against the same server)
// and counts how many the comparison calls different at p < 0.05: with a
// test that holds its level, about one in twenty, and at most one is the
// acceptance bar. It takes about four minutes, so it runs only with
// PENSTOCK_AA=1:
//
//	PENSTOCK_AA=1 go test -run TestAARepeated -v -timeout 20m ./internal/loadtest/
func TestAARepeated(t *testing.T) {
	if os.Getenv("PENSTOCK_AA") == "" {
		t.Skip("set PENSTOCK_AA=1 to run twenty A/A pairs (about four minutes)")
	}
	url := delayServer(t, 0)
	const pairs = 20
	flagged := 0
	for i := range pairs {
		a := abRun(t, url, 300, 5*time.Second)
		b := abRun(t, url, 300, 5*time.Second)
		r, err := compare.Compare(a, b, compare.Options{Seed: uint64(i)})
		if err != nil {
			t.Fatal(err)
		}
		verdict := "same"
		if r.KS.Different {
			flagged++
			verdict = "DIFFERENT"
		}
		t.Logf("pair %2d: D=%.3f p=%.3f P99 %.0f vs %.0f µs: %s", i+1, r.KS.D, r.KS.P, r.Stats[2].A, r.Stats[2].B, verdict)
	}
	t.Logf("A/A: %d of %d pairs judged different at p<0.05", flagged, pairs)
	if flagged > 1 {
		t.Errorf("%d of %d A/A pairs judged different, want at most 1", flagged, pairs)
	}
}
