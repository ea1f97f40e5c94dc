package config

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestSplitRollout checks a split's rollout block from YAML text: the
// defaults, values as written, and an error naming the field and line for
// each bad value.
func TestSplitRollout(t *testing.T) {
	const head = `listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams:
  - {name: v1, endpoints: [{address: "127.0.0.1:9"}]}
  - {name: v2, endpoints: [{address: "127.0.0.1:9"}]}
  - {name: v3, endpoints: [{address: "127.0.0.1:9"}]}
routes:
  - name: r
    match: {path: /}
    upstream: v1
    split:
`
	const two = "      arms: [{name: stable, upstream: v1, weight: 100}, {name: canary, upstream: v2}]\n"
	const three = "      arms: [{name: stable, upstream: v1, weight: 50}, {name: canary, upstream: v2}, {name: other, upstream: v3, weight: 50}]\n"
	tests := []struct {
		name    string
		arms    string
		rollout string
		check   func(t *testing.T, r *SplitRollout)
		err     string // "path: message" of the error, "" for none
	}{
		{name: "defaults", arms: two, rollout: `{}`, check: func(t *testing.T, r *SplitRollout) {
			var weights []int
			for _, s := range r.Steps {
				weights = append(weights, s.Weight)
				if s.Hold.D() != 30*time.Second || s.MinRequests != 0 {
					t.Errorf("step %+v, want held one window", s)
				}
			}
			if r.Canary != "canary" || len(weights) != 5 || weights[0] != 1 || weights[4] != 100 ||
				r.Window.D() != 30*time.Second || r.Slot.D() != 500*time.Millisecond ||
				*r.SLO != DefaultRolloutSLO() || r.Analysis != (RolloutAnalysis{MinRequests: 200, Alpha: 0.01, KSAlpha: 0.05, Resamples: 1000}) ||
				r.Webhook != nil || r.StateFile != "" {
				t.Errorf("defaults: %+v, steps %v, slo %+v", r, weights, r.SLO)
			}
		}},
		{name: "values as written", arms: three, rollout: `{canary: canary, steps: [{weight: 10, hold: 1m, min_requests: 500}, {weight: 100}],
        window: 10s, slot: 1s, slo: {max_error_rate: 0.02, max_p99: 300ms}, analysis: {min_requests: 50, alpha: 0.05, ks_alpha: 0.1, resamples: 200},
        state_file: /var/lib/penstock/r.json, webhook: {url: "https://hooks.example/x"}}`,
			check: func(t *testing.T, r *SplitRollout) {
				if r.Steps[0] != (RolloutStep{Weight: 10, Hold: Duration(time.Minute), MinRequests: 500}) || r.Steps[1].Hold.D() != 10*time.Second ||
					r.Slot.D() != time.Second || *r.SLO != (RolloutSLO{MaxErrorRate: 0.02, MaxP99: Duration(300 * time.Millisecond)}) ||
					r.Analysis.Resamples != 200 || r.StateFile != "/var/lib/penstock/r.json" || r.Webhook.Timeout.D() != 5*time.Second {
					t.Errorf("values: %+v", r)
				}
			}},
		{name: "canary required with three arms", arms: three, rollout: `{}`, err: "routes[0].split.rollout.canary: is required when the split has more than two arms"},
		{name: "unknown canary", arms: two, rollout: `{canary: canray}`, err: `routes[0].split.rollout.canary: unknown arm "canray"`},
		{name: "canary is the baseline", arms: two, rollout: `{canary: stable}`, err: `routes[0].split.rollout.canary: arm "stable" is the baseline`},
		{name: "arms weigh nothing", arms: "      arms: [{name: stable, upstream: v1}, {name: canary, upstream: v2}, {name: other, upstream: v3, weight: 1}]\n",
			rollout: `{canary: canary}`, err: "routes[0].split.rollout.canary: the baseline and canary arms weigh 0 together"},
		{name: "steps descend", arms: two, rollout: `{steps: [{weight: 50}, {weight: 10}]}`, err: "routes[0].split.rollout.steps[1].weight: steps must ascend: 10 after 50"},
		{name: "step above 100", arms: two, rollout: `{steps: [{weight: 150}]}`, err: "routes[0].split.rollout.steps[0].weight: must be between 1 and 100"},
		{name: "step without weight", arms: two, rollout: `{steps: [{hold: 1m}]}`, err: "routes[0].split.rollout.steps[0].weight: must be between 1 and 100"},
		{name: "window too short", arms: two, rollout: `{window: 500ms}`, err: "routes[0].split.rollout.window: must be between 1s and 1h"},
		{name: "slot above the window", arms: two, rollout: `{window: 10s, slot: 20s}`, err: "routes[0].split.rollout.slot: must be positive and at most the window"},
		{name: "too many slots", arms: two, rollout: `{window: 1h, slot: 100ms}`, err: "routes[0].split.rollout.slot: the window 1h0m0s holds at most 3600 slots: want a slot of at least 1s"},
		{name: "error rate above 1", arms: two, rollout: `{slo: {max_error_rate: 2}}`, err: "routes[0].split.rollout.slo.max_error_rate: must be between 0 and 1"},
		{name: "alpha", arms: two, rollout: `{analysis: {alpha: 0.7}}`, err: "routes[0].split.rollout.analysis.alpha: must be between 0 and 0.5"},
		{name: "resamples", arms: two, rollout: `{analysis: {resamples: 5}}`, err: "routes[0].split.rollout.analysis.resamples: must be between 10 and 100000"},
		{name: "webhook scheme", arms: two, rollout: `{webhook: {url: "ftp://x/y"}}`, err: `routes[0].split.rollout.webhook.url: want an http or https URL`},
		{name: "webhook without url", arms: two, rollout: `{webhook: {timeout: 1s}}`, err: "routes[0].split.rollout.webhook.url: is required"},
		{name: "unknown field", arms: two, rollout: `{stpes: []}`, err: "routes[0].split.rollout.stpes: unknown field"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(head+tc.arms+"      rollout: "+tc.rollout+"\n"), "rollout.yaml")
			if err == nil {
				err = cfg.Validate()
			}
			if tc.err != "" {
				wantFieldError(t, err, tc.err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, cfg.Routes[0].Split.Rollout)
		})
	}
}

// TestRolloutStateFile checks where a rollout keeps its state: where it
// says, else next to a configuration file, else nowhere.
func TestRolloutStateFile(t *testing.T) {
	text := []byte(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams: [{name: v1, endpoints: [{address: "127.0.0.1:9"}]}]
routes: [{name: r, match: {path: /}, upstream: v1}]
`)
	file := filepath.Join(t.TempDir(), "penstock.yaml")
	if err := os.WriteFile(file, text, 0o600); err != nil {
		t.Fatal(err)
	}
	loaded, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := Parse(text, "demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  *Config
		set  string
		want string
	}{
		{"set", parsed, "/var/lib/r.json", "/var/lib/r.json"},
		{"next to the file", loaded, "", file + ".rollout.predict.json"},
		{"in memory: none", parsed, "", ""},
	} {
		if got := tc.cfg.RolloutStateFile("predict", &SplitRollout{StateFile: tc.set}); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
