// Package runlog is the file format of a `penstock bench` run: a standard
// HdrHistogram interval log (format 1.3, as written by HdrHistogram's
// HistogramLogWriter in Java, C and Go), so runs can be merged, compared
// later and read by the HdrHistogram tools (HistogramLogAnalyzer,
// hdr-plot).
//
// A run log holds one interval histogram per phase per interval (one second
// by default). Each histogram carries its phase as its tag (Total, Connect,
// TLS, FirstByte, Handshake) and records microseconds from 1 µs to 60 s with
// 3 significant digits. The run's parameters are written as "#key=value"
// comment lines before the histograms, so the file describes itself.
package runlog

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Phase tags. Total is the latency of a whole request from its intended send
// time to the end of its response body.
const (
	Total     = "total"
	Connect   = "connect"
	TLS       = "tls"
	FirstByte = "first_byte"
	Handshake = "handshake"
)

// Histogram range: 1 µs to 60 s with 3 significant digits, in microseconds.
const (
	Lowest  = 1
	Highest = 60_000_000
	Digits  = 3
)

// NewHistogram returns an empty histogram with the run log's range.
func NewHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(Lowest, Highest, Digits)
}

// Interval is one phase's histogram over one interval of a run.
type Interval struct {
	// Phase is the histogram's tag, e.g. Total.
	Phase string
	// Start and End bound the interval, as offsets from the run's start.
	Start, End time.Duration
	// Hist holds the interval's latencies in microseconds.
	Hist *hdrhistogram.Histogram
}

// Log is a whole run: its parameters and its interval histograms in order.
type Log struct {
	// Start is the run's wall-clock start (the log's base time).
	Start time.Time
	// Meta holds the run's parameters ("target", "rate", "protocol", ...).
	Meta map[string]string
	// Intervals are in the order written (by time, phases interleaved).
	Intervals []Interval
}

// Phase returns the intervals of one phase, in time order.
func (l *Log) Phase(phase string) []Interval {
	var out []Interval
	for _, iv := range l.Intervals {
		if iv.Phase == phase {
			out = append(out, iv)
		}
	}
	return out
}

// Merged returns one histogram of every interval of phase, or nil when the
// log has none.
func (l *Log) Merged(phase string) *hdrhistogram.Histogram {
	var h *hdrhistogram.Histogram
	for _, iv := range l.Intervals {
		if iv.Phase != phase {
			continue
		}
		if h == nil {
			h = NewHistogram()
		}
		h.Merge(iv.Hist)
	}
	return h
}

// Writer writes a run log.
type Writer struct {
	lw    *hdrhistogram.HistogramLogWriter
	start time.Time
}

