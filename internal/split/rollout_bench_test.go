package split

import (
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/exchange/exchangetest"
	"github.com/penstock-dev/penstock/internal/rollout"
)

// BenchmarkSplitServe is the cost a split adds to a request, by itself:
// "plain" calls the arm's handler directly, "split" chooses the arm by
// weight first, "rollout" also judges the request (the pooled first-byte
// writer, one clock read at the end and the live comparison's atomic
// counters; the start is the engine's).
// The handler writes a small response. Divide the difference by the CPU
// cost of a whole request (BenchmarkProxySplit's cpu-ns/op in
// internal/server) for the share a rollout adds.
func BenchmarkSplitServe(b *testing.B) {
	cfg := &config.RouteSplit{By: config.SplitByWeight, Arms: []config.SplitArm{
		{Name: "stable", Upstream: "a", Weight: 100}, {Name: "canary", Upstream: "b"}}}
	arms := []Arm{{Name: "stable", Next: ok("stable")}, {Name: "canary", Next: ok("canary")}}
	r, err := rollout.New(rollout.Definition{Window: time.Hour, Slot: time.Minute, Steps: []rollout.Step{{Weight: 50}, {Weight: 100}}}, rollout.Options{})
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		h    interface {
			ServeExchange(x *exchange.Exchange)
		}
	}{
		{"plain", arms[0].Next},
		{"split", New(cfg, arms, nil, nil)},
		{"rollout", New(cfg, arms, nil, NewCanary(r, []string{"stable", "canary"}, []float64{100, 0}, 0, 1))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			x, rec := exchangetest.NewExchange(b, "POST")
			x.Start = time.Now() // as an engine sets it when the request arrives
			b.ReportAllocs()
			for b.Loop() {
				rec.Reset()
				x.State.Arm = ""
				bc.h.ServeExchange(x)
			}
		})
	}
}
