package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// text drops the newline after a raw string's opening backquote, so that
// the first YAML line of a case is line 1.
func text(s string) []byte { return []byte(strings.TrimPrefix(s, "\n")) }

// minimalYAML is a valid config; decode cases append to it or replace it.
const minimalYAML = `
listeners:
  - name: web
    address: "127.0.0.1:8080"
upstreams:
  - name: app
    endpoints:
      - address: "127.0.0.1:9000"
routes:
  - name: all
    match:
      path_prefix: /
    upstream: app
`

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // every error line, in order
	}{
		{
			name: "empty file",
			yaml: "",
			want: []string{`config is empty`},
		},
		{
			name: "only comments",
			yaml: "# nothing here\n\n",
			want: []string{`config is empty`},
		},
		{
			name: "explicit null document",
			yaml: "---\n~\n",
			want: []string{`line 1: config is empty`},
		},
		{
			name: "yaml syntax error",
			yaml: `
listeners:
  - name: web
    address ":8080"
    protocols: [h1]
`,
			want: []string{`line 3: invalid YAML: could not find expected ':'`},
		},
		{
			name: "tab indentation",
			yaml: "listeners:\n\t- name: web\n",
			want: []string{`line 2: invalid YAML: found character that cannot start any token`},
		},
		{
			name: "two documents",
			yaml: minimalYAML + "---\nlisteners: []\n",
			want: []string{`line 13: a second YAML document starts here; a config file holds exactly one`},
		},
		{
			name: "top level is a list",
			yaml: "- listeners\n",
			want: []string{`line 1: the config must be a mapping of top-level fields (listeners, upstreams, routes, ...), got a list`},
		},
		{
			name: "unknown top-level field",
			yaml: minimalYAML + "routez: []\n",
			want: []string{`routez (line 13): unknown field; did you mean "routes"?`},
		},
		{
			name: "unknown nested field",
			yaml: `
listeners:
  - name: web
    address: ":8080"
    limits:
      read_timeout: 5s
`,
			want: []string{`listeners[0].limits.read_timeout (line 5): unknown field; did you mean "send_timeout"?`},
		},
		{
			name: "unknown fields in several list items are all reported",
			yaml: `
upstreams:
  - name: a
    endpoints:
      - address: "10.0.0.1:80"
        wieght: 2
      - address: "10.0.0.2:80"
        port: 80
  - name: b
    endpoint: []
`,
			want: []string{
				`upstreams[0].endpoints[0].wieght (line 5): unknown field; did you mean "weight"?`,
				`upstreams[0].endpoints[1].port (line 7): unknown field`,
				`upstreams[1].endpoint (line 9): unknown field; did you mean "endpoints"?`,
			},
		},
		{
			name: "duplicate key",
			yaml: `
logging:
  level: info
  level: debug
`,
			want: []string{`logging.level (line 3): duplicate key (first set at line 2)`},
		},
		{
			name: "list where a mapping belongs",
			yaml: "logging: [info]\n",
			want: []string{`logging (line 1): must be a mapping, got a list`},
		},
		{
			name: "mapping where a list belongs",
			yaml: "listeners:\n  name: web\n",
			want: []string{`listeners (line 1): must be a list, got a mapping`},
		},
		{
			name: "string where an integer belongs",
			yaml: `
upstreams:
  - name: a
    endpoints:
      - address: "10.0.0.1:80"
        weight: "3"
`,
			want: []string{`upstreams[0].endpoints[0].weight (line 5): must be an integer, got "3"`},
		},
		{
			name: "negative unsigned integer",
			yaml: `
listeners:
  - limits:
      max_concurrent_streams: -1
`,
			want: []string{`listeners[0].limits.max_concurrent_streams (line 3): must not be negative, got -1`},
		},
		{
			name: "integer out of range",
			yaml: `
listeners:
  - limits:
      max_concurrent_streams: 5000000000
`,
			want: []string{`listeners[0].limits.max_concurrent_streams (line 3): integer 5000000000 is out of range`},
		},
		{
			name: "not a boolean",
			yaml: `
listeners:
  - tls:
      self_signed: yes
`,
			want: []string{`listeners[0].tls.self_signed (line 3): must be true or false, got "yes"`},
		},
		{
			name: "mapping where a string belongs",
			yaml: "routes:\n  - name: {a: b}\n",
			want: []string{`routes[0].name (line 2): must be a string, got a mapping`},
		},
		{
			name: "bad durations",
			yaml: `
routes:
  - timeouts:
      connect: 5
      response_header: 1 minute
      request: -3s
`,
			want: []string{
				`routes[0].timeouts.connect (line 3): invalid duration 5: add a unit, e.g. "5s" or "5ms"`,
				`routes[0].timeouts.response_header (line 4): invalid duration "1 minute": use a number with a unit such as "250ms", "10s" or "1m30s"`,
				`routes[0].timeouts.request (line 5): invalid duration "-3s": must not be negative`,
			},
		},
		{
			name: "bad sizes",
			yaml: `
listeners:
  - limits: {max_header_bytes: 10 megabytes}
  - limits: {max_header_bytes: -1}
  - limits: {max_header_bytes: 1.5MiB}
  - limits: {max_header_bytes: [1]}
`,
			want: []string{
				`listeners[0].limits.max_header_bytes (line 2): invalid size "10 megabytes": use bytes or a whole number with a unit such as "64KiB", "10MiB" or "10MB"`,
				`listeners[1].limits.max_header_bytes (line 3): invalid size -1: must not be negative`,
				`listeners[2].limits.max_header_bytes (line 4): invalid size "1.5MiB": use bytes or a whole number with a unit such as "64KiB", "10MiB" or "10MB"`,
				`listeners[3].limits.max_header_bytes (line 5): must be a size such as 65536 or "64KiB", got a list`,
			},
		},
		{
			name: "alias that contains itself",
			yaml: "routes: &r\n  - name: a\n    match: *r\n",
			want: []string{`routes[0].match (line 3): must be a mapping, got a list`},
		},
		{
			name: "merge key naming a scalar",
			yaml: "x-a: &a 3\nlogging:\n  <<: *a\n",
			want: []string{`logging (line 3): merge key (<<) needs a mapping or a list of mappings, got integer 3`},
		},
		{
			name: "merge key that contains itself",
			yaml: "logging: &l\n  <<: *l\n",
			want: []string{`logging (line 2): merge key refers to a mapping that contains it`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse(text(tt.yaml), "")
			if err == nil {
				t.Fatalf("Parse succeeded with %+v; want errors:\n%s", cfg, strings.Join(tt.want, "\n"))
			}
			if cfg != nil {
				t.Errorf("Parse returned a Config along with an error")
			}
			if got, want := err.Error(), strings.Join(tt.want, "\n"); got != want {
				t.Errorf("Parse errors:\n%s\nwant:\n%s", got, want)
			}
			var es Errors
			if !errors.As(err, &es) || len(es) != len(tt.want) {
				t.Errorf("Parse error is %T with %d entries, want Errors with %d", err, len(es), len(tt.want))
			}
		})
	}
}

