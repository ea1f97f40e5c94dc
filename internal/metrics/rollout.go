package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// rolloutVecs are the metrics of progressive rollouts (internal/split
// drives them): the canary's weight, the phase, events and analyses, and
// each arm's figures over the last analysed window, so that a dashboard
// shows what the rollout saw without a query language.
type rolloutVecs struct {
	weight   *prometheus.GaugeVec
	phase    *prometheus.GaugeVec
	events   *prometheus.CounterVec
	analyses *prometheus.CounterVec
	requests *prometheus.GaugeVec
	errors   *prometheus.GaugeVec
	latency  *prometheus.GaugeVec
	ttft     *prometheus.GaugeVec
	tokens   *prometheus.GaugeVec
}

func newRolloutVecs() rolloutVecs {
	g := func(name, help string, labels ...string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	}
	c := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	return rolloutVecs{
		weight: g("penstock_rollout_canary_weight_percent",
			"The canary's share of the traffic of a rollout's two arms, percent.", "route", "canary"),
		phase: g("penstock_rollout_phase",
			"1 for a rollout's current phase (progressing, paused, rolled_back, promoted, aborted), 0 for the others.", "route", "phase"),
		events: c("penstock_rollout_events_total",
			"Rollout events by kind (started, advanced, rolled_back, paused, resumed, promoted, aborted, restored).", "route", "kind"),
		analyses: c("penstock_rollout_analyses_total",
			"Rollout analyses by outcome (pass, fail, inconclusive).", "route", "outcome"),
		requests: g("penstock_rollout_window_requests",
			"Requests of each arm (baseline, canary) in the last analysed window.", "route", "arm"),
		errors: g("penstock_rollout_window_error_ratio",
			"Error rate of each arm in the last analysed window (5xx, timeouts, gateway failures).", "route", "arm"),
		latency: g("penstock_rollout_window_latency_seconds",
			"Latency quantiles of each arm's successful requests in the last analysed window.", "route", "arm", "quantile"),
		ttft: g("penstock_rollout_window_ttft_seconds",
			"Time-to-first-token quantiles of each arm's streamed responses in the last analysed window.", "route", "arm", "quantile"),
		tokens: g("penstock_rollout_window_tokens_per_second",
			"Events streamed per second after the first (the output token rate) by each arm in the last analysed window.", "route", "arm"),
	}
}

func (v *rolloutVecs) collectors() []prometheus.Collector {
	return []prometheus.Collector{v.weight, v.phase, v.events, v.analyses, v.requests, v.errors, v.latency, v.ttft, v.tokens}
}

// RolloutPhases are the phase label values of penstock_rollout_phase.
var RolloutPhases = [...]string{"progressing", "paused", "rolled_back", "promoted", "aborted"}

// Rollout is the handle of one route's rollout metrics. Its methods are
// called by the rollout's control goroutine, not per request.
type Rollout struct {
	v      *rolloutVecs
	route  string
	weight prometheus.Gauge
}

// RolloutArmFigures are one arm's figures over an analysed window;
// HasLatency and HasTTFTs say whether its quantiles could be computed.
type RolloutArmFigures struct {
	Requests             int64
	ErrorRatio           float64
	P50, P99             float64 // seconds
	TTFTP50, TTFTP99     float64 // seconds
	TokensPerSecond      float64
	HasLatency, HasTTFTs bool
}

// Rollout returns the metrics handle of the rollout of the split route
// named route, whose canary arm is canary.
func (m *Metrics) Rollout(route, canary string) *Rollout {
	v := &m.split.rollout
	return &Rollout{v: v, route: route, weight: v.weight.WithLabelValues(route, canary)}
}

// Weight sets the canary's weight, percent.
func (r *Rollout) Weight(w int) { r.weight.Set(float64(w)) }

// Phase marks phase as the current one.
func (r *Rollout) Phase(phase string) {
	for _, p := range RolloutPhases {
		g := r.v.phase.WithLabelValues(r.route, p)
		if p == phase {
			g.Set(1)
		} else {
			g.Set(0)
		}
	}
}

// Event counts one event of kind.
func (r *Rollout) Event(kind string) { r.v.events.WithLabelValues(r.route, kind).Inc() }

// Analysis counts one analysis with outcome and sets each arm's figures.
func (r *Rollout) Analysis(outcome string, arms map[string]RolloutArmFigures) {
	r.v.analyses.WithLabelValues(r.route, outcome).Inc()
	for arm, f := range arms {
		r.v.requests.WithLabelValues(r.route, arm).Set(float64(f.Requests))
		r.v.errors.WithLabelValues(r.route, arm).Set(f.ErrorRatio)
		if f.HasLatency {
			r.v.latency.WithLabelValues(r.route, arm, "0.5").Set(f.P50)
			r.v.latency.WithLabelValues(r.route, arm, "0.99").Set(f.P99)
		}
		if f.TokensPerSecond > 0 {
			r.v.tokens.WithLabelValues(r.route, arm).Set(f.TokensPerSecond)
		}
		if f.HasTTFTs {
			r.v.ttft.WithLabelValues(r.route, arm, "0.5").Set(f.TTFTP50)
			r.v.ttft.WithLabelValues(r.route, arm, "0.99").Set(f.TTFTP99)
		}
	}
}
