package pipeline

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/exchange"
)

// replaceStages swaps the stage table for the duration of a test.
func replaceStages(t *testing.T, stages []Stage) {
	t.Helper()
	saved := Stages
	Stages = stages
	t.Cleanup(func() { Stages = saved })
}

// loggingStage is a stage that appends its name to log when it serves an
// exchange, then calls the next handler; builds counts calls to New.
func loggingStage(name string, log *[]string, builds *int) Stage {
	return Stage{Name: name, New: func(r *config.Route, next exchange.Handler) (exchange.Handler, error) {
		*builds++
		return exchange.HandlerFunc(func(x *exchange.Exchange) {
			*log = append(*log, name)
			next.ServeExchange(x)
		}), nil
	}}
}

func TestBuildComposesStagesInTableOrder(t *testing.T) {
	var log []string
	builds := 0
	replaceStages(t, []Stage{
		loggingStage("first", &log, &builds),
		loggingStage("second", &log, &builds),
		loggingStage("third", &log, &builds),
	})
	terminal := exchange.HandlerFunc(func(x *exchange.Exchange) { log = append(log, "terminal") })

	h, err := Build(&config.Route{Name: "r"}, terminal)
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
		return Stage{Name: name, New: func(r *config.Route, next exchange.Handler) (exchange.Handler, error) {
			seen = append(seen, name+":"+r.Name)
			return next, nil
		}}
	}
	replaceStages(t, []Stage{stage("a"), stage("b")})
	if _, err := Build(&config.Route{Name: "predict"}, exchange.HandlerFunc(func(*exchange.Exchange) {})); err != nil {
		t.Fatalf("Build: %v", err)
	}
	// Built back to front, so that each stage can wrap the one after it.
	if want := []string{"b:predict", "a:predict"}; !slices.Equal(seen, want) {
		t.Errorf("constructors saw %q, want %q", seen, want)
	}
}

func TestBuildReportsTheFailingStage(t *testing.T) {
	errBad := errors.New("bad setting")
	var log []string
	builds := 0
	replaceStages(t, []Stage{
		loggingStage("first", &log, &builds),
		{Name: "picky", New: func(*config.Route, exchange.Handler) (exchange.Handler, error) { return nil, errBad }},
		loggingStage("last", &log, &builds),
	})
	h, err := Build(&config.Route{Name: "r"}, exchange.HandlerFunc(func(*exchange.Exchange) {}))
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

func TestBuildDefaultStages(t *testing.T) {
	tests := []struct {
		name          string
		maxBody       config.ByteSize
		contentLength int64
		wantTerminal  bool
		wantStatus    int
		wantUnwrapped bool // under the early-data guard (every route has it) is the terminal itself
	}{
		{name: "no body limit adds nothing but the early-data guard", maxBody: 0, contentLength: 1 << 30, wantTerminal: true, wantUnwrapped: true},
		{name: "body within the limit reaches the upstream", maxBody: 100, contentLength: 100, wantTerminal: true},
		{name: "body over the limit is refused before the upstream", maxBody: 100, contentLength: 101, wantStatus: 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reached := false
			terminal := &terminalHandler{reached: &reached}
			h, err := Build(&config.Route{Name: "r", MaxRequestBody: tt.maxBody}, terminal)
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			e, ok := h.(*earlyData)
			if !ok {
				t.Fatalf("first stage is %T, want the early-data guard", h)
			}
			if got := e.next == exchange.Handler(terminal); got != tt.wantUnwrapped {
				t.Errorf("handler is the terminal itself = %v, want %v", got, tt.wantUnwrapped)
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

type terminalHandler struct{ reached *bool }

func (h *terminalHandler) ServeExchange(*exchange.Exchange) { *h.reached = true }