// NewWriter writes the log header: format version, start time, the run's
// parameters (sorted by key) and the column legend.
func NewWriter(w io.Writer, start time.Time, meta map[string]string) (*Writer, error) {
	lw := hdrhistogram.NewHistogramLogWriter(w)
	ms := start.UnixMilli()
	lw.SetBaseTime(ms)
	keys := make([]string, 0, len(meta))
	for k := range meta {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if err := lw.OutputLogFormatVersion(); err != nil {
		return nil, err
	}
	if err := lw.OutputStartTime(ms); err != nil {
		return nil, err
	}
	if err := lw.OutputBaseTime(ms); err != nil {
		return nil, err
	}
	for _, k := range keys {
		v := meta[k]
		if strings.ContainsAny(k, "=\n") || strings.ContainsRune(v, '\n') {
			return nil, fmt.Errorf("runlog: meta %q: key may not hold '=' or a newline, value no newline", k)
		}
		if err := lw.OutputComment(metaPrefix + k + "=" + v); err != nil {
			return nil, err
		}
	}
	if err := lw.OutputLegend(); err != nil {
		return nil, err
	}
	return &Writer{lw: lw, start: start}, nil
}

// metaPrefix marks a parameter comment line ("#penstock:rate=1000").
const metaPrefix = "penstock:"

// Write appends one interval histogram. h is not modified beyond its tag and
// interval times.
func (w *Writer) Write(iv Interval) error {
	iv.Hist.SetTag(iv.Phase)
	s := w.start.UnixMilli()
	iv.Hist.SetStartTimeMs(s + iv.Start.Milliseconds())
	iv.Hist.SetEndTimeMs(s + iv.End.Milliseconds())
	return w.lw.OutputIntervalHistogram(iv.Hist)
}

// Read parses a run log written by Writer (or any HdrHistogram interval log;
// untagged histograms are read as Total).
func Read(r io.Reader) (*Log, error) {
	// The library's reader skips comments, so the parameters are read in a
	// first pass over the same bytes.
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	l := &Log{Meta: map[string]string{}}
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "#"+metaPrefix); ok {
			if k, v, ok := strings.Cut(rest, "="); ok {
				l.Meta[k] = v
			}
		}
	}
	lr := hdrhistogram.NewHistogramLogReader(strings.NewReader(string(data)))
	var base int64 = -1
	for {
		h, err := lr.NextIntervalHistogram()
		if err != nil {
			return nil, fmt.Errorf("runlog: %w", err)
		}
		if h == nil {
			break
		}
		if base < 0 {
			base = h.StartTimeMs()
			l.Start = time.UnixMilli(base)
		}
		phase := h.Tag()
		if phase == "" {
			phase = Total
		}
		l.Intervals = append(l.Intervals, Interval{
			Phase: phase,
			Start: time.Duration(h.StartTimeMs()-base) * time.Millisecond,
			End:   time.Duration(h.EndTimeMs()-base) * time.Millisecond,
			Hist:  h,
		})
	}
	if len(l.Intervals) == 0 {
		return nil, errors.New("runlog: no histograms in the log")
	}
	return l, nil
}

// WriteMeta appends parameters known only at the end of a run (its summary
// counts) as comment lines of the same form as the header's; Read collects
// them with the header's, wherever they are in the log.
func (w *Writer) WriteMeta(meta map[string]string) error {
	keys := make([]string, 0, len(meta))
	for k := range meta {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := meta[k]
		if strings.ContainsAny(k, "=\n") || strings.ContainsRune(v, '\n') {
			return fmt.Errorf("runlog: meta %q: key may not hold '=' or a newline, value no newline", k)
		}
		if err := w.lw.OutputComment(metaPrefix + k + "=" + v); err != nil {
			return err
		}
	}
	return nil
}

// MetaBlockIntervals is the meta key of a log joined from slices (Concat):
// the number of intervals in one slice, which is the natural block of a
// comparison (package compare uses it when no block length is given).
const MetaBlockIntervals = "block_intervals"

// Concat joins logs measured one after another in slices of length slice
// (for example the A slices of an interleaved A/B run) into one log: slice i
// starts at i·slice. Intervals of a slice that end past its length (a
// request still finishing) are dropped, so every slice has the same number
// of intervals, recorded as MetaBlockIntervals when interval divides slice.
func Concat(logs []*Log, slice, interval time.Duration) *Log {
	out := &Log{Meta: map[string]string{}}
	if len(logs) == 0 {
		return out
	}
	out.Start = logs[0].Start
	for k, v := range logs[0].Meta {
		out.Meta[k] = v
	}
	for i, l := range logs {
		off := time.Duration(i) * slice
		for _, iv := range l.Intervals {
			if iv.Start >= slice {
				continue
			}
			iv.Start += off
			iv.End += off
			out.Intervals = append(out.Intervals, iv)
		}
	}
	if interval > 0 && slice%interval == 0 {
		out.Meta[MetaBlockIntervals] = fmt.Sprint(int(slice / interval))
	}
	return out
}

// WriteLog writes a whole log with a Writer.
func WriteLog(w io.Writer, l *Log) error {
	lw, err := NewWriter(w, l.Start, l.Meta)
	if err != nil {
		return err
	}
	for _, iv := range l.Intervals {
		if err := lw.Write(iv); err != nil {
			return err
		}
	}
	return nil
}
