package config

import (
	"slices"
	"strings"
	"testing"
)

func TestGRPCMatch(t *testing.T) {
	const head = `listeners: [{name: web, address: ":8080"}]
upstreams: [{name: app, protocol: h2c, endpoints: [{address: "a:80"}]}]
routes:
`
	t.Run("stands for a path pattern and POST", func(t *testing.T) {
		cfg, err := Parse(text(head+`  - {name: one, upstream: app, match: {grpc: {service: pkg.v1.Svc, method: Call}}}
  - {name: all, upstream: app, match: {grpc: {service: pkg.v1.Svc}}}
`), "")
		if err != nil {
			t.Fatal(err)
		}
		cfg.SetDefaults()
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		for i, want := range []string{"/pkg.v1.Svc/Call", "/pkg.v1.Svc/*method"} {
			m := cfg.Routes[i].Match
			if m.Path != want || !slices.Equal(m.Methods, []string{"POST"}) {
				t.Errorf("route %d: path %q, methods %v; want %q and [POST]", i, m.Path, m.Methods, want)
			}
		}
	})
	t.Run("bad values name the field and line", func(t *testing.T) {
		cfg, err := Parse(text(head+`  - {name: a, upstream: app, match: {grpc: {method: Call}}}
  - {name: b, upstream: app, match: {grpc: {service: "pkg..Svc", method: "Call/x"}}}
  - {name: c, upstream: app, match: {path: /other, grpc: {service: pkg.Svc}}}
  - {name: d, upstream: app, match: {methods: [GET], grpc: {service: pkg.Svc}}}
  - {name: e, upstream: app, match: {grpc: {service: 1pkg.Svc}}}
`), "")
		if err != nil {
			t.Fatal(err)
		}
		cfg.SetDefaults()
		err = cfg.Validate()
		want := []string{
			`routes[0].match.grpc.service (line 4): is required`,
			`routes[1].match.grpc.service (line 5): "pkg..Svc" is not a service name: dot-separated identifiers, e.g. "pkg.Service"`,
			`routes[1].match.grpc.method (line 5): "Call/x" is not a method name: an identifier, e.g. "Predict"`,
			`routes[2].match.grpc (line 6): stands for the path "/pkg.Svc/*method": remove path and path_prefix`,
			`routes[3].match.methods (line 7): a grpc match takes POST only (every gRPC call is a POST)`,
			`routes[4].match.grpc.service (line 8): "1pkg.Svc" is not a service name: dot-separated identifiers, e.g. "pkg.Service"`,
		}
		var got []string
		if err != nil {
			got = strings.Split(err.Error(), "\n")
		}
		for _, w := range want {
			if !slices.Contains(got, w) {
				t.Errorf("missing error %s", w)
			}
		}
		if t.Failed() {
			t.Logf("errors:\n%s", strings.Join(got, "\n"))
		}
	})
}
