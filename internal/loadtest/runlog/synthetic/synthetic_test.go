package synthetic

import (
	"bytes"
	"math"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/loadtest/runlog"
)

func TestWrite(t *testing.T) {
	spec := Spec{Seconds: 5, Rate: 1000, Dist: Exponential(2 * time.Millisecond), Seed: 7, Meta: map[string]string{"rate": "1000"}}
	t.Run("same seed, same bytes", func(t *testing.T) {
		var a, b bytes.Buffer
		if err := Write(&a, spec); err != nil {
			t.Fatal(err)
		}
		if err := Write(&b, spec); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a.Bytes(), b.Bytes()) {
			t.Error("two writes of one spec differ")
		}
	})
	t.Run("one histogram per phase per second", func(t *testing.T) {
		l, err := Log(spec)
		if err != nil {
			t.Fatal(err)
		}
		for _, phase := range []string{runlog.Total, runlog.FirstByte} {
			ivs := l.Phase(phase)
			if len(ivs) != spec.Seconds {
				t.Fatalf("%s: %d intervals, want %d", phase, len(ivs), spec.Seconds)
			}
			for i, iv := range ivs {
				if iv.Hist.TotalCount() != int64(spec.Rate) || iv.Start != time.Duration(i)*time.Second {
					t.Errorf("%s interval %d: %d values from %v, want %d from %ds", phase, i, iv.Hist.TotalCount(), iv.Start, spec.Rate, i)
				}
			}
		}
		if l.Meta["rate"] != "1000" {
			t.Errorf("meta rate = %q", l.Meta["rate"])
		}
	})
	t.Run("shift and distribution", func(t *testing.T) {
		s := spec
		s.Shift = 3 * time.Millisecond
		l, err := Log(s)
		if err != nil {
			t.Fatal(err)
		}
		// Exponential mean 2 ms plus 3 ms; over 5000 samples the mean has a
		// standard error of 28 µs, so ±150 µs is over 5 of them.
		if m := l.Merged(runlog.Total).Mean(); math.Abs(m-5000) > 150 {
			t.Errorf("mean = %.0f µs, want 5000 ± 150", m)
		}
		if min := l.Merged(runlog.Total).Min(); min < 3000 {
			t.Errorf("min = %d µs, want ≥ 3000 (the shift)", min)
		}
	})
}
