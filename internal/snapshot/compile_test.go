package snapshot_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/snapshot"
)

// compileYAML parses, defaults and compiles a config as serve would.
func compileYAML(text string) error {
	cfg, err := config.Parse([]byte(text), "bad.yaml")
	if err != nil {
		return err
	}
	cfg.SetDefaults()
	s, err := snapshot.Compile(cfg, snapshot.Env{})
	if err == nil {
		s.Close()
	}
	return err
}

// TestInvalidConfigsNameFieldAndLine checks that each kind of invalid config
// fails with one error naming the field path and the line it is on.
func TestInvalidConfigsNameFieldAndLine(t *testing.T) {
	const head = `listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams: [{name: up, endpoints: [{address: "127.0.0.1:9"}]}]
routes:
`
	tests := []struct {
		name   string
		routes string
		want   string // the whole error line
	}{
		{
			name:   "bad pattern",
			routes: "  - name: a\n    match: {path: \"/v1/:/x\"}\n    upstream: up\n",
			want:   `routes[0].match.path (line 5)`,
		},
		{
			name: "conflicting routes name both",
			routes: "  - name: first\n    match: {path: /v1/models/:model}\n    upstream: up\n" +
				"  - name: second\n    match: {path: /v1/models/:name}\n    upstream: up\n",
			want: `routes[1].match (line 8): routes "first" and "second" conflict`,
		},
		{
			name:   "catch-all in prefix",
			routes: "  - name: a\n    match: {path_prefix: \"/x/*rest\"}\n    upstream: up\n",
			want:   `routes[0].match.path_prefix (line 5)`,
		},
		{
			name:   "unknown upstream",
			routes: "  - name: a\n    match: {path: /x}\n    upstream: upp\n",
			want:   `routes[0].upstream (line 6)`,
		},
		{
			name:   "bad wildcard host",
			routes: "  - name: a\n    match: {path: /x, hosts: [\"api.*.com\"]}\n    upstream: up\n",
			want:   `routes[0].match`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := compileYAML(head + tc.routes)
			if err == nil {
				t.Fatal("compiled without error")
			}
			var errs config.Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error is not config.Errors: %T %v", err, err)
			}
			if len(errs) != 1 {
				t.Errorf("got %d errors, want 1:\n%v", len(errs), err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error:\n%v\nwant it to contain %q", err, tc.want)
			}
		})
	}
}