func TestParseNamesTheFile(t *testing.T) {
	_, err := Parse([]byte("logging: {levl: info}\n"), "penstock.yaml")
	want := `penstock.yaml: logging.levl (line 1): unknown field; did you mean "level"?`
	if err == nil || err.Error() != want {
		t.Errorf("Parse error = %v, want %s", err, want)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "penstock.yaml")
	if err := os.WriteFile(path, text(minimalYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if cfg.File() != path {
		t.Errorf("File() = %q, want %q", cfg.File(), path)
	}
	if got, want := cfg.Errorf("routes[0].upstream", "x").Error(), path+": routes[0].upstream (line 12): x"; got != want {
		t.Errorf("Errorf = %q, want %q", got, want)
	}

	if _, err := Load(filepath.Join(dir, "absent.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing file: err = %v, want one wrapping os.ErrNotExist", err)
	}
}

func TestParseLines(t *testing.T) {
	cfg, err := Parse(text(`
listeners:
  - name: web
    address: ":8080"
upstreams:
  - name: app
    endpoints:
      - address: "127.0.0.1:9000"
routes:
  - name: all
    match:
      path_prefix: /
      headers:
        X-Tenant: acme
        x.odd: "1"
    upstream: app
`), "")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path string
		line int
	}{
		{"", 1},
		{"listeners", 1},
		{"listeners[0]", 2},
		{"listeners[0].address", 3},
		{"upstreams[0].endpoints[0].address", 7},
		{"routes[0].match.path_prefix", 11},
		{"routes[0].match.headers.X-Tenant", 13},
		{`routes[0].match.headers["x.odd"]`, 14},
		{"routes[0].upstream", 15},
		// Absent paths fall back to the nearest parent that is present.
		{"routes[0].match.path", 10},
		{"routes[0].timeouts.connect", 9},
		{"listeners[0].tls.certificates[0].cert_file", 2},
		{"admin.address", 1},
		{`routes[0].match.headers["a.b]"].x`, 12},
	}
	for _, tt := range tests {
		if got := cfg.Line(tt.path); got != tt.line {
			t.Errorf("Line(%q) = %d, want %d", tt.path, got, tt.line)
		}
	}
}

func TestParseAnchorsAndMerge(t *testing.T) {
	cfg, err := Parse(text(`
x-timeouts: &slow
  connect: 1s
  response_header: 2s
x-backend: &backend
  balancing: least_request
  endpoints: [{address: "10.0.0.1:80"}]
listeners: [{name: web, address: ":80"}]
upstreams:
  - <<: *backend
    name: a
  - <<: *backend
    name: b
    balancing: round_robin
routes:
  - name: r
    match: {path: /}
    upstream: a
    timeouts:
      <<: *slow
      connect: 3s
`), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := cfg.Upstreams[0].Balancing; got != "least_request" {
		t.Errorf("merged balancing = %q, want least_request", got)
	}
	if got := cfg.Upstreams[1].Balancing; got != "round_robin" {
		t.Errorf("own key did not win over merged: balancing = %q", got)
	}
	if got := cfg.Upstreams[1].Endpoints[0].Address; got != "10.0.0.1:80" {
		t.Errorf("merged endpoint = %q", got)
	}
	tm := cfg.Routes[0].Timeouts
	if tm.Connect.D() != 3*time.Second || tm.ResponseHeader.D() != 2*time.Second {
		t.Errorf("timeouts = %+v, want connect 3s (own) and response_header 2s (merged)", tm)
	}
}

func TestParseAliasBomb(t *testing.T) {
	// Each level merges the previous one ten times: 10^8 merges to expand
	// for one small mapping.
	var b strings.Builder
	b.WriteString("x-0: &a0 {level: info}\n")
	for i := 1; i <= 8; i++ {
		fmt.Fprintf(&b, "x-%d: &a%d {<<: [", i, i)
		for j := range 10 {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*a%d", i-1)
		}
		b.WriteString("]}\n")
	}
	b.WriteString("logging: *a8\n")
	_, err := Parse([]byte(b.String()), "")
	if err == nil || !strings.Contains(err.Error(), "config too large after expanding aliases") {
		t.Errorf("Parse error = %v, want a size error", err)
	}
}

// TestExamples checks that every example under testdata decodes and
// validates cleanly.
func TestExamples(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			cfg, err := Load(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestRoundTrip checks that a Config written back out as YAML decodes to the
// same values, so Duration and ByteSize marshal to what they accept.
func TestRoundTrip(t *testing.T) {
	cfg, err := Load("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Parse(out, "marshalled")
	if err != nil {
		t.Fatalf("Parse of marshalled config: %v\n%s", err, out)
	}
	cfg.src, again.src = nil, nil
	// Stage fields are YAML as written: compare their text, not the nodes'
	// positions.
	for i := range cfg.Routes {
		for name, n := range cfg.Routes[i].Stages {
			a, _ := yaml.Marshal(n)
			b, _ := yaml.Marshal(again.Routes[i].Stages[name])
			if string(a) != string(b) {
				t.Errorf("routes[%d].%s = %s after the round trip, want %s", i, name, b, a)
			}
		}
		if len(cfg.Routes[i].Stages) != len(again.Routes[i].Stages) {
			t.Errorf("routes[%d] has stage fields %v after the round trip, want %v", i, again.Routes[i].Stages, cfg.Routes[i].Stages)
		}
		cfg.Routes[i].Stages, again.Routes[i].Stages = nil, nil
	}
	if !reflect.DeepEqual(cfg, again) {
		t.Errorf("round trip changed the config:\nbefore %+v\nafter  %+v\nyaml:\n%s", cfg, again, out)
	}
}

func TestFullExampleValues(t *testing.T) {
	cfg, err := Load("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	l := cfg.Listeners[0]
	if l.Limits.ReadHeaderTimeout.D() != 5*time.Second || l.Limits.IdleTimeout.D() != 2*time.Minute {
		t.Errorf("listener limits = %+v", l.Limits)
	}
	if l.Limits.MaxHeaderBytes.Int64() != 32<<10 || l.Limits.MaxConcurrentStreams != 100 {
		t.Errorf("listener limits = %+v", l.Limits)
	}
	if l.TLS == nil || !l.TLS.SelfSigned || l.TLS.MinVersion != "1.3" || l.TLS.ClientAuth == nil || l.TLS.ClientAuth.Mode != "none" {
		t.Errorf("listener tls = %+v", l.TLS)
	}
	r := cfg.Routes[0]
	if r.Timeouts.Request.D() != 10*time.Minute {
		t.Errorf("route = %+v", r)
	}
	if got := r.Match.Headers["X-Tenant"]; got != "acme" {
		t.Errorf("header matcher = %q", got)
	}
	// The stage fields are kept for their stages (internal/pipeline's tests
	// decode them), with their lines.
	for _, tt := range []struct {
		route int
		field string
		line  int
	}{
		{0, "max_request_body", 56}, {0, "early_hints", 57}, {0, "push", 59},
		{1, "max_request_body", 65}, {1, "cache", 66},
	} {
		path := fmt.Sprintf("routes[%d].%s", tt.route, tt.field)
		if cfg.Routes[tt.route].Stages[tt.field] == nil || cfg.Line(path) != tt.line {
			t.Errorf("%s kept = %v at line %d, want it at line %d", path, cfg.Routes[tt.route].Stages[tt.field] != nil, cfg.Line(path), tt.line)
		}
	}
	if got := cfg.Line("routes[1].cache.default_ttl"); got != 70 {
		t.Errorf("line of routes[1].cache.default_ttl = %d, want 70", got)
	}
	if cfg.Shutdown.DrainTimeout.D() != time.Minute {
		t.Errorf("drain timeout = %v", cfg.Shutdown.DrainTimeout)
	}
}

// TestCheckReportsDecodingAndValidationErrorsTogether checks that one run
// shows every problem: an unknown field does not hide a bad address.
func TestCheckReportsDecodingAndValidationErrorsTogether(t *testing.T) {
	_, err := Check([]byte(`listeners:
  - name: main
    address: "127.0.0.1:99999"
    protocol: [h1]
upstreams:
  - name: up
    endpoints: [{address: localhost}]
routes:
  - name: r
    match: {path: /}
    upstream: nope
`), "c.yaml")
	want := []string{
		`c.yaml: listeners[0].address (line 3): `,
		`c.yaml: listeners[0].protocol (line 4): unknown field; did you mean "protocols"?`,
		`c.yaml: upstreams[0].endpoints[0].address (line 7): `,
		`c.yaml: routes[0].upstream (line 11): `,
	}
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != len(want) {
		t.Fatalf("got %v, want %d errors", err, len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(errs[i].Error(), w) {
			t.Errorf("error %d = %q, want prefix %q", i, errs[i].Error(), w)
		}
	}
}
