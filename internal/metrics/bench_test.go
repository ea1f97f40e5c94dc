package metrics

import (
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
)

// BenchmarkRouteDone measures one request's Start and Done.
func BenchmarkRouteDone(b *testing.B) {
	traceID := [16]byte{0: 0x4b, 15: 0x36}
	for _, bc := range []struct {
		name    string
		sampled bool
	}{
		{"unsampled", false},
		{"sampled", true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			m, _ := newMetrics(b, config.Metrics{})
			r := m.Route("chat", "")
			r.Done("POST", 200, 0, 0, 0, nil, false) // first use resolves the series
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					r.Start()
					r.Done("POST", 200, 12*time.Millisecond, 512, 4096, &traceID, bc.sampled)
				}
			})
		})
	}
}

// TestRouteDoneDoesNotAllocate keeps the benchmark's promise in the test
// suite: an unsampled request allocates nothing.
func TestRouteDoneDoesNotAllocate(t *testing.T) {
	m, _ := newMetrics(t, config.Metrics{PerHost: true})
	r := m.Route("chat", "api.example.com")
	traceID := [16]byte{1}
	r.Done("GET", 200, 0, 0, 0, nil, false)
	allocs := testing.AllocsPerRun(1000, func() {
		r.Start()
		r.Done("GET", 200, 12*time.Millisecond, 512, 4096, &traceID, false)
		r.TraceContextMissing()
	})
	if allocs != 0 {
		t.Errorf("Start+Done (unsampled) allocates %g times, want 0", allocs)
	}
}

func BenchmarkUpstreamAttempt(b *testing.B) {
	m, _ := newMetrics(b, config.Metrics{})
	u := m.Upstream("llm", "10.0.0.1:8000")
	b.ReportAllocs()
	for b.Loop() {
		u.Attempt(20*time.Millisecond, "ok")
	}
}

func BenchmarkConnOpenedClosed(b *testing.B) {
	m, _ := newMetrics(b, config.Metrics{})
	b.ReportAllocs()
	for b.Loop() {
		m.ConnOpened("public", "HTTP/1.1")
		m.ConnClosed("public", "HTTP/1.1")
	}
}
