package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/penstock-dev/penstock/internal/config"
)

// TestConcurrencyMetrics: the counters count, the gauges read the limit's
// state when scraped (the latest source after a reload), the min RTT gauge
// exists only for adaptive limits, and the names pass the linter.
func TestConcurrencyMetrics(t *testing.T) {
	m, reg := newMetrics(t, config.Metrics{})
	fixed := m.Concurrency("route", "chat")
	fixed.Count(0)
	fixed.Count(0)
	fixed.Count(1)
	fixed.Observe(func() ConcurrencyState { return ConcurrencyState{Limit: 8, InFlight: 3, Queued: 1} }, false)
	if again := m.Concurrency("route", "chat"); again != fixed {
		t.Error("a second handle for the same limit is a new one: a reload would split its series")
	}
	pool := m.Concurrency("upstream", "llm")
	pool.Count(2)
	pool.Observe(func() ConcurrencyState { return ConcurrencyState{Limit: 40} }, true)
	// A reload hands the handle a new limit.
	pool.Observe(func() ConcurrencyState {
		return ConcurrencyState{Limit: 24, InFlight: 20, MinRTT: 45 * time.Millisecond}
	}, true)

	want := `
# HELP penstock_concurrency_in_flight Requests holding a slot of the concurrency limit.
# TYPE penstock_concurrency_in_flight gauge
penstock_concurrency_in_flight{name="chat",scope="route"} 3
penstock_concurrency_in_flight{name="llm",scope="upstream"} 20
# HELP penstock_concurrency_limit Current concurrency limit (adaptive limits move; per key for keyed limits).
# TYPE penstock_concurrency_limit gauge
penstock_concurrency_limit{name="chat",scope="route"} 8
penstock_concurrency_limit{name="llm",scope="upstream"} 24
# HELP penstock_concurrency_min_rtt_seconds No-load latency measured by the adaptive concurrency limit's last probe.
# TYPE penstock_concurrency_min_rtt_seconds gauge
penstock_concurrency_min_rtt_seconds{name="llm",scope="upstream"} 0.045
# HELP penstock_concurrency_queued Requests waiting in the concurrency limit's queue.
# TYPE penstock_concurrency_queued gauge
penstock_concurrency_queued{name="chat",scope="route"} 1
penstock_concurrency_queued{name="llm",scope="upstream"} 0
# HELP penstock_concurrency_requests_total Requests that met a concurrency limit, by result (admitted, rejected, queue_timeout, canceled).
# TYPE penstock_concurrency_requests_total counter
penstock_concurrency_requests_total{name="chat",result="admitted",scope="route"} 2
penstock_concurrency_requests_total{name="chat",result="canceled",scope="route"} 0
penstock_concurrency_requests_total{name="chat",result="queue_timeout",scope="route"} 0
penstock_concurrency_requests_total{name="chat",result="rejected",scope="route"} 1
penstock_concurrency_requests_total{name="llm",result="admitted",scope="upstream"} 0
penstock_concurrency_requests_total{name="llm",result="canceled",scope="upstream"} 0
penstock_concurrency_requests_total{name="llm",result="queue_timeout",scope="upstream"} 1
penstock_concurrency_requests_total{name="llm",result="rejected",scope="upstream"} 0
`
	names := []string{"penstock_concurrency_in_flight", "penstock_concurrency_limit", "penstock_concurrency_min_rtt_seconds",
		"penstock_concurrency_queued", "penstock_concurrency_requests_total"}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	problems, err := testutil.GatherAndLint(reg, names...)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// TestConcurrencyCountAllocatesNothing: counting is on the request path.
func TestConcurrencyCountAllocatesNothing(t *testing.T) {
	m, _ := newMetrics(t, config.Metrics{})
	c := m.Concurrency("route", "chat")
	if n := testing.AllocsPerRun(100, func() { c.Count(1) }); n != 0 {
		t.Errorf("Count allocates %.1f times, want 0", n)
	}
}
