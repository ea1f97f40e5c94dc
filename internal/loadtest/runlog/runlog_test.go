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

func TestConcatJoinsSlicesAsBlocks(t *testing.T) {
	slice := func(seconds int, value int64) *Log {
		l := &Log{Start: time.UnixMilli(1_700_000_000_000), Meta: map[string]string{"proto": "h1"}}
		for s := range seconds {
			h := NewHistogram()
			h.RecordValue(value)
			l.Intervals = append(l.Intervals, Interval{Phase: Total, Start: time.Duration(s) * time.Second, End: time.Duration(s+1) * time.Second, Hist: h})
		}
		return l
	}
	// The second slice has a third interval past its 2 s: a late response.
	joined := Concat([]*Log{slice(2, 100), slice(3, 200)}, 2*time.Second, time.Second)
	if got := len(joined.Intervals); got != 4 {
		t.Fatalf("intervals = %d, want 4 (the late one dropped)", got)
	}
	if iv := joined.Intervals[2]; iv.Start != 2*time.Second || iv.Hist.Max() < 199 {
		t.Errorf("third interval starts %v with max %d, want the second slice at 2s", iv.Start, iv.Hist.Max())
	}
	if got := joined.Meta[MetaBlockIntervals]; got != "2" {
		t.Errorf("block_intervals = %q, want 2", got)
	}
	var buf bytes.Buffer
	if err := WriteLog(&buf, joined); err != nil {
		t.Fatal(err)
	}
	back, err := Read(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Intervals) != 4 || back.Meta[MetaBlockIntervals] != "2" || back.Meta["proto"] != "h1" {
		t.Errorf("read back %d intervals, meta %v", len(back.Intervals), back.Meta)
	}
}
