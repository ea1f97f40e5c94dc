package config

import (
	"strings"
	"testing"
	"time"
)

// TestRouteSplit checks a route's split block from YAML text: the defaults,
// values as written, and an error naming the field for each bad value.
func TestRouteSplit(t *testing.T) {
	const head = `listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams:
  - {name: v1, endpoints: [{address: "127.0.0.1:9"}]}
  - {name: v2, endpoints: [{address: "127.0.0.1:9"}]}
  - {name: shadow, endpoints: [{address: "127.0.0.1:9"}]}
routes:
  - name: r
    match: {path: /}
    upstream: v1
`
	const arms = `arms: [{name: stable, upstream: v1, weight: 90}, {name: canary, upstream: v2, weight: 10}]`
	tests := []struct {
		name  string
		split string // the route's split block
		check func(t *testing.T, s *RouteSplit)
		err   string // a substring of the error, "" for none
	}{
		{name: "defaults", split: `{` + arms + `, mirror: {upstream: shadow}}`, check: func(t *testing.T, s *RouteSplit) {
			m := s.Mirror
			if s.By != SplitByWeight || s.ArmHeader != "" || s.Force != nil || *m.Percent != 100 || m.MaxQueue != 64 ||
				m.Timeout.D() != 10*time.Second {
				t.Errorf("defaults: %+v, mirror %+v", s, m)
			}
		}},
		{name: "values as written", split: `{` + arms + `, by: key, key: {cookie: session}, arm_header: X-Penstock-Arm,
      force: {header: x-model-version, values: {v2: canary}}, mirror: {upstream: shadow, percent: 5, max_queue: 8, timeout: 2s}}`,
			check: func(t *testing.T, s *RouteSplit) {
				if s.By != SplitByKey || s.Key.Cookie != "session" || s.ArmHeader != "X-Penstock-Arm" ||
					s.Force.Header != "x-model-version" || s.Force.Values["v2"] != "canary" ||
					*s.Mirror.Percent != 5 || s.Mirror.MaxQueue != 8 || s.Mirror.Timeout.D() != 2*time.Second ||
					s.Arms[1].Weight != 10 {
					t.Errorf("values: %+v", s)
				}
			}},
		{name: "one arm", split: `{arms: [{name: a, upstream: v1, weight: 1}]}`, err: "routes[0].split.arms: needs at least two arms"},
		{name: "no weight", split: `{arms: [{name: a, upstream: v1}, {name: b, upstream: v2}]}`, err: "routes[0].split.arms: at least one arm needs a weight above 0"},
		{name: "negative weight", split: `{arms: [{name: a, upstream: v1, weight: -1}, {name: b, upstream: v2, weight: 1}]}`, err: "routes[0].split.arms[0].weight: must be between 0"},
		{name: "arm named twice", split: `{arms: [{name: a, upstream: v1, weight: 1}, {name: a, upstream: v2}]}`, err: `routes[0].split.arms[1].name: arm "a" is listed twice`},
		{name: "arm without a name", split: `{arms: [{upstream: v1, weight: 1}, {name: b, upstream: v2}]}`, err: "routes[0].split.arms[0].name: is required"},
		{name: "unknown upstream", split: `{arms: [{name: a, upstream: v1, weight: 1}, {name: b, upstream: v3}]}`, err: `routes[0].split.arms[1].upstream: unknown upstream "v3"`},
		{name: "pool of two arms", split: `{arms: [{name: a, upstream: v1, weight: 1}, {name: b, upstream: v1}]}`, err: `routes[0].split.arms[1].upstream: upstream "v1" is another arm's too`},
		{name: "baseline not an arm", split: `{arms: [{name: a, upstream: v2, weight: 1}, {name: b, upstream: shadow}]}`, err: `routes[0].upstream: must be the upstream of one of split.arms`},
		{name: "unknown mode", split: `{` + arms + `, by: trace}`, err: `routes[0].split.by: unknown split mode "trace"`},
		{name: "force without a source", split: `{` + arms + `, force: {values: {v2: canary}}}`, err: "routes[0].split.force: needs header or cookie"},
		{name: "force by both", split: `{` + arms + `, force: {header: a, cookie: b}}`, err: "routes[0].split.force.cookie: header and cookie cannot both be set"},
		{name: "force to an unknown arm", split: `{` + arms + `, force: {header: x, values: {v3: canaryy}}}`, err: `routes[0].split.force.values.v3: unknown arm "canaryy"`},
		{name: "bad key header", split: `{` + arms + `, by: key, key: {header: "a b"}}`, err: `routes[0].split.key.header: invalid header name "a b"`},
		{name: "mirror without upstream", split: `{` + arms + `, mirror: {percent: 5}}`, err: "routes[0].split.mirror.upstream: is required"},
		{name: "mirror percent above 100", split: `{` + arms + `, mirror: {upstream: shadow, percent: 101}}`, err: "routes[0].split.mirror.percent: must be between 0 and 100"},
		{name: "mirror queue too long", split: `{` + arms + `, mirror: {upstream: shadow, max_queue: 10001}}`, err: "routes[0].split.mirror.max_queue: must be between 1 and 10000"},
		{name: "bad arm header", split: `{` + arms + `, arm_header: "X Arm"}`, err: `routes[0].split.arm_header: invalid header name "X Arm"`},
		{name: "unknown field", split: `{` + arms + `, weights: [1]}`, err: "routes[0].split.weights: unknown field"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(head+"    split: "+tc.split+"\n"), "split.yaml")
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
			tc.check(t, cfg.Routes[0].Split)
		})
	}
}

// wantFieldError fails t unless err names the field and its line and
// carries the message of want, written "path: message".
func wantFieldError(t *testing.T, err error, want string) {
	t.Helper()
	path, msg, _ := strings.Cut(want, ": ")
	if err == nil || !strings.Contains(err.Error(), path+" (line ") || !strings.Contains(err.Error(), msg) {
		t.Fatalf("error %v, want %q", err, want)
	}
}
