// Package snapshot compiles a configuration into an immutable snapshot:
// the router with one compiled handler chain per route, the upstream pools,
// and everything else a request reads (route metrics, access log rules, the
// tracer, trace context settings). Compile is the one place a configuration
// is validated. The request path reaches the current snapshot through one
// atomic.Pointer (internal/front) and takes no lock; a reload compiles a new
// snapshot, swaps it in and retires the old one (internal/server).
package snapshot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/penstock-dev/penstock/internal/accesslog"
	"github.com/penstock-dev/penstock/internal/batch"
	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/epoll"
	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/function"
	"github.com/penstock-dev/penstock/internal/metrics"
	"github.com/penstock-dev/penstock/internal/pipeline"
	"github.com/penstock-dev/penstock/internal/proxy"
	"github.com/penstock-dev/penstock/internal/rollout"
	"github.com/penstock-dev/penstock/internal/router"
	"github.com/penstock-dev/penstock/internal/split"
	"github.com/penstock-dev/penstock/internal/tracing"
	"github.com/penstock-dev/penstock/internal/upstream"
)

// Route is a compiled route: what the router returns for a match. Its
// fields are read by every request and never written after Compile.
type Route struct {
	// Name is the route's config name.
	Name string
	// Pattern is the path pattern as configured.
	Pattern string
	// Handler is the route's pipeline, ending in the forwarder.
	Handler exchange.Handler
	// Metrics are the route's pre-resolved request metrics.
	Metrics *metrics.Route
	// ParamAttributes records path parameters on the route's spans.
	ParamAttributes bool
	// Preflight: the route answers CORS preflights for the requests it
	// serves (it has a cors policy), so front routes them here.
	Preflight bool
}

// RouteName returns the route's name: a Route is the exchange's handle on
// the route it matched (exchange.Route).
func (r *Route) RouteName() string { return r.Name }

// Snapshot is one compiled configuration. It is never modified after
// Compile returns; a reload builds a new one and swaps it in.
type Snapshot struct {
	// Config is the configuration the snapshot was compiled from.
	Config *config.Config
	// Router maps requests to routes.
	Router *router.Router[*Route]
	// Pools are the upstream pools by name.
	Pools map[string]*upstream.Pool
	// Functions are the functions by name (functions.go).
	Functions map[string]*function.Function

	// W3C and B3 are the trace context formats read from requests;
	// SampleRatio samples new traces.
	W3C, B3     bool
	SampleRatio float64
	// NoRoute records requests that matched no route.
	NoRoute *metrics.Route
	// Tracer records spans; nil records none.
	Tracer *tracing.Tracer
	// AccessLog writes one line per request with this configuration's
	// rules (global and per route); nil when the access log is off.
	AccessLog *accesslog.Logger

	// stages built the routes' pipelines; state is what they keep across
	// reloads (rate limit counters, concurrency limits).
	stages *pipeline.Registry
	state  *pipeline.State
	// mirrors are the split routes' mirrors, for the admin API.
	mirrors []*split.Mirror
	// functionMetrics are the function runtime's metric families, made
	// by the first snapshot and handed on.
	functionMetrics *function.Metrics
	// streams counts the forwarders' WebSocket tunnels (Env.Streams).
	streams *proxy.Streams
	// rollouts shares the rollouts with a fleet (Env.Rollouts), or nil.
	rollouts rollout.Sharing
}

// Mirrors returns the mirrors of the split routes.
func (s *Snapshot) Mirrors() []*split.Mirror { return s.mirrors }

// Limiters returns the state of the rate limits the routes apply (for the
// admin API's GET /limits).
func (s *Snapshot) Limiters() []*pipeline.Limiter { return pipeline.Limiters(s.state) }

// EffectiveConfig returns Config with the defaults of the routes' stage
// fields filled in too (config.SetDefaults fills the rest): what GET
// /config shows. It is made on each call, so the snapshot does not hold a
// second copy of every route's settings.
func (s *Snapshot) EffectiveConfig() *config.Config {
	stages := s.stages
	if stages == nil {
		stages = pipeline.Standard()
	}
	return stages.WithDefaults(s.Config)
}

