package upstream_test

import (
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/upstream"
)

// BenchmarkProtectedPick is what protection adds per request: the pool
// breaker's admission, a pick through the endpoints' guards, and recording
// a success in both breakers (and outlier detection). It must not
// allocate.
func BenchmarkProtectedPick(b *testing.B) {
	cases := []struct {
		name string
		od   *config.OutlierDetection
		cb   *config.CircuitBreaker
	}{
		{"off", nil, nil},
		{"breaker", nil, &config.CircuitBreaker{}},
		{"breaker_outlier", &config.OutlierDetection{}, &config.CircuitBreaker{}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			cfg := &config.Config{Upstreams: []config.Upstream{{Name: "p", OutlierDetection: c.od, CircuitBreaker: c.cb,
				Endpoints: []config.Endpoint{{Address: "127.0.0.1:10001"}, {Address: "127.0.0.1:10002"}, {Address: "127.0.0.1:10003"}}}}}
			cfg.SetDefaults()
			p, err := upstream.NewPool(&cfg.Upstreams[0])
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					now := time.Now().UnixNano()
					if !p.Admit(now) {
						b.Fatal("refused")
					}
					e := p.Pick(now)
					p.Record(e, upstream.ResultOK, time.Millisecond)
				}
			})
		})
	}
}
