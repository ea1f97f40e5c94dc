package snapshot

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/function"
)

// functionDrain bounds how long a function a reload removed or changed
// waits for its invocations in flight when its snapshot ends (after
// reload.stream_grace), before its instances are stopped.
const functionDrain = 5 * time.Second

// buildFunctions prepares cfg's functions, taking over those of prev whose
// configuration did not change (so a reload keeps their warm instances).
// No instance starts here: startFunctions does, for a serving snapshot.
func (s *Snapshot) buildFunctions(cfg *config.Config, prev *Snapshot, env Env, log *slog.Logger) error {
	s.Functions = make(map[string]*function.Function, len(cfg.Functions))
	switch {
	case prev != nil:
		s.functionMetrics = prev.functionMetrics
	case env.Telemetry != nil:
		s.functionMetrics = function.NewMetrics(env.Telemetry.Registerer)
	}
	col := config.NewCollector(cfg)
	for i := range cfg.Functions {
		fc := &cfg.Functions[i]
		if prev != nil {
			if f := prev.Functions[fc.Name]; f != nil && f.Same(fc) {
				s.Functions[fc.Name] = f
				continue
			}
		}
		f, err := function.New(*fc, function.Options{Logger: log, Metrics: s.functionMetrics})
		if err != nil {
			col.Addf(fmt.Sprintf("functions[%d]", i), "%v", err)
			continue
		}
		s.Functions[fc.Name] = f
	}
	return col.Err()
}

// function returns the function route rc's upstream names, if it names one.
func (s *Snapshot) function(rc *config.Route) (*function.Function, bool) {
	name, ok := config.FunctionOf(rc.Upstream)
	if !ok {
		return nil, false
	}
	return s.Functions[name], true
}

// startFunctions gives s's functions its tracer and starts those it does
// not share with prev (their min_instances and idle reaping).
func (s *Snapshot) startFunctions(prev *Snapshot) {
	for name, f := range s.Functions {
		f.SetTracer(s.Tracer)
		if prev == nil || prev.Functions[name] != f {
			f.Start()
		}
	}
}

// leavingFunctions lists s's functions that next does not take over.
func (s *Snapshot) leavingFunctions(next *Snapshot) []*function.Function {
	var out []*function.Function
	for name, f := range s.Functions {
		if next == nil || next.Functions[name] != f {
			out = append(out, f)
		}
	}
	return out
}

// closeFunctions drains and stops fns, together.
func closeFunctions(fns []*function.Function) {
	ctx, cancel := context.WithTimeout(context.Background(), functionDrain)
	defer cancel()
	var wg sync.WaitGroup
	for _, f := range fns {
		wg.Go(func() { f.Close(ctx) })
	}
	wg.Wait()
}
