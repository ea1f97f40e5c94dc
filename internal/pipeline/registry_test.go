package pipeline

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/exchange"
)

// noSettings is the settings of a test stage that owns no route field.
type noSettings struct{}

func (*noSettings) SetDefaults() {}
func (*noSettings) Check(*Route) {}

// loggingStage is a stage that appends its name to log when it serves an
// exchange, then calls the next handler; builds counts calls to its
// constructor.
func loggingStage(name string, log *[]string, builds *int) Stage {
	return Define(name, func(_ *noSettings, _ *Route, next exchange.Handler) (exchange.Handler, error) {
		*builds++
		return exchange.HandlerFunc(func(x *exchange.Exchange) {
			*log = append(*log, name)
			next.ServeExchange(x)
		}), nil
	})
}

// terminalFunc is a terminal handler that does nothing.
func terminalFunc() exchange.Handler { return exchange.HandlerFunc(func(*exchange.Exchange) {}) }

// oneRoute is a config built in Go with one route called name.
func oneRoute(name string) *config.Config {
	return &config.Config{Routes: []config.Route{{Name: name}}}
}

func mustRegistry(t *testing.T, stages ...Stage) *Registry {
	t.Helper()
	reg, err := NewRegistry(stages...)
	if err != nil {
		t.Fatalf("NewRegistry: %v", err)
	}
	return reg
}

func TestBuildComposesStagesInTableOrder(t *testing.T) {
	var log []string
	builds := 0
	reg := mustRegistry(t,
		loggingStage("first", &log, &builds),
		loggingStage("second", &log, &builds),
		loggingStage("third", &log, &builds),
	)
	terminal := exchange.HandlerFunc(func(x *exchange.Exchange) { log = append(log, "terminal") })

	h, err := reg.Build(oneRoute("r"), 0, terminal, nil)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	x, _ := newExchange(t, "GET")
	for range 3 {
		h.ServeExchange(x)
	}

	want := slices.Repeat([]string{"first", "second", "third", "terminal"}, 3)
	if !slices.Equal(log, want) {
		t.Errorf("served in order %q, want %q", log, want)
	}
	// Stages are built once per route, never per request.
	if builds != 3 {
		t.Errorf("stage constructors ran %d times for 3 stages and 3 requests, want 3", builds)
	}
}

func TestBuildPassesTheRouteToEveryStage(t *testing.T) {
	var seen []string
	stage := func(name string) Stage {
		return Define(name, func(_ *noSettings, r *Route, next exchange.Handler) (exchange.Handler, error) {
			seen = append(seen, name+":"+r.Config.Name+":"+r.Path)
			return next, nil
		})
	}
	reg := mustRegistry(t, stage("a"), stage("b"))
	cfg := &config.Config{Routes: []config.Route{{Name: "health"}, {Name: "predict"}}}
	if _, err := reg.Build(cfg, 1, terminalFunc(), nil); err != nil {
		t.Fatalf("Build: %v", err)
	}
	// Built back to front, so that each stage can wrap the one after it.
	if want := []string{"b:predict:routes[1]", "a:predict:routes[1]"}; !slices.Equal(seen, want) {
		t.Errorf("constructors saw %q, want %q", seen, want)
	}
}

func TestBuildReportsTheFailingStage(t *testing.T) {
	errBad := errors.New("bad setting")
	var log []string
	builds := 0
	reg := mustRegistry(t,
		loggingStage("first", &log, &builds),
		Define("picky", func(*noSettings, *Route, exchange.Handler) (exchange.Handler, error) { return nil, errBad }),
		loggingStage("last", &log, &builds),
	)
	h, err := reg.Build(oneRoute("r"), 0, terminalFunc(), nil)
	if h != nil {
		t.Error("Build returned a handler along with an error")
	}
	if !errors.Is(err, errBad) {
		t.Fatalf("Build error = %v, want it to wrap %v", err, errBad)
	}
	if !strings.Contains(err.Error(), "stage picky") {
		t.Errorf("Build error = %q, want it to name the stage", err)
	}
}

// Settings types of test stages that claim route fields.
type (
	claimsCache struct {
		Cache bool `yaml:"cache"`
	}
	claimsUpstream struct {
		Upstream string `yaml:"upstream"`
	}
	untagged struct {
		Limit int
	}
)

func (*claimsCache) SetDefaults()    {}
func (*claimsCache) Check(*Route)    {}
func (*claimsUpstream) SetDefaults() {}
func (*claimsUpstream) Check(*Route) {}
func (*untagged) SetDefaults()       {}
func (*untagged) Check(*Route)       {}

func passThrough[S any](_ *S, _ *Route, next exchange.Handler) (exchange.Handler, error) {
	return next, nil
}

