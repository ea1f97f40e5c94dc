package snapshot

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/router"
)

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
