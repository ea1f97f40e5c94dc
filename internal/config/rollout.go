package config

import (
	"fmt"
	"net/url"
	"slices"
	"time"
)

// SplitRollout moves a split's traffic from the baseline arm (the one whose
// upstream is the route's) to a canary arm step by step, judging the canary
// against the baseline on live traffic at every step, and sends everything
// back to the baseline at the first breach of the SLO (see
// docs/rollouts.md). While a rollout runs, the canary's share of the
// traffic the two arms carry together (their configured weights added up)
// is the step's weight; other arms keep their weights. Requests whose arm a
// force header or cookie chose are served but not judged: they are not a
// random sample of the traffic.
type SplitRollout struct {
	// Canary is the arm the rollout moves traffic to. Default: the arm that
	// is not the baseline, when the split has exactly two; required with
	// more.
	Canary string `yaml:"canary"`
	// Steps are the canary's weights, in percent, ascending; 100 is the
	// promotion and ends the rollout. Default 1, 5, 25, 50, 100, each held
	// for one window.
	Steps []RolloutStep `yaml:"steps"`
	// Window is the analysis window: once per window, the last window of
	// traffic of the step is compared (duration, 1s–1h). Default 30s.
	Window Duration `yaml:"window"`
	// Slot is the sub-window: the unit of the sliding window and of the
	// latency tests' block resampling (duration; the window holds at most
	// 3600 of them). Default window/60.
	Slot Duration `yaml:"slot"`
	// SLO is what the canary must keep at every step. Absent: an error
	// rate at most one point above the baseline's, a P99 at most 25 % above
	// it, and no significant latency regression beyond 15 %.
	SLO *RolloutSLO `yaml:"slo"`
	// Analysis tunes the statistical tests.
	Analysis RolloutAnalysis `yaml:"analysis"`
	// StateFile is where the rollout's state (phase, step, history) is
	// kept, so that it survives a restart and a binary upgrade (a reload
	// keeps it in memory). Default: next to the configuration file,
	// FILE.rollout.ROUTE.json; none when the configuration has no file
	// (the built-in demo).
	StateFile string `yaml:"state_file"`
	// Webhook, when present, receives every event (started, advanced,
	// rolled back, paused, resumed, promoted, aborted) as a JSON POST.
	Webhook *RolloutWebhook `yaml:"webhook"`
}

// RolloutStep is one step of a rollout.
type RolloutStep struct {
	// Weight is the canary's share during the step, percent (1–100).
	// Required.
	Weight int `yaml:"weight"`
	// Hold is how long the step lasts at least (duration). Default: the
	// window.
	Hold Duration `yaml:"hold"`
	// MinRequests is how many canary requests the step's passing analyses
	// must have seen before it advances. Default 0 (hold alone decides).
	MinRequests int64 `yaml:"min_requests"`
}

// RolloutSLO is what a canary must keep; a zero field turns its check off.
// Each check is a one-sided test (see docs/rollouts.md for what each
// assumes).
type RolloutSLO struct {
	// MaxErrorRate is a ceiling on the canary's error rate (5xx, timeouts,
	// gateway failures), a fraction: 0.01 is 1 %.
	MaxErrorRate float64 `yaml:"max_error_rate"`
	// MaxErrorRateIncrease is how far the canary's error rate may exceed
	// the baseline's, in fraction points: 0.01 is one point.
	MaxErrorRateIncrease float64 `yaml:"max_error_rate_increase"`
	// MaxP99 is a ceiling on the canary's P99 latency (duration).
	MaxP99 Duration `yaml:"max_p99"`
	// MaxP99Increase is how much the canary's P99 may exceed the
	// baseline's, relative: 0.25 is 25 %.
	MaxP99Increase float64 `yaml:"max_p99_increase"`
	// MaxTTFTIncrease is how much the canary's time to first token (first
	// body byte of a text/event-stream response) may exceed the baseline's
	// at P50 or P99, relative.
	MaxTTFTIncrease float64 `yaml:"max_ttft_increase"`
	// MaxLatencyShift turns on the "no significant latency regression"
	// check: the block-permutation KS test finds the latency distributions
	// different and the canary's P50 or P99 is slower by more than this
	// fraction.
	MaxLatencyShift float64 `yaml:"max_latency_shift"`
}

