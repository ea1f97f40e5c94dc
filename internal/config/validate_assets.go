package config

import (
	"slices"
	"strings"
)

// validateEarlyHints checks a route's early_hints and push: every value
// parses and names only parameters of the route's own path pattern.
func validateEarlyHints(col *Collector, p string, r Route) {
	pattern := r.Match.Path
	if pattern == "" {
		pattern = r.Match.PathPrefix
	}
	params := patternParams(pattern)
	for j, v := range r.EarlyHints {
		hp := indexPath(p+".early_hints", j)
		parts, err := ParseLinkTemplate(v)
		if err != nil {
			col.Addf(hp, "%v", err)
			continue
		}
		for _, part := range parts {
			if part.Param != "" && !slices.Contains(params, part.Param) {
				have := "it has none"
				if len(params) > 0 {
					have = "it has :" + strings.Join(params, ", :")
				}
				col.Addf(hp, "parameter %q is not in the route's path pattern %q (%s)", ":"+part.Param, pattern, have)
			}
		}
	}
	if r.Push.MaxResources < 0 {
		col.Addf(p+".push.max_resources", "must not be negative, got %d", r.Push.MaxResources)
	}
	checkSize(col, p+".push.max_bytes", r.Push.MaxBytes)
	if r.Push.Enabled && len(r.EarlyHints) == 0 {
		col.Addf(p+".push.enabled", "push sends the route's early_hints targets, and it has none")
	}
}

// validateRouteCache checks a route's cache block.
func validateRouteCache(col *Collector, p string, c RouteCache) {
	checkSize(col, p+".cache.max_bytes", c.MaxBytes)
	checkSize(col, p+".cache.max_object_bytes", c.MaxObjectBytes)
	checkDuration(col, p+".cache.default_ttl", c.DefaultTTL)
	if c.Enabled && c.MaxObjectBytes > c.MaxBytes {
		col.Addf(p+".cache.max_object_bytes", "must not exceed cache.max_bytes (%s), got %s", c.MaxBytes, c.MaxObjectBytes)
	}
}
