package config

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

var statusPattern = regexp.MustCompile(`^([1-5]xx|[1-5][0-9][0-9])$`)

// validateTelemetry checks the access_log, metrics and tracing blocks and
// the routes' overrides of them.
func (c *Config) validateTelemetry(col *Collector) {
	al := &c.AccessLog
	if !slices.Contains([]string{"json", "logfmt"}, al.Format) {
		col.Addf("access_log.format", "must be json or logfmt, got %q", al.Format)
	}
	if al.Output == "" {
		col.Addf("access_log.output", "must be stdout, stderr or a file path")
	}
	if al.Buffer < 1 {
		col.Addf("access_log.buffer", "must be at least 1, got %d", al.Buffer)
	}
	if !slices.Contains([]string{"full", "no_query", "redacted"}, al.Path) {
		col.Addf("access_log.path", "must be full, no_query or redacted, got %q", al.Path)
	}
	if al.MaxLinesPerSecond < 0 {
		col.Addf("access_log.max_lines_per_second", "must not be negative")
	}
	routeNames := map[string]bool{}
	for _, r := range c.Routes {
		routeNames[r.Name] = true
	}
	validateRules(col, "access_log.sampling", al.Sampling, routeNames)
	for i, r := range c.Routes {
		if r.AccessLog != nil {
			validateRules(col, fmt.Sprintf("routes[%d].access_log.sampling", i), r.AccessLog.Sampling, routeNames)
		}
	}

	prev := 0.0
	for i, b := range c.Metrics.DurationBuckets {
		if b <= prev {
			col.Addf(fmt.Sprintf("metrics.duration_buckets[%d]", i), "buckets must be positive and increasing, got %g after %g", b, prev)
			break
		}
		prev = b
	}

	t := &c.Tracing
	for i, p := range t.Propagation {
		if p != "w3c" && p != "b3" {
			col.Addf(fmt.Sprintf("tracing.propagation[%d]", i), "must be w3c or b3, got %q", p)
		}
	}
	if !slices.Contains([]string{"none", "otlp_http", "otlp_grpc", "stdout"}, t.Exporter) {
		col.Addf("tracing.exporter", "must be none, otlp_http, otlp_grpc or stdout, got %q", t.Exporter)
	}
	if strings.HasPrefix(t.Exporter, "otlp") {
		checkHostPort(col, "tracing.endpoint", t.Endpoint)
	}
	if r := t.SampleRatio; r != nil && (*r < 0 || *r > 1) {
		col.Addf("tracing.sample_ratio", "must be between 0 and 1, got %g", *r)
	}
}

func validateRules(col *Collector, path string, rules []SamplingRule, routes map[string]bool) {
	for i, r := range rules {
		p := fmt.Sprintf("%s[%d]", path, i)
		actions := 0
		if r.Keep {
			actions++
		}
		if r.Drop {
			actions++
		}
		if r.KeepPercent != nil {
			actions++
			if *r.KeepPercent < 0 || *r.KeepPercent > 100 {
				col.Addf(p+".keep_percent", "must be between 0 and 100, got %g", *r.KeepPercent)
			}
			if r.KeepBy != "trace_id" && !strings.HasPrefix(r.KeepBy, "param:") || r.KeepBy == "param:" {
				col.Addf(p+".keep_by", `must be "trace_id" or "param:NAME", got %q`, r.KeepBy)
			}
		} else if r.KeepBy != "" {
			col.Addf(p+".keep_by", "only applies with keep_percent")
		}
		if actions != 1 {
			col.Addf(p, "set exactly one of keep, drop and keep_percent")
		}
		for j, s := range r.Match.Status {
			if !statusPattern.MatchString(s) {
				col.Addf(fmt.Sprintf("%s.match.status[%d]", p, j), `must be a status code or class like "404" or "5xx", got %q`, s)
			}
		}
		for j, e := range r.Match.Extensions {
			if !strings.HasPrefix(e, ".") {
				col.Addf(fmt.Sprintf("%s.match.extensions[%d]", p, j), `must start with ".", got %q`, e)
			}
		}
		for j, pp := range r.Match.PathPrefixes {
			if !strings.HasPrefix(pp, "/") {
				col.Addf(fmt.Sprintf("%s.match.path_prefixes[%d]", p, j), `must start with "/", got %q`, pp)
			}
		}
		for j, name := range r.Match.Routes {
			if !routes[name] {
				col.Addf(fmt.Sprintf("%s.match.routes[%d]", p, j), "unknown route %q", name)
			}
		}
		checkDuration(col, p+".match.slower_than", r.Match.SlowerThan)
	}
}

// checkHostPort reports an address that is not host:port.
func checkHostPort(col *Collector, path, addr string) {
	if i := strings.LastIndexByte(addr, ':'); i <= 0 || i == len(addr)-1 {
		col.Addf(path, "must be host:port, got %q", addr)
	}
}