// RolloutAnalysis tunes the tests of a rollout's analyses.
type RolloutAnalysis struct {
	// MinRequests is the number of requests each arm needs in a window
	// before any verdict (1 or more). Default 200.
	MinRequests int64 `yaml:"min_requests"`
	// Alpha is the one-sided significance level of the error-rate tests
	// and the percentile bounds (0–0.5, exclusive). Default 0.01.
	Alpha float64 `yaml:"alpha"`
	// KSAlpha is the significance level of the KS test of the regression
	// check (0–0.5, exclusive). Default 0.05.
	KSAlpha float64 `yaml:"ks_alpha"`
	// Resamples is the number of block-bootstrap resamples and
	// permutations (10–100000). Default 1000.
	Resamples int `yaml:"resamples"`
}

// RolloutWebhook is where a rollout's events are posted.
type RolloutWebhook struct {
	// URL is an http or https URL. Required.
	URL string `yaml:"url"`
	// Timeout bounds each POST (duration). Default 5s.
	Timeout Duration `yaml:"timeout"`
}

// Rollout defaults and bounds.
const (
	DefaultRolloutWindow      = Duration(30 * time.Second)
	DefaultRolloutSlots       = 60
	DefaultRolloutMinRequests = 200
	DefaultRolloutAlpha       = 0.01
	DefaultRolloutKSAlpha     = 0.05
	DefaultRolloutResamples   = 1000
	DefaultWebhookTimeout     = Duration(5 * time.Second)
	MaxRolloutSlots           = 3600
)

// DefaultRolloutSteps are SplitRollout.Steps' default weights.
var DefaultRolloutSteps = []int{1, 5, 25, 50, 100}

// DefaultRolloutSLO is SplitRollout.SLO's default.
func DefaultRolloutSLO() RolloutSLO {
	return RolloutSLO{MaxErrorRateIncrease: 0.01, MaxP99Increase: 0.25, MaxLatencyShift: 0.15}
}

// setDefaults fills r's unset fields; arms are the split's.
func (r *SplitRollout) setDefaults(arms []SplitArm, baseline string) {
	if r.Canary == "" && len(arms) == 2 {
		for _, a := range arms {
			if a.Upstream != baseline {
				r.Canary = a.Name
			}
		}
	}
	if len(r.Steps) == 0 {
		for _, w := range DefaultRolloutSteps {
			r.Steps = append(r.Steps, RolloutStep{Weight: w})
		}
	}
	setDefault(&r.Window, DefaultRolloutWindow)
	setDefault(&r.Slot, r.Window/DefaultRolloutSlots)
	for i := range r.Steps {
		setDefault(&r.Steps[i].Hold, r.Window)
	}
	if r.SLO == nil {
		slo := DefaultRolloutSLO()
		r.SLO = &slo
	}
	a := &r.Analysis
	setDefault(&a.MinRequests, DefaultRolloutMinRequests)
	setDefault(&a.Alpha, DefaultRolloutAlpha)
	setDefault(&a.KSAlpha, DefaultRolloutKSAlpha)
	setDefault(&a.Resamples, DefaultRolloutResamples)
	if w := r.Webhook; w != nil {
		setDefault(&w.Timeout, DefaultWebhookTimeout)
	}
}

