// Package gateway compiles a configuration into an immutable snapshot (the
// router, one handler chain per route, the upstream pools), serves it on the
// configured listeners, and shuts down gracefully. The request path reads the
// current snapshot through one atomic.Pointer and takes no lock.
package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/metrics"
	"github.com/penstock-dev/penstock/internal/pipeline"
	"github.com/penstock-dev/penstock/internal/proxy"
	"github.com/penstock-dev/penstock/internal/router"
	"github.com/penstock-dev/penstock/internal/upstream"
)

// Route is a compiled route: what the router returns for a match.
type Route struct {
	// Name is the route's config name.
	Name string
	// Pattern is the path pattern as configured.
	Pattern string
	// Handler is the route's pipeline, ending in the forwarder.
	Handler exchange.Handler

	metrics         *metrics.Route
	paramAttributes bool
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

	// Trace context settings, read once per request.
	w3c, b3     bool
	sampleRatio float64
	// noRoute records requests that matched no route.
	noRoute *metrics.Route
}

// Compile validates cfg (which must have defaults applied) and builds its
// snapshot. Every problem is reported at once, each with its field path and
// line.
func Compile(cfg *config.Config, log *slog.Logger) (*Snapshot, error) {
	return compile(cfg, nil, log, nil)
}

// compile is Compile that takes over the pools of prev whose configuration
// did not change, so a reload keeps their connections, health and balancing
// state.
func compile(cfg *config.Config, prev *Snapshot, log *slog.Logger, obs *observability) (*Snapshot, error) {
	if log == nil {
		log = slog.Default()
	}
	if obs == nil {
		// Compiling only to check a config (penstock validate): metrics that
		// are never exported, no access log, no tracer.
		obs = &observability{metrics: metrics.New(cfg.Metrics, nil)}
	}
	if verr := cfg.Validate(); verr != nil {
		// Report the router's findings too, so one pass shows everything;
		// on a valid config buildRouter below finds them anyway.
		return nil, config.Merge(config.Merge(nil, verr), CheckRoutes(cfg))
	}
	col := config.NewCollector(cfg)
	s := &Snapshot{
		Config:      cfg,
		Pools:       make(map[string]*upstream.Pool, len(cfg.Upstreams)),
		w3c:         slices.Contains(cfg.Tracing.Propagation, "w3c"),
		b3:          slices.Contains(cfg.Tracing.Propagation, "b3"),
		sampleRatio: *cfg.Tracing.SampleRatio,
		noRoute:     obs.metrics.Route("", ""),
	}
	for i := range cfg.Upstreams {
		u := &cfg.Upstreams[i]
		if prev != nil {
			if p := prev.Pools[u.Name]; p != nil && p.Same(u) {
				s.Pools[u.Name] = p
				continue
			}
		}
		p, err := upstream.NewPool(u)
		if err != nil {
			col.Addf(fmt.Sprintf("upstreams[%d]", i), "%v", err)
			continue
		}
		s.Pools[u.Name] = p
	}
	if col.Len() > 0 {
		s.retireNew(prev)
		return nil, col.Err()
	}
	r, err := buildRouter(cfg, func(i int, rc *config.Route) (*Route, error) {
		pool := s.Pools[rc.Upstream]
		epMetrics := make(map[*upstream.Endpoint]*metrics.Upstream, len(pool.Endpoints))
		for _, e := range pool.Endpoints {
			epMetrics[e] = obs.metrics.Upstream(pool.Name, e.Address)
		}
		fwd := &proxy.Forwarder{
			Pool:                  pool,
			Tracer:                obs.tracer,
			EndpointMetrics:       epMetrics,
			ConnectTimeout:        rc.Timeouts.Connect.D(),
			ResponseHeaderTimeout: rc.Timeouts.ResponseHeader.D(),
			RequestTimeout:        rc.Timeouts.Request.D(),
			Logger:                log,
		}
		h, err := pipeline.BuildWith(rc, fwd, pipeline.Env{Metrics: obs.metrics})
		if err != nil {
			return nil, err
		}
		return &Route{Name: rc.Name, Pattern: routePattern(rc), Handler: h,
			metrics:         obs.metrics.Route(rc.Name, routeHost(rc.Match.Hosts)),
			paramAttributes: rc.Tracing.ParamAttributes}, nil
	})
	if err != nil {
		s.retireNew(prev)
		return nil, err
	}
	s.Router = r
	return s, nil
}

