package accesslog

import (
	"io"
	"testing"
)

// BenchmarkLog measures Log for one request, from the sampling decision to
// the queued line (the writer goroutine writes to io.Discard meanwhile).
func BenchmarkLog(b *testing.B) {
	rec := fullRecord()
	benchmarks := []struct {
		name   string
		config string
	}{
		{"kept_json", "access_log: {sampling: [{name: health, match: {path_prefixes: [/healthz]}, drop: true}, {name: errors, match: {status: [5xx]}, keep: true}]}"},
		{"kept_logfmt", "access_log: {format: logfmt, sampling: [{name: health, match: {path_prefixes: [/healthz]}, drop: true}, {name: errors, match: {status: [5xx]}, keep: true}]}"},
		{"sampled_out", "access_log: {sampling: [{name: health, match: {path_prefixes: [/healthz]}, drop: true}, {name: rest, keep_percent: 0}]}"},
	}
	for _, bm := range benchmarks {
		b.Run(bm.name, func(b *testing.B) {
			l, reg := newTestLogger(b, bm.config, io.Discard, nil)
			b.ReportAllocs()
			for b.Loop() {
				l.Log(rec)
			}
			b.StopTimer()
			l.Close()
			if dropped := linesTotal(b, reg, resultBufferFull); dropped > 0 {
				b.ReportMetric(dropped/float64(b.N), "dropped/op")
			}
		})
	}
}

// BenchmarkEncode measures encoding alone, the larger part of a kept line.
func BenchmarkEncode(b *testing.B) {
	rec := fullRecord()
	for _, f := range []struct {
		name string
		f    format
	}{{"json", formatJSON}, {"logfmt", formatLogfmt}} {
		b.Run(f.name, func(b *testing.B) {
			buf := make([]byte, 0, 1024)
			b.ReportAllocs()
			for b.Loop() {
				buf = appendRecord(buf[:0], f.f, pathFull, rec)
			}
			b.SetBytes(int64(len(buf)))
		})
	}
}
