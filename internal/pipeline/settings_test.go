package pipeline

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/penstock-dev/penstock/internal/config"
)

// parseRoute parses a config whose one route ends with the route fields in
// fields (indented 4), as the file would be written from line 7 on.
func parseRoute(t testing.TB, fields string) *config.Config {
	t.Helper()
	const head = `listeners: [{name: web, address: "127.0.0.1:8080"}]
upstreams: [{name: app, endpoints: [{address: "127.0.0.1:9000"}]}]
routes:
  - name: predict
    match: {path: "/v1/models/:model/predict"}
    upstream: app
`
	cfg, err := config.Parse([]byte(head+fields), "")
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return cfg
}

// errorLines returns err's lines, or none for nil.
func errorLines(err error) []string {
	if err == nil {
		return nil
	}
	return strings.Split(err.Error(), "\n")
}

// TestStageSettingsErrors checks that the stages' own fields are decoded
// as strictly as the rest of the file and checked by their stages, every
// error naming the field path and line as config errors always did.
func TestStageSettingsErrors(t *testing.T) {
	tests := []struct {
		name   string
		fields string // appended to the route (indented 4); its first line is line 7
		want   []string
	}{
		{
			name: "every stage's fields, valid",
			fields: `    early_data: true
    max_request_body: 1MiB
    early_hints:
      - "</v1/models/:model/assets/tokenizer.bin>; rel=preload; as=fetch"
      - "<https://cdn.example.com:8443/static/app.js>; rel=preload; as=script"
    push: {enabled: true, max_resources: 2, max_bytes: 64KiB}
    cache: {enabled: true, max_bytes: 1MiB, max_object_bytes: 64KiB, default_ttl: 30s}
`,
		},
		{
			name: "unknown route field, with a suggestion among the stages' fields",
			fields: `    max_request_bdy: 1MiB
    early_hint: ["</a>; rel=preload"]
    retries: 3
`,
			want: []string{
				`routes[0].max_request_bdy (line 7): unknown field; did you mean "max_request_body"?`,
				`routes[0].early_hint (line 8): unknown field; did you mean "early_hints"?`,
				`routes[0].retries (line 9): unknown field`,
			},
		},
		{
			name: "unknown field inside a stage's block",
			fields: `    cache: {enabled: true, max_byte: 1MiB}
    push:
      enable: true
`,
			want: []string{
				`routes[0].cache.max_byte (line 7): unknown field; did you mean "max_bytes"?`,
				`routes[0].push.enable (line 9): unknown field; did you mean "enabled"?`,
			},
		},
		{
			name: "values of the wrong type",
			fields: `    early_data: yes please
    early_hints: "</a>; rel=preload"
    cache: [enabled]
    push: {max_resources: many}
`,
			want: []string{
				`routes[0].early_data (line 7): must be true or false, got "yes please"`,
				`routes[0].early_hints (line 8): must be a list, got "</a>; rel=preload"`,
				`routes[0].cache (line 9): must be a mapping, got a list`,
				`routes[0].push.max_resources (line 10): must be an integer, got "many"`,
			},
		},
		{
			name: "bad sizes and durations",
			fields: `    max_request_body: 10 megabytes
    cache: {max_bytes: -1, max_object_bytes: 1.5MiB, default_ttl: 5}
    push: {max_bytes: [1]}
`,
			want: []string{
				`routes[0].max_request_body (line 7): invalid size "10 megabytes": use bytes or a whole number with a unit such as "64KiB", "10MiB" or "10MB"`,
				`routes[0].cache.max_bytes (line 8): invalid size -1: must not be negative`,
				`routes[0].cache.max_object_bytes (line 8): invalid size "1.5MiB": use bytes or a whole number with a unit such as "64KiB", "10MiB" or "10MB"`,
				`routes[0].cache.default_ttl (line 8): invalid duration 5: add a unit, e.g. "5s" or "5ms"`,
				`routes[0].push.max_bytes (line 9): must be a size such as 65536 or "64KiB", got a list`,
			},
		},
		{
			name: "unknown parameter names the field and the pattern",
			fields: `    early_hints:
      - "</v1/models/:model/assets/:file>; rel=preload"
`,
			want: []string{`routes[0].early_hints[0] (line 8): parameter ":file" is not in the route's path pattern "/v1/models/:model/predict" (it has :model)`},
		},
		{
			name: "malformed links",
			fields: `    early_hints:
      - "/v1/models/:model/assets/a.bin; rel=preload"
      - "</v1/a.bin; rel=preload"
      - "<>; rel=preload"
      - "</v1/:/a>; rel=preload"
      - "</a>; rel=preload\r\nX-Injected: 1"
`,
			want: []string{
				`routes[0].early_hints[0] (line 8): must start with "<" (a Link value: "</path>; rel=preload")`,
				`routes[0].early_hints[1] (line 9): has no ">" closing the link target`,
				`routes[0].early_hints[2] (line 10): has an empty link target`,
				`routes[0].early_hints[3] (line 11): has an unnamed parameter at byte 4 of the target`,
				`routes[0].early_hints[4] (line 12): contains control character 0x0d`,
			},
		},
		{
			name: "push without links and a negative bound",
			fields: `    push: {enabled: true, max_resources: -1}
`,
			want: []string{
				`routes[0].push.max_resources (line 7): must not be negative, got -1`,
				`routes[0].push.enabled (line 7): push sends the route's early_hints targets, and it has none`,
			},
		},
		{
			name: "cache object larger than the cache",
			fields: `    cache: {enabled: true, max_bytes: 1KiB, max_object_bytes: 2KiB}
`,
			want: []string{
				`routes[0].cache.max_object_bytes (line 7): must not exceed cache.max_bytes (1KiB), got 2KiB`,
			},
		},
		{
			name: "anchors and merge keys work in stage fields",
			fields: `    <<: {cache: &c {enabled: true, max_bytes: 1KiB, max_object_bytes: 2KiB}}
`,
			want: []string{
				`routes[0].cache.max_object_bytes (line 7): must not exceed cache.max_bytes (1KiB), got 2KiB`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const head = `listeners: [{name: web, address: "127.0.0.1:8080"}]
upstreams: [{name: app, endpoints: [{address: "127.0.0.1:9000"}]}]
routes:
  - name: predict
    match: {path: "/v1/models/:model/predict"}
    upstream: app
`
			// config keeps the stage fields as written: the file decodes.
			cfg, err := config.Parse([]byte(head+tt.fields), "")
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			// Check (a config.Checker) reports every problem.
			if got := errorLines(Standard().Check(cfg)); !slices.Equal(got, tt.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			// Build reports the same problems when it is given the route.
			_, err = Standard().Build(cfg, 0, terminalFunc(), nil)
			if got := errorLines(err); !slices.Equal(got, tt.want) {
				t.Errorf("Build errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// TestStageSettingsFromTheFile decodes the stages' fields of config's full
// example, with their defaults.
func TestStageSettingsFromTheFile(t *testing.T) {
	cfg, err := config.Load("../config/testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := Standard().Check(cfg); err != nil {
		t.Fatalf("Check: %v", err)
	}
	var body BodyLimitSettings
	var hints EarlyHintsSettings
	if err := cfg.DecodeStageFields(0, &body); err != nil {
		t.Fatal(err)
	}
	if err := cfg.DecodeStageFields(0, &hints); err != nil {
		t.Fatal(err)
	}
	if body.MaxRequestBody.Int64() != 1<<20 {
		t.Errorf("max_request_body = %v, want 1MiB", body.MaxRequestBody)
	}
	if len(hints.EarlyHints) != 1 || !hints.Push.Enabled || hints.Push.MaxResources != 2 || hints.Push.MaxBytes.Int64() != 128<<10 {
		t.Errorf("early hints %q, push %+v", hints.EarlyHints, hints.Push)
	}
	var cs CacheSettings
	if err := cfg.DecodeStageFields(1, &cs); err != nil {
		t.Fatal(err)
	}
	if c := cs.Cache; !c.Enabled || c.MaxBytes.Int64() != 32<<20 || c.MaxObjectBytes.Int64() != 512<<10 || c.DefaultTTL.D() != time.Minute {
		t.Errorf("cache = %+v", c)
	}
}

// TestStageDefaults checks each stage's defaults for a route that sets
// none of its fields.
func TestStageDefaults(t *testing.T) {
	cfg := parseRoute(t, "")
	var body BodyLimitSettings
	var hints EarlyHintsSettings
	var cs CacheSettings
	var early EarlyDataSettings
	for _, s := range []Settings{&body, &hints, &cs, &early} {
		if err := cfg.DecodeStageFields(0, s); err != nil {
			t.Fatal(err)
		}
		s.SetDefaults()
	}
	check := func(field string, got, want any) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %v, want %v", field, got, want)
		}
	}
	check("max_request_body", body.MaxRequestBody, config.ByteSize(10<<20))
	check("early_data", early.EarlyData, false)
	check("early_hints", len(hints.EarlyHints), 0)
	check("push.enabled", hints.Push.Enabled, false)
	check("push.max_resources", hints.Push.MaxResources, 4)
	check("push.max_bytes", hints.Push.MaxBytes, config.ByteSize(256<<10))
	check("cache.enabled", cs.Cache.Enabled, false)
	check("cache.max_bytes", cs.Cache.MaxBytes, config.ByteSize(64<<20))
	check("cache.max_object_bytes", cs.Cache.MaxObjectBytes, config.ByteSize(1<<20))
	check("cache.default_ttl", cs.Cache.DefaultTTL, config.Duration(0))

	// Defaults apply once: a second pass changes nothing.
	before := cs
	cs.SetDefaults()
	check("cache after a second SetDefaults", cs, before)
}

// TestWithDefaultsShowsEveryStageField checks the effective configuration:
// every stage field of every route, with its default when the file does not
// set it, and the config it was made from unchanged.
func TestWithDefaultsShowsEveryStageField(t *testing.T) {
	cfg := parseRoute(t, "    cache: {enabled: true}\n    max_request_body: 1KiB\n")
	eff := Standard().WithDefaults(cfg)

	var got []string
	for _, name := range slices.Sorted(maps.Keys(eff.Routes[0].Stages)) {
		b, err := yaml.Marshal(map[string]*yaml.Node{name: eff.Routes[0].Stages[name]})
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, strings.TrimSpace(string(b)))
	}
	want := []string{
		"cache:\n    enabled: true\n    max_bytes: 64MiB\n    max_object_bytes: 1MiB\n    default_ttl: 0s",
		"concurrency:\n    max_in_flight: 0\n    max_queue: 0\n    queue_timeout: 1s\n    key: \"\"\n    max_keys: 10000\n    scope: route\n" +
			"    adaptive:\n        enabled: false\n        min_limit: 3\n        max_limit: 1000\n        initial_limit: 20\n        sample_window: 100ms\n" +
			"        tolerance: 1.25\n        percentile: !!float 50\n        min_rtt_interval: 1m0s\n        min_rtt_samples: 50",
		"early_data: false",
		"early_hints: []",
		"grpc_web: false",
		"limits: []",
		"max_request_body: 1KiB",
		"push:\n    enabled: false\n    max_resources: 4\n    max_bytes: 256KiB",
	}
	if !slices.Equal(got, want) {
		t.Errorf("effective stage fields:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(cfg.Routes[0].Stages) != 2 {
		t.Errorf("the config given to WithDefaults changed: stage fields %v", slices.Collect(maps.Keys(cfg.Routes[0].Stages)))
	}
	// The effective configuration decodes to the same settings.
	if err := Standard().Check(eff); err != nil {
		t.Errorf("Check of the effective config: %v", err)
	}
	if eff.Line("routes[0].cache") != cfg.Line("routes[0].cache") {
		t.Error("the effective config lost the file's lines")
	}
}
