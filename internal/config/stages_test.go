package config

import (
	"maps"
	"slices"
	"strings"
	"testing"
)

// TestStageFieldsAreKeptForTheirStages checks the contract between config
// and the stages: a route's fields that config does not know are kept as
// written with their lines, decoded strictly into a stage's settings on
// request, and reported as unknown when no stage owns them.
func TestStageFieldsAreKeptForTheirStages(t *testing.T) {
	cfg, err := Parse(text(minimalYAML+`    limit: {rate: 10, burst: 1m}
    retrie: 3
    x-note: hi
`), "p.yaml")
	if err != nil {
		t.Fatalf("Parse refused fields it should keep for the stages: %v", err)
	}
	r := cfg.Routes[0]
	if got := slices.Sorted(maps.Keys(r.Stages)); !slices.Equal(got, []string{"limit", "retrie", "x-note"}) {
		t.Errorf("kept stage fields %q", got)
	}
	if got := cfg.Line("routes[0].limit.burst"); got != 13 {
		t.Errorf("line of routes[0].limit.burst = %d, want 13", got)
	}

	type limit struct {
		Rate  int      `yaml:"rate"`
		Burst int      `yaml:"burst"`
		Per   Duration `yaml:"per"`
	}
	var settings struct {
		Limit limit `yaml:"limit"`
	}
	err = cfg.DecodeStageFields(0, &settings)
	want := []string{`p.yaml: routes[0].limit.burst (line 13): must be an integer, got "1m"`}
	if got := errorLines(err); !slices.Equal(got, want) {
		t.Errorf("DecodeStageFields errors %q, want %q", got, want)
	}
	if settings.Limit.Rate != 10 {
		t.Errorf("decoded rate %d, want 10 (the fields that decode are kept)", settings.Limit.Rate)
	}

	err = cfg.CheckStageFields(0, []string{"limit", "retries"})
	want = []string{
		`p.yaml: routes[0].retrie (line 14): unknown field; did you mean "retries"?`,
		`p.yaml: routes[0].x-note (line 15): unknown field`,
	}
	if got := errorLines(err); !slices.Equal(got, want) {
		t.Errorf("CheckStageFields errors %q, want %q", got, want)
	}
}

func errorLines(err error) []string {
	if err == nil {
		return nil
	}
	return strings.Split(err.Error(), "\n")
}
