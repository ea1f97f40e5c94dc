package accesslog

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/tracecontext"
	"github.com/prometheus/client_golang/prometheus"
)

// action is what a rule does with the lines it matches.
type action uint8

const (
	actKeep action = iota
	actDrop
	actPercent
)

// rule is a compiled config.SamplingRule. Every part of its condition is
// checked with plain string comparisons, so matching does not allocate.
type rule struct {
	name string

	prefixes   []string
	methods    []string
	extensions []string
	status     []statusRange
	slowerThan time.Duration
	routes     []string

	action  action
	percent float64 // actPercent: 0–100
	param   string  // actPercent: the parameter hashed, "" for the trace id

	// kept and dropped are this rule's penstock_access_log_sampled_total
	// series, resolved once so that a decision is one atomic add.
	kept, dropped prometheus.Counter
}

// statusRange is a status match: an exact code (lo == hi) or a class
// ("5xx" is 500–599).
type statusRange struct{ lo, hi int }

// compileRules compiles rules; path names them in errors
// ("access_log.sampling").
func compileRules(path string, rules []config.SamplingRule, m *metrics) ([]rule, error) {
	out := make([]rule, 0, len(rules))
	for i, sr := range rules {
		p := fmt.Sprintf("%s[%d]", path, i)
		r := rule{
			name:       sr.Name,
			prefixes:   sr.Match.PathPrefixes,
			methods:    sr.Match.Methods,
			extensions: sr.Match.Extensions,
			slowerThan: sr.Match.SlowerThan.D(),
			routes:     sr.Match.Routes,
		}
		if r.name == "" {
			// The default config.SetDefaults gives; repeated for a
			// Config built in Go.
			r.name = "rule" + strconv.Itoa(i)
		}
		for j, s := range sr.Match.Status {
			sr, err := parseStatus(s)
			if err != nil {
				return nil, fmt.Errorf("%s.match.status[%d]: %w", p, j, err)
			}
			r.status = append(r.status, sr)
		}
		for j, e := range sr.Match.Extensions {
			if !strings.HasPrefix(e, ".") {
				return nil, fmt.Errorf("%s.match.extensions[%d]: must start with \".\", got %q", p, j, e)
			}
		}
		n := 0
		if sr.Keep {
			n++
			r.action = actKeep
		}
		if sr.Drop {
			n++
			r.action = actDrop
		}
		if sr.KeepPercent != nil {
			n++
			r.action = actPercent
			r.percent = *sr.KeepPercent
			if r.percent < 0 || r.percent > 100 {
				return nil, fmt.Errorf("%s.keep_percent: must be between 0 and 100, got %g", p, r.percent)
			}
			switch by := sr.KeepBy; {
			case by == "" || by == "trace_id":
			case strings.HasPrefix(by, "param:") && len(by) > len("param:"):
				r.param = by[len("param:"):]
			default:
				return nil, fmt.Errorf(`%s.keep_by: must be "trace_id" or "param:NAME", got %q`, p, by)
			}
		}
		if n != 1 {
			return nil, fmt.Errorf("%s: set exactly one of keep, drop and keep_percent", p)
		}
		r.kept = m.sampled.WithLabelValues(r.name, "keep")
		r.dropped = m.sampled.WithLabelValues(r.name, "drop")
		out = append(out, r)
	}
	return out, nil
}

// parseStatus reads "404" or "5xx".
func parseStatus(s string) (statusRange, error) {
	if len(s) == 3 && s[0] >= '1' && s[0] <= '5' {
		if s[1] == 'x' && s[2] == 'x' {
			lo := int(s[0]-'0') * 100
			return statusRange{lo, lo + 99}, nil
		}
		if c, err := strconv.Atoi(s); err == nil && s[1] >= '0' && s[2] >= '0' {
			return statusRange{c, c}, nil
		}
	}
	return statusRange{}, fmt.Errorf(`must be a status code or class like "404" or "5xx", got %q`, s)
}

// matches reports whether every given part of r's condition holds for rec.
func (r *rule) matches(rec *Record) bool {
	if len(r.prefixes) > 0 && !anyPrefix(rec.Path, r.prefixes) {
		return false
	}
	if len(r.methods) > 0 && !anyEqual(rec.Method, r.methods) {
		return false
	}
	if len(r.extensions) > 0 && !anyExtension(rec.Path, r.extensions) {
		return false
	}
	if len(r.status) > 0 && !anyStatus(rec.Status, r.status) {
		return false
	}
	if r.slowerThan > 0 && rec.Duration <= r.slowerThan {
		return false
	}
	if len(r.routes) > 0 && !anyEqual(rec.Route, r.routes) {
		return false
	}
	return true
}

// keep applies r's action to a record r matches.
func (r *rule) keep(rec *Record) bool {
	switch r.action {
	case actKeep:
		return true
	case actDrop:
		return false
	}
	if r.param != "" && rec.Params != nil {
		if v, ok := rec.Params.Get(r.param); ok {
			return tracecontext.KeepByKey(v, r.percent)
		}
	}
	// The trace id, and the fallback for a request without the parameter
	// (a global param rule also sees routes that have none): the same
	// percentage, decided as trace sampling decides it.
	return tracecontext.SampledByRatio(rec.TraceID, r.percent/100)
}

// decide runs rules in order: the first that matches decides, and counts
// its decision. A record no rule matches is kept.
func decide(rules []rule, rec *Record) bool {
	for i := range rules {
		r := &rules[i]
		if !r.matches(rec) {
			continue
		}
		if r.keep(rec) {
			r.kept.Inc()
			return true
		}
		r.dropped.Inc()
		return false
	}
	return true
}

func anyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

func anyEqual(s string, set []string) bool {
	for _, v := range set {
		if s == v {
			return true
		}
	}
	return false
}

// anyExtension compares case-insensitively: "/logo.PNG" is a ".png". Only
// the path is looked at, never the query.
func anyExtension(path string, exts []string) bool {
	for _, e := range exts {
		if len(path) >= len(e) && strings.EqualFold(path[len(path)-len(e):], e) {
			return true
		}
	}
	return false
}

func anyStatus(code int, set []statusRange) bool {
	for _, s := range set {
		if code >= s.lo && code <= s.hi {
			return true
		}
	}
	return false
}
