package config

import (
	"strings"
	"testing"
	"time"
)

// TestRouteRetry checks a route's retry block from YAML text: the defaults,
// values as written, and an error naming the field for each bad value.
func TestRouteRetry(t *testing.T) {
	const head = `listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams: [{name: up, endpoints: [{address: "127.0.0.1:9"}]}]
routes:
  - name: r
    match: {path: /}
    upstream: up
`
	tests := []struct {
		name  string
		retry string // the route's retry block, "" for none
		check func(t *testing.T, r *RouteRetry)
		err   string // a substring of the error, "" for none
	}{
		{name: "no block: connect failures on three endpoints", check: func(t *testing.T, r *RouteRetry) {
			if r.Attempts != 3 || strings.Join(r.On, ",") != "connect_failure" ||
				strings.Join(r.Methods, ",") != "GET,HEAD,OPTIONS,PUT,DELETE,TRACE" || r.PerTryTimeout != 0 ||
				r.Backoff.Base.D() != 25*time.Millisecond || r.Backoff.Max.D() != 250*time.Millisecond ||
				*r.Budget.Percent != 20 || *r.Budget.MinPerSecond != 10 || r.Budget.Window.D() != 10*time.Second {
				t.Errorf("defaults: %+v", r)
			}
		}},
		{name: "values as written", retry: `{attempts: 2, on: [reset, timeout, 503], methods: [GET, POST], per_try_timeout: 200ms,
      backoff: {base: 10ms, max: 1s}, budget: {percent: 0, min_per_second: 0, window: 1m}}`,
			check: func(t *testing.T, r *RouteRetry) {
				if r.Attempts != 2 || strings.Join(r.On, ",") != "reset,timeout,503" || strings.Join(r.Methods, ",") != "GET,POST" ||
					r.PerTryTimeout.D() != 200*time.Millisecond || r.Backoff.Base.D() != 10*time.Millisecond ||
					r.Backoff.Max.D() != time.Second || *r.Budget.Percent != 0 || *r.Budget.MinPerSecond != 0 ||
					r.Budget.Window.D() != time.Minute {
					t.Errorf("values: %+v", r)
				}
			}},
		{name: "a base above the default max raises the max", retry: `{backoff: {base: 1s}}`, check: func(t *testing.T, r *RouteRetry) {
			if r.Backoff.Max.D() != time.Second {
				t.Errorf("max %v, want 1s", r.Backoff.Max)
			}
		}},
		{name: "negative attempts", retry: `{attempts: -1}`, err: "routes[0].retry.attempts: must be between 1 and 10, got -1"},
		{name: "attempts above the bound", retry: `{attempts: 11}`, err: "routes[0].retry.attempts: must be between 1 and 10"},
		{name: "unknown condition", retry: `{on: [resett]}`, err: `routes[0].retry.on[0]: unknown retry condition "resett"`},
		{name: "condition listed twice", retry: `{on: [503, 503]}`, err: `routes[0].retry.on[1]: "503" is listed twice`},
		{name: "500 is not a condition", retry: `{on: [500]}`, err: `routes[0].retry.on[0]: unknown retry condition "500"`},
		{name: "lowercase method", retry: `{methods: [get]}`, err: `routes[0].retry.methods[0]: method "get" must be uppercase`},
		{name: "max below base", retry: `{backoff: {base: 100ms, max: 50ms}}`, err: "routes[0].retry.backoff.max: must be at least backoff.base"},
		{name: "percent above 100", retry: `{budget: {percent: 150}}`, err: "routes[0].retry.budget.percent: must be between 0 and 100"},
		{name: "negative minimum", retry: `{budget: {min_per_second: -1}}`, err: "routes[0].retry.budget.min_per_second: must be between 0"},
		{name: "window too short", retry: `{budget: {window: 100ms}}`, err: "routes[0].retry.budget.window: must be between 1s and 10m"},
		{name: "unknown field", retry: `{attempt: 2}`, err: "routes[0].retry.attempt: unknown field"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			text := head
			if tc.retry != "" {
				text += "    retry: " + tc.retry + "\n"
			}
			cfg, err := Parse([]byte(text), "retry.yaml")
			if err == nil {
				err = cfg.Validate()
			}
			if tc.err != "" {
				// "path: message" is written "path (line N): message".
				path, msg, _ := strings.Cut(tc.err, ": ")
				if err == nil || !strings.Contains(err.Error(), path+" (line 7)") || !strings.Contains(err.Error(), msg) {
					t.Fatalf("error %v, want %q at line 7", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, &cfg.Routes[0].Retry)
		})
	}
}
