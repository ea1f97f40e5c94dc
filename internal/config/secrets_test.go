package config

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestRedact checks what GET /config may show: structure and names, never
// the token or the values of header matchers, and that the original
// configuration is left as it was.
func TestRedact(t *testing.T) {
	text := `listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams: [{name: up, endpoints: [{address: "127.0.0.1:9"}]}]
routes:
  - name: internal
    match: {path: /internal, headers: {X-Internal-Key: k3y-v4lue, X-Tenant: acme}}
    upstream: up
  - name: public
    match: {path: /}
    upstream: up
admin: {token: t0ken-v4lue}
`
	cfg, err := Parse([]byte(text), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out, err := yaml.Marshal(cfg.Redact())
	if err != nil {
		t.Fatal(err)
	}
	shown := string(out)
	tests := []struct {
		name    string
		present bool
		text    string
	}{
		{name: "token hidden", text: "t0ken-v4lue"},
		{name: "header matcher value hidden", text: "k3y-v4lue"},
		{name: "every header matcher value hidden", text: "acme"},
		{name: "header matcher name shown", present: true, text: "X-Internal-Key: " + Redacted},
		{name: "token shown as redacted", present: true, text: "token: " + Redacted},
		{name: "other fields shown", present: true, text: "name: internal"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if strings.Contains(shown, tc.text) != tc.present {
				t.Errorf("present(%q) = %v, want %v:\n%s", tc.text, !tc.present, tc.present, shown)
			}
		})
	}
	if cfg.Admin.Token != "t0ken-v4lue" || cfg.Routes[0].Match.Headers["X-Internal-Key"] != "k3y-v4lue" {
		t.Errorf("Redact changed the original configuration")
	}
}
