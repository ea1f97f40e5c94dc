package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// tokenVecs holds the token admission metrics and the handles resolved
// from them.
type tokenVecs struct {
	tokens  *prometheus.CounterVec
	refused *prometheus.CounterVec
	ttft    *prometheus.HistogramVec
	tpot    *prometheus.HistogramVec

	mu      sync.Mutex
	tenants map[[2]string]*Tokens
}

func newTokenVecs() *tokenVecs {
	return &tokenVecs{
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "penstock_llm_tokens_total",
			Help: "Tokens of routes with token admission, as settled from the responses' usage, by route, tenant (those the configuration names; others are \"other\") and direction (in: prompt, out: completion).",
		}, []string{"route", "tenant", "direction"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "penstock_llm_requests_refused_total",
			Help: "Requests refused (429) or streams cut because their tenant's token budget was spent, by route, tenant and what happened (refused, stream_cut).",
		}, []string{"route", "tenant", "result"}),
		ttft: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "penstock_llm_time_to_first_token_seconds",
			Help:    "Time from a request's arrival to the first byte of its response body, by route and tenant.",
			Buckets: []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
		}, []string{"route", "tenant"}),
		tpot: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "penstock_llm_time_per_output_token_seconds",
			Help:    "Time per output token of streamed responses after the first, by route and tenant.",
			Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25},
		}, []string{"route", "tenant"}),
		tenants: make(map[[2]string]*Tokens),
	}
}

func (v *tokenVecs) collectors() []prometheus.Collector {
	return []prometheus.Collector{v.tokens, v.refused, v.ttft, v.tpot}
}

// Tokens are one tenant's token admission metrics on one route.
type Tokens struct {
	In, Out            prometheus.Counter
	Refused, StreamCut prometheus.Counter
	TTFT, TPOT         prometheus.Observer
}

// Tokens returns the token admission metrics of tenant on the route named
// route.
func (m *Metrics) Tokens(route, tenant string) *Tokens {
	v := m.tokens
	v.mu.Lock()
	defer v.mu.Unlock()
	k := [2]string{route, tenant}
	if t := v.tenants[k]; t != nil {
		return t
	}
	t := &Tokens{
		In:        v.tokens.WithLabelValues(route, tenant, "in"),
		Out:       v.tokens.WithLabelValues(route, tenant, "out"),
		Refused:   v.refused.WithLabelValues(route, tenant, "refused"),
		StreamCut: v.refused.WithLabelValues(route, tenant, "stream_cut"),
		TTFT:      v.ttft.WithLabelValues(route, tenant),
		TPOT:      v.tpot.WithLabelValues(route, tenant),
	}
	v.tenants[k] = t
	return t
}
