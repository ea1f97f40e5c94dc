package snapshot

import (
	"testing"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/metrics"
	"github.com/penstock-dev/penstock/internal/pipeline"
)

// TestRetryBudgetSurvivesReload: a reload that keeps a route's name and
// budget settings keeps its budget (and what it has counted); renaming the
// route or changing the budget starts a new one.
func TestRetryBudgetSurvivesReload(t *testing.T) {
	route := func(name, budget string) *config.Route {
		cfg, err := config.Parse([]byte(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams: [{name: up, endpoints: [{address: "127.0.0.1:9"}]}]
routes: [{name: `+name+`, match: {path: /}, upstream: up, retry: {on: [503], budget: `+budget+`}}]
`), "reload.yaml")
		if err != nil {
			t.Fatal(err)
		}
		return &cfg.Routes[0]
	}
	m := metrics.New(config.Metrics{}, nil)
	first := pipeline.NewState(nil)
	p0, err := retryPolicy(first, route("r", "{percent: 20}"), m)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, route, budget string
		kept                bool
	}{
		{name: "unchanged", route: "r", budget: "{percent: 20}", kept: true},
		{name: "defaults written out", route: "r", budget: "{percent: 20, min_per_second: 10, window: 10s}", kept: true},
		{name: "percent changed", route: "r", budget: "{percent: 30}", kept: false},
		{name: "window changed", route: "r", budget: "{percent: 20, window: 20s}", kept: false},
		{name: "route renamed", route: "other", budget: "{percent: 20}", kept: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := retryPolicy(pipeline.NewState(first), route(tc.route, tc.budget), m)
			if err != nil {
				t.Fatal(err)
			}
			if kept := p.Budget == p0.Budget; kept != tc.kept {
				t.Errorf("budget kept = %v, want %v", kept, tc.kept)
			}
		})
	}
}
