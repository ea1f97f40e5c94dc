package server_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/penstock-dev/penstock/internal/config"
)

// TestReloadHistory checks that every load is recorded, newest first: the
// first configuration, an applied reload, one refused by validation and
// one whose file could not even be loaded, each refusal with its error and
// the generation that kept serving.
func TestReloadHistory(t *testing.T) {
	up := newRecorder(t, "a")
	yamlText := `
listeners: [{name: http, address: "127.0.0.1:0"}]
upstreams: [{name: a, endpoints: [{address: "` + up.addr() + `"}]}]
routes: [{name: r, match: {path: /}, upstream: a}]
access_log: {enabled: false}
`
	g := startGateway(t, yamlText)
	parse := func(text string) *config.Config {
		cfg, err := config.Parse([]byte(text), "test.yaml")
		if err != nil {
			t.Fatal(err)
		}
		cfg.SetDefaults()
		return cfg
	}
	if err := g.Reload(parse(yamlText)); err != nil {
		t.Fatal(err)
	}
	if err := g.Reload(parse(strings.Replace(yamlText, "upstream: a}", "upstream: nowhere}", 1))); err == nil {
		t.Fatal("a route to an unknown upstream was applied")
	}
	g.ReloadFrom(func() (*config.Config, error) { return nil, errors.New("read test.yaml: no such file") })

	got := g.Reloads()
	want := []struct {
		gen uint64
		err string
	}{{2, "read test.yaml"}, {2, "nowhere"}, {2, ""}, {1, ""}}
	if len(got) != len(want) {
		t.Fatalf("%d outcomes, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		if got[i].Generation != w.gen || (w.err == "") != (got[i].Error == "") || !strings.Contains(got[i].Error, w.err) {
			t.Errorf("outcome %d = generation %d, error %q; want generation %d, error containing %q", i, got[i].Generation, got[i].Error, w.gen, w.err)
		}
		if got[i].At.IsZero() {
			t.Errorf("outcome %d has no time", i)
		}
	}
}
