package config_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/penstock-dev/penstock/internal/config"
)

// protectionYAML is a valid config whose one upstream gets block appended
// (indented under it).
func protectionYAML(block string) string {
	return `listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams:
  - name: models
    endpoints: [{address: "127.0.0.1:9001"}, {address: "127.0.0.1:9002"}]
` + block + `
routes: [{name: all, match: {path_prefix: /}, upstream: models}]
`
}

func TestProtectionDefaults(t *testing.T) {
	cfg, err := config.Parse([]byte(protectionYAML(`    health_check: {path: /healthz}
    outlier_detection: {}
    circuit_breaker: {}`)), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	u := cfg.Upstreams[0]
	s := func(d time.Duration) config.Duration { return config.Duration(d) }
	if h := *u.HealthCheck; h.Type != "http" || h.Path != "/healthz" || h.Interval != s(5*time.Second) ||
		h.Timeout != s(2*time.Second) || h.Rise != 2 || h.Fall != 3 || h.SlowStart != 0 || h.Jitter != 0 {
		t.Errorf("health_check defaults: %+v", h)
	}
	if o := *u.OutlierDetection; o.Interval != s(10*time.Second) || o.Consecutive5xx != 5 || o.ConsecutiveGatewayFailure != 5 ||
		o.SuccessRateStdevFactor != 1.9 || o.LatencyStdevFactor != 0 || o.MinimumHosts != 3 || o.RequestVolume != 50 ||
		o.BaseEjectionTime != s(30*time.Second) || o.MaxEjectionTime != s(300*time.Second) || o.MaxEjectionPercent != 10 {
		t.Errorf("outlier_detection defaults: %+v", o)
	}
	if b := *u.CircuitBreaker; b.Window != s(10*time.Second) || b.MinRequests != 20 || b.ErrorRatio != 0.5 ||
		b.SlowThreshold != 0 || b.SlowRatio != 0.5 || b.OpenDuration != s(10*time.Second) || b.MaxTrialRequests != 3 {
		t.Errorf("circuit_breaker defaults: %+v", b)
	}
	// Absent blocks stay absent: no protection unless asked for.
	cfg, err = config.Parse([]byte(protectionYAML("")), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg.SetDefaults()
	if u := cfg.Upstreams[0]; u.HealthCheck != nil || u.OutlierDetection != nil || u.CircuitBreaker != nil {
		t.Error("absent protection blocks were filled in")
	}
}

func TestProtectionValidation(t *testing.T) {
	tests := []struct {
		name  string
		block string
		want  []string // substrings of the error, each naming its field path
	}{
		{"valid tcp check", `    health_check: {type: tcp, interval: 1s, timeout: 500ms}`, nil},
		{"valid everything", `    health_check: {path: "/ready?deep=1", expected_statuses: [200, 204], body_regex: "ok|ready", slow_start: 30s, jitter: 1s}
    outlier_detection: {consecutive_5xx: -1, latency_stdev_factor: 2, max_ejection_percent: 50}
    circuit_breaker: {window: 30s, error_ratio: 0.25, slow_threshold: 2s, slow_ratio: 0.9}`, nil},
		{"valid warm-up", `    health_check: {path: /healthz, warmup: {path: /v1/predict, body: '{"x":1}', headers: {Content-Type: application/json}, requests: 20, max_latency: 200ms}}`, nil},
		{"bad warm-up", `    health_check: {warmup: {method: "GE T", path: predict, requests: 0, headers: {"a b": c}}}`,
			[]string{"health_check.warmup.method", "health_check.warmup.path", "health_check.warmup.headers"}},
		{"too many warm-up requests", `    health_check: {warmup: {requests: 20000}}`, []string{"health_check.warmup.requests", "between 1 and 10000"}},
		{"unknown check type", `    health_check: {type: grpc}`, []string{"upstreams[0].health_check.type", "unknown health check type"}},
		{"path without slash", `    health_check: {path: healthz}`, []string{"upstreams[0].health_check.path"}},
		{"http fields on a tcp check", `    health_check: {type: tcp, path: /x}`, []string{"upstreams[0].health_check.type", "http checks only"}},
		{"bad status", `    health_check: {expected_statuses: [200, 700]}`, []string{"upstreams[0].health_check.expected_statuses[1]", "700"}},
		{"bad regex", `    health_check: {body_regex: "ready("}`, []string{"upstreams[0].health_check.body_regex"}},
		{"negative rise and fall", `    health_check: {rise: -1, fall: -2}`, []string{"health_check.rise", "health_check.fall"}},
		{"negative jitter", `    health_check: {jitter: -1s}`, []string{"health_check.jitter"}},
		{"percent out of range", `    outlier_detection: {max_ejection_percent: 150}`, []string{"upstreams[0].outlier_detection.max_ejection_percent"}},
		{"max below base ejection time", `    outlier_detection: {base_ejection_time: 1m, max_ejection_time: 30s}`, []string{"outlier_detection.max_ejection_time"}},
		{"threshold below -1", `    outlier_detection: {consecutive_gateway_failure: -3}`, []string{"outlier_detection.consecutive_gateway_failure"}},
		{"negative factor", `    outlier_detection: {success_rate_stdev_factor: -0.5}`, []string{"outlier_detection.success_rate_stdev_factor"}},
		{"window not whole seconds", `    circuit_breaker: {window: 1500ms}`, []string{"upstreams[0].circuit_breaker.window"}},
		{"window too long", `    circuit_breaker: {window: 10m}`, []string{"circuit_breaker.window"}},
		{"ratio above one", `    circuit_breaker: {error_ratio: 1.5}`, []string{"circuit_breaker.error_ratio"}},
		{"no trials", `    circuit_breaker: {max_trial_requests: -1}`, []string{"circuit_breaker.max_trial_requests"}},
		{"unknown field", `    circuit_breaker: {open_duraton: 5s}`, []string{"open_duraton"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.Parse([]byte(protectionYAML(tt.block)), "p.yaml")
			if err == nil {
				cfg.SetDefaults()
				err = cfg.Validate()
			}
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// The protection blocks marshal back to YAML that decodes to the same
// values (the effective config shown by GET /config).
func TestProtectionRoundTrip(t *testing.T) {
	cfg, err := config.Parse([]byte(protectionYAML(`    health_check: {path: "/ready?deep=1", expected_statuses: [200], body_regex: "ok", jitter: 250ms, slow_start: 30s}
    outlier_detection: {consecutive_5xx: -1, latency_stdev_factor: 2.5, max_ejection_percent: 34}
    circuit_breaker: {window: 30s, error_ratio: 0.25, slow_threshold: 1500ms}`)), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg.SetDefaults()
	out, err := yaml.Marshal(cfg.Upstreams[0])
	if err != nil {
		t.Fatal(err)
	}
	var again config.Upstream
	if err := yaml.Unmarshal(out, &again); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	u := cfg.Upstreams[0]
	if !reflect.DeepEqual(u.HealthCheck, again.HealthCheck) || !reflect.DeepEqual(u.OutlierDetection, again.OutlierDetection) ||
		!reflect.DeepEqual(u.CircuitBreaker, again.CircuitBreaker) {
		t.Errorf("round trip changed the protection blocks:\n%s", out)
	}
}
