package runlog

import (
	"bytes"
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	start := time.UnixMilli(1_700_000_000_000)
	var buf bytes.Buffer
	w, err := NewWriter(&buf, start, map[string]string{"rate": "1000", "protocol": "h1"})
	if err != nil {
		t.Fatal(err)
	}
	for sec := range 3 {
		for _, phase := range []string{Total, FirstByte} {
			h := NewHistogram()
			for i := 1; i <= 100; i++ {
				h.RecordValue(int64(i * 10 * (sec + 1)))
			}
			if err := w.Write(Interval{Phase: phase, Start: time.Duration(sec) * time.Second, End: time.Duration(sec+1) * time.Second, Hist: h}); err != nil {
				t.Fatal(err)
			}
		}
	}
	l, err := Read(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Meta["rate"]; got != "1000" {
		t.Errorf("meta rate = %q, want 1000", got)
	}
	if got := len(l.Phase(Total)); got != 3 {
		t.Fatalf("total intervals = %d, want 3", got)
	}
	if iv := l.Phase(Total)[2]; iv.Start != 2*time.Second || iv.End != 3*time.Second {
		t.Errorf("third interval = %v..%v, want 2s..3s", iv.Start, iv.End)
	}
	m := l.Merged(Total)
	if m.TotalCount() != 300 {
		t.Errorf("merged count = %d, want 300", m.TotalCount())
	}
	if got := m.Max(); got < 2990 || got > 3010 {
		t.Errorf("merged max = %d, want ≈3000", got)
	}
}

func TestReadRejectsEmpty(t *testing.T) {
	if _, err := Read(bytes.NewBufferString("#nothing\n")); err == nil {
		t.Fatal("want an error for a log without histograms")
	}
}
