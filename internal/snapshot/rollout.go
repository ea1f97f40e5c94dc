package snapshot

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/metrics"
	"github.com/penstock-dev/penstock/internal/rollout"
	"github.com/penstock-dev/penstock/internal/split"
)

// rolloutControl returns the Control of route rc's rollout: the previous
// configuration's when nothing it depends on changed (so a reload neither
// resets nor pauses it), else a new one, which restores the state file's
// state if it was saved under the same definition.
func (s *Snapshot) rolloutControl(cfg *config.Config, rc *config.Route, m *metrics.Metrics, log *slog.Logger) (*split.Control, error) {
	sc := rc.Split
	ro := sc.Rollout
	var baseline string
	for _, a := range sc.Arms {
		if a.Upstream == rc.Upstream {
			baseline = a.Name
		}
	}
	def := RolloutDefinition(ro)
	o := split.ControlOptions{
		Route:      rc.Name,
		Baseline:   baseline,
		Canary:     ro.Canary,
		Definition: def,
		StateFile:  cfg.RolloutStateFile(rc.Name, ro),
		Logger:     log,
	}
	if w := ro.Webhook; w != nil {
		o.Webhook, o.WebhookTimeout = w.URL, w.Timeout.D()
	}
	// The key holds everything the Control depends on.
	b, err := json.Marshal(struct {
		Def       rollout.Definition
		StateFile string
		Arms      []config.SplitArm
		Canary    string
		Webhook   *config.RolloutWebhook
	}{def, o.StateFile, sc.Arms, ro.Canary, ro.Webhook})
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	key := "rollout/" + rc.Name + "/" + hex.EncodeToString(sum[:8])
	v, err := s.state.Keep(key, func() (any, error) {
		o.Metrics = rolloutMetrics{m.Rollout(rc.Name, ro.Canary)}
		if s.rollouts != nil {
			o.Shared = s.rollouts.Share(rc.Name)
		}
		c, err := split.NewControl(o)
		if err != nil {
			return nil, fmt.Errorf("route %q: rollout: %w", rc.Name, err)
		}
		return c, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*split.Control), nil
}

// RolloutDefinition converts a route's rollout settings (defaults applied)
// to the rollout engine's definition.
func RolloutDefinition(ro *config.SplitRollout) rollout.Definition {
	d := rollout.Definition{Window: ro.Window.D(), Slot: ro.Slot.D()}
	for _, st := range ro.Steps {
		d.Steps = append(d.Steps, rollout.Step{Weight: st.Weight, Hold: st.Hold.D(), MinRequests: st.MinRequests})
	}
	if slo := ro.SLO; slo != nil {
		d.SLO = rollout.SLO{MaxErrorRate: slo.MaxErrorRate, MaxErrorRateIncrease: slo.MaxErrorRateIncrease,
			MaxP99: slo.MaxP99.D(), MaxP99Increase: slo.MaxP99Increase, MaxTTFTIncrease: slo.MaxTTFTIncrease,
			MaxLatencyShift: slo.MaxLatencyShift}
	}
	a := ro.Analysis
	d.Analysis = rollout.Analysis{MinRequests: a.MinRequests, Alpha: a.Alpha, KSAlpha: a.KSAlpha, Resamples: a.Resamples}
	return d
}

// Rollouts returns the rollouts of the configuration being served, by
// route name (for the admin API).
func (s *Snapshot) Rollouts() []*split.Control {
	var out []*split.Control
	for _, v := range s.state.Values() {
		if c, ok := v.(*split.Control); ok {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Options().Route < out[j].Options().Route })
	return out
}

// Activate starts the rollouts of the configuration: called once it serves
// (at start and after a reload's swap), never for a configuration only
// checked or refused. Rollouts kept from the previous configuration run
// on.
func (s *Snapshot) Activate() {
	for _, c := range s.Rollouts() {
		c.Start()
	}
}

// rolloutMetrics adapts a route's rollout metrics to split.RolloutMetrics.
type rolloutMetrics struct{ *metrics.Rollout }

func (r rolloutMetrics) Analysis(v *rollout.Verdict) {
	figs := make(map[string]metrics.RolloutArmFigures, 2)
	for name, w := range map[string]*rollout.ArmWindow{"baseline": &v.Baseline, "canary": &v.Canary} {
		f := metrics.RolloutArmFigures{Requests: w.Requests, ErrorRatio: w.ErrorRate(), TokensPerSecond: w.TokenRate()}
		if p50, ok := w.LatencyQuantile(0.5); ok {
			p99, _ := w.LatencyQuantile(0.99)
			f.P50, f.P99, f.HasLatency = p50.Seconds(), p99.Seconds(), true
		}
		if p50, ok := w.TTFTQuantile(0.5); ok {
			p99, _ := w.TTFTQuantile(0.99)
			f.TTFTP50, f.TTFTP99, f.HasTTFTs = p50.Seconds(), p99.Seconds(), true
		}
		figs[name] = f
	}
	r.Rollout.Analysis(string(v.Outcome), figs)
}
