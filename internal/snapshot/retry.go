package snapshot

import (
	"fmt"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/metrics"
	"github.com/penstock-dev/penstock/internal/pipeline"
	"github.com/penstock-dev/penstock/internal/proxy"
)

// retryPolicy compiles route rc's retry policy. Its budget is kept in state
// under the route's name and the budget's settings, so a reload that leaves
// them alone keeps counting where the previous configuration was: a reload
// in the middle of an outage does not hand out a fresh budget.
func retryPolicy(state *pipeline.State, rc *config.Route, m *metrics.Metrics) (*proxy.RetryPolicy, error) {
	b := &rc.Retry.Budget
	key := fmt.Sprintf("proxy.retry_budget\x00%s\x00%v\x00%v\x00%s", rc.Name, *b.Percent, *b.MinPerSecond, b.Window)
	v, err := state.Keep(key, func() (any, error) { return proxy.NewRetryBudget(b), nil })
	if err != nil {
		return nil, err
	}
	budget := v.(*proxy.Budget)
	p := proxy.NewRetryPolicy(&rc.Retry, m.Retries(rc.Name), func() *proxy.Budget { return budget })
	if p.Latency != nil {
		// The latency estimate hedges wait for is kept the same way: a
		// reload does not stop hedging until 100 responses are seen again.
		v, err := state.Keep("proxy.hedge_latency\x00"+rc.Name, func() (any, error) { return p.Latency, nil })
		if err != nil {
			return nil, err
		}
		p.Latency = v.(*proxy.LatencyEstimator)
	}
	return p, nil
}
