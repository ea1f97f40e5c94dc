package snapshot

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/pipeline"
	"github.com/penstock-dev/penstock/internal/router"
)

// CheckRoutes reports what only the compiler can tell about cfg's routes:
// bad path patterns, hosts or methods, routes that conflict, and problems
// with the stage fields of a route (max_request_body, cache, ...) that the
// standard stages find. It tolerates a partly decoded config, so `penstock
// validate` can show these errors along with decoding errors (it is a
// config.Checker).
func CheckRoutes(cfg *config.Config) error {
	return checkRoutes(cfg, pipeline.Standard())
}

// checkRoutes is CheckRoutes with the given stages.
func checkRoutes(cfg *config.Config, stages *pipeline.Registry) error {
	_, err := buildRouter(cfg, func(int, *config.Route) (*Route, error) { return nil, nil })
	return config.Merge(config.Merge(nil, err), stages.Check(cfg))
}

// buildRouter adds every route of cfg to a router, with the value made by
// value, and reports errors as config errors at the route's fields.
func buildRouter(cfg *config.Config, value func(i int, rc *config.Route) (*Route, error)) (*router.Router[*Route], error) {
	col := config.NewCollector(cfg)
	var b router.Builder[*Route]
	var stageErrs config.Errors
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
		var fieldErrs config.Errors
		switch {
		case errors.As(err, &fieldErrs):
			// Already at their fields (a stage's settings). The route's
			// match is still checked against the others, conflicts
			// included.
			stageErrs = append(stageErrs, fieldErrs...)
		case err != nil:
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
		col.Add(stageErrs)
		return nil, col.Err()
	}
	col.Add(stageErrs)
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
	if col.Len() > 0 {
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