// retireNew closes the pools s created itself (not those taken over from
// prev), after s was abandoned.
func (s *Snapshot) retireNew(prev *Snapshot) {
	for name, p := range s.Pools {
		if prev == nil || prev.Pools[name] != p {
			p.Close()
		}
	}
}

// CheckRoutes reports what only the router can tell about cfg's routes: bad
// path patterns, hosts or methods, and routes that conflict. It tolerates a
// partly decoded config, so `penstock validate` can show these errors along
// with decoding errors (it is a config.Checker).
func CheckRoutes(cfg *config.Config) error {
	_, err := buildRouter(cfg, func(int, *config.Route) (*Route, error) { return nil, nil })
	return err
}

// buildRouter adds every route of cfg to a router, with the value made by
// value, and reports errors as config errors at the route's fields.
func buildRouter(cfg *config.Config, value func(i int, rc *config.Route) (*Route, error)) (*router.Router[*Route], error) {
	col := config.NewCollector(cfg)
	var b router.Builder[*Route]
	index := make(map[string]int, len(cfg.Routes))
	for i := range cfg.Routes {
		rc := &cfg.Routes[i]
		pathField := "path"
		if rc.Match.PathPrefix != "" {
			pathField = "path_prefix"
		}
		pattern := routePattern(rc)
		if pattern == "" || (rc.Match.Path != "" && rc.Match.PathPrefix != "") {
			continue // Validate reports it
		}
		if _, dup := index[rc.Name]; dup && rc.Name != "" {
			continue // Validate reports duplicate names
		}
		index[rc.Name] = i
		v, err := value(i, rc)
		if err != nil {
			col.Addf(fmt.Sprintf("routes[%d]", i), "%v", err)
			continue
		}
		spec := router.Spec[*Route]{
			Name:    rc.Name,
			Hosts:   rc.Match.Hosts,
			Path:    pattern,
			Prefix:  rc.Match.PathPrefix != "",
			Methods: rc.Match.Methods,
			Headers: headerMatches(rc.Match.Headers),
			Value:   v,
		}
		if err := b.Add(spec); err != nil {
			var pe *router.PatternError
			field := fmt.Sprintf("routes[%d].match", i)
			if errors.As(err, &pe) {
				field += "." + pathField
			}
			col.Addf(field, "%v", err)
		}
	}
	if col.Len() > 0 {
		return nil, col.Err()
	}
	r, err := b.Build()
	if err != nil {
		for _, e := range unwrapAll(err) {
			var ce *router.ConflictError
			if errors.As(e, &ce) {
				col.Addf(fmt.Sprintf("routes[%d].match", index[ce.B]), "%v", ce)
			} else {
				col.Add(e)
			}
		}
		return nil, col.Err()
	}
	return r, nil
}

func routePattern(rc *config.Route) string {
	if rc.Match.PathPrefix != "" {
		return rc.Match.PathPrefix
	}
	return rc.Match.Path
}

// Close releases the snapshot's idle upstream connections.
func (s *Snapshot) Close() {
	for _, p := range s.Pools {
		p.Close()
	}
}

func headerMatches(m map[string]string) []router.HeaderMatch {
	if len(m) == 0 {
		return nil
	}
	out := make([]router.HeaderMatch, 0, len(m))
	for k, v := range m {
		out = append(out, router.HeaderMatch{Name: strings.ToLower(k), Value: v})
	}
	// Map order is random; a stable order keeps conflict checks and errors
	// reproducible.
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func unwrapAll(err error) []error {
	if u, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range u.Unwrap() {
			out = append(out, unwrapAll(e)...)
		}
		return out
	}
	return []error{err}
}
