package config

import (
	"strings"
	"testing"
	"time"
)

// functionsPrefix is a config whose second route is a function's; the
// text appended to it starts at line 21.
const functionsPrefix = `
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
  - name: fn
    match:
      path: /fn
    upstream: function:tokenize
functions:
  - name: tokenize
    command: [./tokenize]
`

func TestFunctions(t *testing.T) {
	tests := []struct {
		name string
		yaml string // appended to functionsPrefix: its first line is line 20
		want []string
	}{
		{name: "a lambda and an http function are valid", yaml: `    env: {GREETING: hi}
    timeout: 3s
    min_instances: 1
    max_instances: 8
    max_concurrency: 2
    memory: 128MiB
    cpu: 0.5
  - name: web
    command: [node, server.js]
    mode: http
    http: {listen: tcp, health_path: /healthz}
`},
		{name: "bad fields", yaml: `    mode: lamda
    min_instances: 5
    max_concurrency: -1
    memory: 10
    cpu: 0.001
    http: {listen: unix}
  - name: "bad name"
  - name: tokenize
    command: [x]
    env: {"A=B": c}
`, want: []string{
			`functions[0].mode (line 20): unknown mode "lamda"; want lambda or http; did you mean "lambda"?`,
			`functions[0].min_instances (line 21): must be between 0 and max_instances (4), got 5`,
			`functions[0].max_concurrency (line 22): must be between 1 and 1024, got -1`,
			`functions[0].memory (line 23): must be at least 1MiB, got 10 bytes`,
			`functions[0].cpu (line 24): must be at least 0.01 cores, got 0.001`,
			`functions[0].http (line 25): is only used with mode: http`,
			`functions[1].name (line 26): function name "bad name" must be a token (letters, digits, -_.)`,
			`functions[1].command (line 26): is required: the executable and its arguments`,
			`functions[2].name (line 27): duplicate function name "tokenize" (first used by functions[0])`,
			`functions[2].env["A=B"] (line 29): invalid environment variable name "A=B"`,
		}},
		{name: "a route to an unknown function", yaml: `  - name: other
    command: [x]
    mode: http
    http: {listen: udp, health_path: healthz}
routes:
  - name: x
    match: {path: /x}
    upstream: function:tokenise
`, want: []string{
			`functions[1].http.listen (line 14): unknown listen kind "udp"; want unix or tcp`,
			`functions[1].http.health_path (line 14): must start with "/", got "healthz"`,
			`routes[0].upstream (line 18): unknown upstream "function:tokenise"; did you mean "function:tokenize"?`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			yaml := functionsPrefix + tt.yaml
			if strings.Contains(tt.yaml, "\nroutes:") {
				// Replace the prefix's routes with the test's own.
				start := strings.Index(yaml, "routes:")
				end := strings.Index(yaml, "functions:")
				yaml = yaml[:start] + yaml[end:]
			}
			cfg, err := Parse(text(yaml), "")
			if err == nil {
				err = cfg.Validate()
			}
			var got []string
			if err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if !matchLines(got, tt.want, "") {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestFunctionDefaults(t *testing.T) {
	cfg, err := Parse(text(functionsPrefix+`  - name: web
    command: [./web]
    mode: http
`), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	f := cfg.Functions[0]
	if f.Mode != "lambda" || f.Timeout.D() != 30*time.Second || f.InitTimeout.D() != 10*time.Second ||
		f.MaxInstances != 4 || f.MaxConcurrency != 1 || f.MinInstances != 0 || f.IdleTimeout.D() != 5*time.Minute ||
		f.MaxQueue != 100 || f.QueueTimeout.D() != 10*time.Second || f.MaxEventBytes != 6<<20 || f.MaxOutputBytes != 1<<20 || f.HTTP != (FunctionHTTP{}) {
		t.Errorf("lambda defaults: %+v", f)
	}
	if h := cfg.Functions[1].HTTP; h.Listen != "unix" || h.HealthPath != "/" {
		t.Errorf("http defaults: %+v", h)
	}
	if cfg.FunctionNamed("web") == nil || cfg.FunctionNamed("nope") != nil {
		t.Error("FunctionNamed")
	}
	if name, ok := FunctionOf("function:web"); !ok || name != "web" {
		t.Errorf("FunctionOf = %q, %v", name, ok)
	}
}

// A function cannot be a split arm or mirror, nor a split route's upstream.
func TestFunctionNotInSplit(t *testing.T) {
	cfg, err := Parse(text(`
listeners:
  - {name: web, address: "127.0.0.1:8080"}
upstreams:
  - {name: a, endpoints: [{address: "127.0.0.1:9000"}]}
functions:
  - {name: f, command: [x]}
routes:
  - name: r
    match: {path: /}
    upstream: a
    split:
      arms:
        - {name: a, upstream: a, weight: 1}
        - {name: f, upstream: "function:f", weight: 1}
      mirror: {upstream: "function:f"}
`), "")
	if err == nil {
		err = cfg.Validate()
	}
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"routes[0].split.arms[1].upstream (line 14): a split arm forwards to an upstream pool, not a function",
		"routes[0].split.mirror.upstream (line 15): a mirror copies to an upstream pool, not a function"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("errors lack %q:\n%v", want, err)
		}
	}
}