// validate checks r, the rollout of a split at path p (…split.rollout)
// whose baseline pool is baseline.
func (r *SplitRollout) validate(col *Collector, p string, arms []SplitArm, baseline string) {
	var names []string
	var canary *SplitArm
	for i := range arms {
		names = append(names, arms[i].Name)
		if arms[i].Name == r.Canary {
			canary = &arms[i]
		}
	}
	switch {
	case r.Canary == "" && len(arms) > 2:
		col.Addf(p+".canary", "is required when the split has more than two arms")
	case r.Canary == "":
	case canary == nil:
		col.Addf(p+".canary", "unknown arm %q%s", r.Canary, didYouMean(r.Canary, names))
	case canary.Upstream == baseline:
		col.Addf(p+".canary", "arm %q is the baseline (its upstream is the route's); name another arm", r.Canary)
	}
	if canary != nil {
		total := canary.Weight
		for _, a := range arms {
			if a.Upstream == baseline {
				total += a.Weight
			}
		}
		if total <= 0 {
			col.Addf(p+".canary", "the baseline and canary arms weigh 0 together: the rollout would move no traffic")
		}
	}
	prev := 0
	for i, s := range r.Steps {
		sp := indexPath(p+".steps", i)
		switch {
		case s.Weight < 1 || s.Weight > 100:
			col.Addf(sp+".weight", "must be between 1 and 100 (percent), got %d", s.Weight)
		case s.Weight <= prev:
			col.Addf(sp+".weight", "steps must ascend: %d after %d", s.Weight, prev)
		}
		prev = max(prev, s.Weight)
		checkDuration(col, sp+".hold", s.Hold)
		if s.MinRequests < 0 {
			col.Addf(sp+".min_requests", "must not be negative, got %d", s.MinRequests)
		}
	}
	switch {
	case r.Window < Duration(time.Second) || r.Window > Duration(time.Hour):
		col.Addf(p+".window", "must be between 1s and 1h, got %s", r.Window)
	case r.Slot <= 0 || r.Slot > r.Window:
		col.Addf(p+".slot", "must be positive and at most the window (%s), got %s", r.Window, r.Slot)
	case r.Window/r.Slot > MaxRolloutSlots:
		col.Addf(p+".slot", "the window %s holds at most %d slots: want a slot of at least %s, got %s",
			r.Window, MaxRolloutSlots, Duration((r.Window.D()+MaxRolloutSlots-1)/MaxRolloutSlots), r.Slot)
	}
	if s := r.SLO; s != nil {
		fraction := func(f string, v, hi float64) {
			if !(v >= 0 && v <= hi) {
				col.Addf(p+".slo."+f, "must be between 0 and %v, got %v", hi, v)
			}
		}
		fraction("max_error_rate", s.MaxErrorRate, 1)
		fraction("max_error_rate_increase", s.MaxErrorRateIncrease, 1)
		fraction("max_p99_increase", s.MaxP99Increase, 100)
		fraction("max_ttft_increase", s.MaxTTFTIncrease, 100)
		fraction("max_latency_shift", s.MaxLatencyShift, 100)
		checkDuration(col, p+".slo.max_p99", s.MaxP99)
	}
	a := r.Analysis
	if a.MinRequests < 1 {
		col.Addf(p+".analysis.min_requests", "must be at least 1, got %d", a.MinRequests)
	}
	if !(a.Alpha > 0 && a.Alpha < 0.5) {
		col.Addf(p+".analysis.alpha", "must be between 0 and 0.5 (exclusive), got %v", a.Alpha)
	}
	if !(a.KSAlpha > 0 && a.KSAlpha < 0.5) {
		col.Addf(p+".analysis.ks_alpha", "must be between 0 and 0.5 (exclusive), got %v", a.KSAlpha)
	}
	if a.Resamples < 10 || a.Resamples > 100000 {
		col.Addf(p+".analysis.resamples", "must be between 10 and 100000, got %d", a.Resamples)
	}
	if w := r.Webhook; w != nil {
		if err := checkWebhookURL(w.URL); err != nil {
			col.Addf(p+".webhook.url", "%v", err)
		}
		if w.Timeout <= 0 {
			col.Addf(p+".webhook.timeout", "must be positive, got %s", w.Timeout)
		}
	}
}

func checkWebhookURL(s string) error {
	if s == "" {
		return fmt.Errorf("is required")
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return fmt.Errorf("invalid URL %q: %v", s, err)
	case !slices.Contains([]string{"http", "https"}, u.Scheme):
		return fmt.Errorf("want an http or https URL, got %q", s)
	case u.Host == "":
		return fmt.Errorf("URL %q has no host", s)
	}
	return nil
}

// RolloutStateFile returns where the rollout of the route named route keeps
// its state: r.StateFile, else next to the configuration file c was loaded
// from (by Load), else "" (none: a configuration in memory, such as the
// built-in demo's).
func (c *Config) RolloutStateFile(route string, r *SplitRollout) string {
	if r.StateFile != "" {
		return r.StateFile
	}
	if c.src != nil && c.src.onDisk {
		return c.src.file + ".rollout." + route + ".json"
	}
	return ""
}