// Env is what a snapshot is compiled against besides its configuration.
type Env struct {
	// Prev is the snapshot being replaced (a reload), or nil. Its pools,
	// tracer and access log output are taken over where their
	// configuration did not change, so a reload keeps upstream connections,
	// health and balancing state, the span exporter and the log file.
	Prev *Snapshot
	// Logger receives the forwarders' logs. Nil means slog.Default().
	Logger *slog.Logger
	// Telemetry is the process's metrics and where spans and access log
	// lines go. Nil compiles only to check a configuration (penstock
	// validate): metrics that are never exported, no access log output and
	// no span exporter are opened.
	Telemetry *Telemetry
	// Stages is the route pipeline's stage table. Nil means
	// pipeline.Standard().
	Stages *pipeline.Registry
	// IO is the Linux I/O layer the upstream pools' clients use. Nil means
	// epoll.Shared().
	IO *epoll.IO
	// Streams counts the process's WebSocket tunnels (see
	// proxy.Streams). Nil counts none.
	Streams *proxy.Streams
	// Rollouts, when set, shares the routes' rollouts with a fleet (a node
	// whose configuration comes from etcd: fleet.Rollouts). Nil: each
	// rollout is this node's own.
	Rollouts rollout.Sharing
}

// Compile validates cfg (which must have defaults applied) and builds its
// snapshot. It is the only place a configuration is validated: every
// problem is reported at once, each with its field path and line. On error
// nothing env.Prev holds is changed and nothing Compile opened is left
// open.
func Compile(cfg *config.Config, env Env) (*Snapshot, error) {
	stages := env.Stages
	if stages == nil {
		stages = pipeline.Standard()
	}
	if verr := cfg.Validate(); verr != nil {
		// Report the router's and the stages' findings too, so one pass
		// shows everything; on a valid config buildRouter below finds them
		// anyway.
		return nil, config.Merge(config.Merge(nil, verr), checkRoutes(cfg, stages))
	}
	log := env.Logger
	if log == nil {
		log = slog.Default()
	}
	prev := env.Prev
	var prevState *pipeline.State
	if prev != nil {
		prevState = prev.state
	}
	s := &Snapshot{
		state:       pipeline.NewState(prevState),
		Config:      cfg,
		stages:      stages,
		Pools:       make(map[string]*upstream.Pool, len(cfg.Upstreams)),
		W3C:         slices.Contains(cfg.Tracing.Propagation, "w3c"),
		B3:          slices.Contains(cfg.Tracing.Propagation, "b3"),
		SampleRatio: *cfg.Tracing.SampleRatio,
		streams:     env.Streams,
		rollouts:    env.Rollouts,
	}
	m := metrics.New(cfg.Metrics, nil)
	if env.Telemetry != nil {
		m = env.Telemetry.Metrics
	}
	s.NoRoute = m.Route("", "")
	if err := s.buildPools(cfg, prev, env.IO); err != nil {
		return nil, err
	}
	if err := s.buildFunctions(cfg, prev, env, log); err != nil {
		s.Discard(prev)
		return nil, err
	}
	if env.Telemetry != nil {
		if err := s.observe(cfg, prev, env.Telemetry); err != nil {
			s.Discard(prev)
			return nil, err
		}
	}
	defer s.state.Forget()
	r, err := buildRouter(cfg, func(i int, rc *config.Route) (*Route, error) {
		retry, err := retryPolicy(s.state, rc, m)
		if err != nil {
			return nil, err
		}
		var terminal exchange.Handler
		switch fn, isFn := s.function(rc); {
		case isFn:
			terminal = fn
		case rc.Split != nil:
			if terminal, err = s.splitter(cfg, rc, m, log, retry); err != nil {
				return nil, err
			}
		default:
			terminal = s.forwarder(rc, rc.Upstream, m, log, retry)
		}
		if rc.Batch != nil {
			endpoints := 1 // a function's instances come and go
			if p := s.Pools[rc.Upstream]; p != nil {
				endpoints = len(p.Endpoints)
			}
			bt, err := batch.New(rc.Batch, terminal, endpoints, m.Batch(rc.Name), log)
			if err != nil {
				return nil, err
			}
			terminal = bt
		}
		h, err := stages.Build(cfg, i, terminal, &pipeline.Env{Metrics: m, Logger: log, State: s.state})
		if err != nil {
			return nil, err
		}
		return &Route{Name: rc.Name, Pattern: routePattern(rc), Handler: h,
			Metrics:         m.Route(rc.Name, routeHost(rc.Match.Hosts)),
			ParamAttributes: rc.Tracing.ParamAttributes,
			Preflight:       pipeline.AnswersPreflights(h)}, nil
	})
	if err != nil {
		s.Discard(prev)
		return nil, err
	}
	s.Router = r
	if env.Telemetry != nil {
		// Only a serving snapshot runs health checkers (a kept pool's run
		// on); Retire's Close stops them.
		obs := upstream.LogObserver(log, env.Telemetry.Metrics.Protection())
		for _, p := range s.Pools {
			p.Start(obs)
		}
		s.startFunctions(prev)
	}
	return s, nil
}