func TestNewRegistryRefusesAmbiguousTables(t *testing.T) {
	tests := []struct {
		name   string
		stages []Stage
		want   string // "" for a valid table
	}{
		{name: "the standard table", stages: Standard().Stages()},
		{
			name:   "a stage listed twice",
			stages: []Stage{Define("a", passThrough[noSettings]), Define("a", passThrough[noSettings])},
			want:   `stage "a" is listed twice`,
		},
		{
			name:   "a field owned by two stages",
			stages: append(Standard().Stages(), Define("my_cache", passThrough[claimsCache])),
			want:   `stage "my_cache": route field "cache" is already owned by stage "cache"`,
		},
		{
			name:   "a field of the route itself",
			stages: []Stage{Define("router", passThrough[claimsUpstream])},
			want:   `stage "router": "upstream" is a route field of the config itself`,
		},
		{
			name:   "a settings field without a yaml name",
			stages: []Stage{Define("limit", passThrough[untagged])},
			want:   `stage "limit": a settings field has no yaml name`,
		},
		{
			name:   "a stage not made by Define",
			stages: []Stage{{}},
			want:   `a stage needs a name and a constructor (use Define)`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg, err := NewRegistry(tt.stages...)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("NewRegistry: %v", err)
			case tt.want == "" && reg == nil:
				t.Fatal("NewRegistry returned no registry and no error")
			case tt.want != "" && (err == nil || err.Error() != tt.want):
				t.Fatalf("NewRegistry error = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestStandardTable(t *testing.T) {
	var names, fields []string
	for _, s := range Standard().Stages() {
		names = append(names, s.Name())
		fields = append(fields, s.Fields()...)
	}
	if want := []string{"cors", "grpc_web", "early_data", "rate_limit", "body_limit", "tokens", "early_hints", "cache", "concurrency"}; !slices.Equal(names, want) {
		t.Errorf("stages in order %q, want %q", names, want)
	}
	if want := []string{"cors", "grpc_web", "early_data", "limits", "max_request_body", "tokens", "early_hints", "push", "cache", "concurrency", "queue"}; !slices.Equal(fields, want) {
		t.Errorf("route fields owned %q, want %q", fields, want)
	}
	// The table is data: what Stages returns is a copy.
	reg := Standard()
	reg.Stages()[0] = Stage{}
	if reg.Stages()[0].Name() != "cors" {
		t.Error("changing the slice Stages returned changed the registry")
	}
}

func TestBuildStandardStages(t *testing.T) {
	tests := []struct {
		name          string
		fields        string
		contentLength int64
		wantTerminal  bool
		wantStatus    int
	}{
		{name: "body within the limit reaches the upstream", fields: "    max_request_body: 100\n", contentLength: 100, wantTerminal: true},
		{name: "body over the limit is refused before the upstream", fields: "    max_request_body: 100\n", contentLength: 101, wantStatus: 413},
		{name: "the default limit is 10MiB", contentLength: 10<<20 + 1, wantStatus: 413},
		{name: "a body of the default limit reaches the upstream", contentLength: 10 << 20, wantTerminal: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reached := false
			terminal := &terminalHandler{reached: &reached}
			h, err := Standard().Build(parseRoute(t, tt.fields), 0, terminal, nil)
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			if _, ok := h.(*earlyData); !ok {
				t.Fatalf("first stage is %T, want the early-data guard", h)
			}
			x, _ := newExchange(t, "POST")
			x.Req.ContentLength = tt.contentLength
			h.ServeExchange(x)
			if reached != tt.wantTerminal {
				t.Errorf("terminal reached = %v, want %v", reached, tt.wantTerminal)
			}
			if x.State.Status != tt.wantStatus {
				t.Errorf("State.Status = %d, want %d", x.State.Status, tt.wantStatus)
			}
		})
	}
}

// TestStagesWithNothingToDoAddNothing checks that a stage whose route does
// not use it returns next itself, so the request pays nothing for it; only
// the early-data guard is on every route.
func TestStagesWithNothingToDoAddNothing(t *testing.T) {
	next := &terminalHandler{reached: new(bool)}
	r := &Route{Config: &config.Route{Name: "r"}, Path: "routes[0]"}
	for name, build := range map[string]func() (exchange.Handler, error){
		"body_limit of 0":           func() (exchange.Handler, error) { return newBodyLimit(&BodyLimitSettings{}, r, next) },
		"early_hints without links": func() (exchange.Handler, error) { return newEarlyHints(&EarlyHintsSettings{}, r, next) },
		"cache not enabled":         func() (exchange.Handler, error) { return newCache(&CacheSettings{}, r, next) },
	} {
		h, err := build()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if h != next {
			t.Errorf("%s: got a stage %T, want next unchanged", name, h)
		}
	}
	cfg := parseRoute(t, "")
	h, err := Standard().Build(cfg, 0, next, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Early data guard → body limit (the 10MiB default) → next.
	if e, ok := h.(*earlyData); !ok {
		t.Fatalf("first stage is %T, want the early-data guard", h)
	} else if b, ok := e.next.(*bodyLimit); !ok || b.next != next {
		t.Errorf("after the guard: %T, want the body limit in front of next", e.next)
	}
}

type terminalHandler struct{ reached *bool }

func (h *terminalHandler) ServeExchange(*exchange.Exchange) { *h.reached = true }