// buildPools builds cfg's upstream pools, taking over those of prev whose
// configuration did not change. On error it closes the pools it built.
func (s *Snapshot) buildPools(cfg *config.Config, prev *Snapshot, io *epoll.IO) error {
	col := config.NewCollector(cfg)
	for i := range cfg.Upstreams {
		u := &cfg.Upstreams[i]
		if prev != nil {
			if p := prev.Pools[u.Name]; p != nil && p.Same(u) {
				s.Pools[u.Name] = p
				continue
			}
		}
		p, err := upstream.NewPoolWith(u, upstream.Options{IO: io})
		if err != nil {
			col.Addf(fmt.Sprintf("upstreams[%d]", i), "%v", err)
			continue
		}
		s.Pools[u.Name] = p
	}
	if col.Len() > 0 {
		s.Discard(prev)
		return col.Err()
	}
	return nil
}

// routeHost is the host label of a route's metrics when metrics.per_host is
// on: the configured host patterns, never the request's Host.
func routeHost(hosts []string) string { return strings.Join(hosts, ",") }

// flushTimeout bounds how long retiring a tracer waits for its exporter.
const flushTimeout = 5 * time.Second

// Retire releases what s holds that next does not share, in two steps:
// idle upstream connections close at once; the returned end closes the
// rest (connections still carrying requests, the tracer after exporting
// its queued spans, the access log output after writing its queued lines).
// The caller runs end once the requests still running on s have had their
// time (reload.stream_grace), or at shutdown; end is nil when next took
// over everything. With next nil everything goes.
func (s *Snapshot) Retire(next *Snapshot) (end func() error) {
	type retired struct{ pool, successor *upstream.Pool }
	var pools []retired
	for name, p := range s.Pools {
		if next == nil || next.Pools[name] != p {
			p.Close()
			r := retired{pool: p}
			if next != nil {
				r.successor = next.Pools[name]
			}
			pools = append(pools, r)
		}
	}
	var tracer *tracing.Tracer
	if next == nil || next.Tracer != s.Tracer {
		tracer = s.Tracer
	}
	var log *accesslog.Logger
	if next == nil || !next.AccessLog.SameOutput(s.AccessLog) {
		log = s.AccessLog
	}
	var nextState *pipeline.State
	if next != nil {
		nextState = next.state
	}
	leaving := s.state.Leaving(nextState)
	functions := s.leavingFunctions(next)
	if len(pools) == 0 && tracer == nil && log == nil && len(leaving) == 0 && len(functions) == 0 {
		return nil
	}
	return func() error {
		for _, r := range pools {
			r.pool.EndFor(r.successor)
		}
		closeFunctions(functions)
		ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
		defer cancel()
		return errors.Join(log.Close(), tracer.Shutdown(ctx), pipeline.Close(leaving))
	}
}

// Close releases everything the snapshot holds: its upstream connections,
// its tracer and its access log output (penstock validate, shutdown).
func (s *Snapshot) Close() error { return s.Discard(nil) }

// Discard releases at once what s holds that prev does not: a snapshot
// that was compiled but will not serve (a reload that failed after
// compiling).
func (s *Snapshot) Discard(prev *Snapshot) error {
	if end := s.Retire(prev); end != nil {
		return end()
	}
	return nil
}
