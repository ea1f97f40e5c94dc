package accesslog

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/tracecontext"
)

// stream generates a reproducible mix of traffic: health checks, static
// assets, errors, slow requests, ordinary API calls with random trace ids,
// a parameter route with repeating user ids, and requests no route matched.
func stream(n int) []*Record {
	rng := rand.New(rand.NewPCG(1, 2))
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	out := make([]*Record, 0, n)
	for i := range n {
		r := &Record{
			Time:      start.Add(time.Duration(i) * time.Millisecond),
			RequestID: reqID(i),
			Proto:     "HTTP/1.1",
			Method:    "GET",
			Host:      "api.example.com",
			Status:    200,
			Duration:  20 * time.Millisecond,
			Attempts:  1,
		}
		for j := range r.TraceID {
			r.TraceID[j] = byte(rng.Uint32())
		}
		for j := range r.SpanID {
			r.SpanID[j] = byte(rng.Uint32())
		}
		switch k := rng.IntN(100); {
		case k < 15: // health checks
			r.Route, r.Pattern = "health", "/healthz"
			r.Path = []string{"/healthz", "/readyz"}[rng.IntN(2)]
			r.Duration = time.Millisecond
		case k < 30: // static assets, and a JSON file whose query looks like one
			r.Route, r.Pattern = "static", "/static"
			r.Path = []string{"/static/app.js", "/static/site.css", "/static/logo.PNG", "/static/model.bin", "/static/data.json"}[rng.IntN(5)]
			if r.Path == "/static/data.json" {
				r.Query = "v=app.js"
			}
			r.Method = []string{"GET", "HEAD"}[rng.IntN(2)]
		case k < 40: // errors
			r.Route, r.Pattern, r.Path = "api", "/v1/chat", "/v1/chat"
			r.Method = "POST"
			r.Status = []int{500, 502, 503, 404, 429}[rng.IntN(5)]
		case k < 45: // slow: exactly 2s (not "slower than 2s") or 3s
			r.Route, r.Pattern, r.Path = "api", "/v1/chat", "/v1/chat"
			r.Method = "POST"
			r.Duration = time.Duration(2+rng.IntN(2)) * time.Second
		case k < 50: // no route matched
			r.Path = fmt.Sprintf("/nowhere/%d", rng.IntN(10))
			r.Status = 404
		case k < 75: // the parameter route, a few users many times
			r.Path = fmt.Sprintf("/v1/users/u%d", rng.IntN(40))
			r.Method = []string{"GET", "PUT"}[rng.IntN(2)]
			withRoute(r)
		default: // ordinary API traffic
			r.Route, r.Pattern, r.Path = "api", "/v1/chat", "/v1/chat"
			r.Method = "POST"
			r.Query = "callback=x.js"
		}
		out = append(out, r)
	}
	return out
}

// decision is what the sampling oracle expects for a record: the rule that
// decides ("" when none matches) and whether the line is kept.
type decision struct {
	rule string
	keep bool
}

func hasExt(path string, exts ...string) bool {
	for _, e := range exts {
		if strings.HasSuffix(strings.ToLower(path), e) {
			return true
		}
	}
	return false
}

func isGetOrHead(r *Record) bool { return r.Method == "GET" || r.Method == "HEAD" }

func userID(r *Record) string {
	v, _ := r.Params.Get("id")
	return v
}

// TestSamplingRules runs the generated stream through rule sets and checks
// every request's line against an independent statement of the rules, and
// the per-rule counters against the tally of that statement.
func TestSamplingRules(t *testing.T) {
	records := stream(6000)
	tests := []struct {
		name   string
		config string
		want   func(r *Record) decision
	}{
		{
			name:   "an explicit keep rule keeps every line",
			config: `access_log: {sampling: [{name: all, keep: true}]}`,
			want:   func(r *Record) decision { return decision{"all", true} },
		},
		{
			name:   "the default rules when none are set",
			config: "# default rules\naccess_log: {format: json}",
			want: func(r *Record) decision {
				healthy := false
				for _, p := range []string{"/healthz", "/readyz", "/livez", "/health", "/metrics"} {
					if strings.HasPrefix(r.Path, p) {
						healthy = true
					}
				}
				static := false
				for _, e := range []string{".js", ".css", ".png", ".jpg", ".jpeg", ".gif", ".svg", ".ico", ".woff", ".woff2", ".map"} {
					if strings.HasSuffix(strings.ToLower(r.Path), e) {
						static = true
					}
				}
				switch {
				case healthy && r.Status >= 200 && r.Status < 400:
					return decision{"health", false}
				case r.Status >= 400 && r.Status < 600:
					return decision{"errors", true}
				case r.Duration > time.Second:
					return decision{"slow", true}
				case static && (r.Method == "GET" || r.Method == "HEAD"):
					return decision{"static", false}
				}
				return decision{"", true}
			},
		},
		{
			name: "the typical set from the documentation",
			config: `
access_log:
  sampling:
    - {name: health, match: {path_prefixes: [/healthz, /readyz]}, drop: true}
    - {name: errors, match: {status: [5xx, 4xx]}, keep: true}
    - {name: slow, match: {slower_than: 1s}, keep: true}
    - {name: assets, match: {methods: [GET, HEAD], extensions: [.js, .css, .png, .bin]}, drop: true}
    - {name: rest, keep_percent: 10}
`,
			want: func(r *Record) decision {
				switch {
				case strings.HasPrefix(r.Path, "/healthz") || strings.HasPrefix(r.Path, "/readyz"):
					return decision{"health", false}
				case r.Status >= 400 && r.Status <= 599:
					return decision{"errors", true}
				case r.Duration > time.Second:
					return decision{"slow", true}
				case isGetOrHead(r) && hasExt(r.Path, ".js", ".css", ".png", ".bin"):
					return decision{"assets", false}
				}
				return decision{"rest", tracecontext.SampledByRatio(r.TraceID, 0.10)}
			},
		},
		{
			name:   "status: an exact code matches only itself",
			config: `access_log: {sampling: [{name: not_found, match: {status: ["404"]}, drop: true}]}`,
			want: func(r *Record) decision {
				if r.Status == 404 {
					return decision{"not_found", false}
				}
				return decision{"", true}
			},
		},
		{
			name:   "status: a class matches its hundred codes",
			config: `access_log: {sampling: [{name: server_errors, match: {status: [5xx]}, drop: true}]}`,
			want: func(r *Record) decision {
				if r.Status >= 500 {
					return decision{"server_errors", false}
				}
				return decision{"", true}
			},
		},
		{
			name:   "extensions: the path's, not the query's, in any case",
			config: `access_log: {sampling: [{name: scripts, match: {extensions: [.js, .png]}, drop: true}]}`,
			want: func(r *Record) decision {
				if strings.HasSuffix(r.Path, ".js") || strings.HasSuffix(r.Path, ".PNG") {
					return decision{"scripts", false}
				}
				return decision{"", true}
			},
		},
		{
			name:   "methods",
			config: `access_log: {sampling: [{name: writes, match: {methods: [POST, PUT]}, drop: true}]}`,
			want: func(r *Record) decision {
				if r.Method == "POST" || r.Method == "PUT" {
					return decision{"writes", false}
				}
				return decision{"", true}
			},
		},
		{
			name:   "slower_than: strictly longer",
			config: `access_log: {sampling: [{name: very_slow, match: {slower_than: 2s}, drop: true}]}`,
			want: func(r *Record) decision {
				if r.Duration > 2*time.Second {
					return decision{"very_slow", false}
				}
				return decision{"", true}
			},
		},
		{
			name:   "path_prefixes",
			config: `access_log: {sampling: [{name: v1, match: {path_prefixes: [/v1/]}, drop: true}]}`,
			want: func(r *Record) decision {
				if strings.HasPrefix(r.Path, "/v1/") {
					return decision{"v1", false}
				}
				return decision{"", true}
			},
		},
		{
			name: "routes: by name; a request without a route matches none",
			config: `
routes: [{name: users}, {name: health}]
access_log: {sampling: [{name: noisy_routes, match: {routes: [users, health]}, drop: true}]}`,
			want: func(r *Record) decision {
				if r.Route == "users" || r.Route == "health" {
					return decision{"noisy_routes", false}
				}
				return decision{"", true}
			},
		},
		{
			name: "all parts of a match must hold",
			config: `
access_log:
  sampling:
    - {name: static_png, match: {path_prefixes: [/static/], extensions: [.png], methods: [HEAD]}, drop: true}`,
			want: func(r *Record) decision {
				if strings.HasPrefix(r.Path, "/static/") && strings.HasSuffix(r.Path, ".PNG") && r.Method == "HEAD" {
					return decision{"static_png", false}
				}
				return decision{"", true}
			},
		},
		{
			name: "the first matching rule decides",
			config: `
routes: [{name: api}]
access_log:
  sampling:
    - {name: api_errors, match: {status: [5xx]}, keep: true}
    - {name: api_rest, match: {routes: [api]}, drop: true}
    - {name: never_reached_for_api, match: {routes: [api]}, keep: true}`,
			want: func(r *Record) decision {
				switch {
				case r.Status >= 500:
					return decision{"api_errors", true}
				case r.Route == "api":
					return decision{"api_rest", false}
				}
				return decision{"", true}
			},
		},
		{
			name: "keep_by param: the same users every time",
			config: `
access_log:
  sampling:
    - {name: by_user, match: {routes: [users]}, keep_percent: 30, keep_by: "param:id"}
    - {name: others, keep_percent: 50}
routes: [{name: users}]`,
			want: func(r *Record) decision {
				if r.Route == "users" {
					return decision{"by_user", tracecontext.KeepByKey(userID(r), 30)}
				}
				return decision{"others", tracecontext.SampledByRatio(r.TraceID, 0.5)}
			},
		},
		{
			name: "a route's rules replace the global ones",
			config: `
access_log:
  sampling:
    - {name: everything, drop: true}
routes:
  - name: users
    access_log:
      sampling:
        - {name: users_sample, keep_percent: 25, keep_by: "param:id"}
  - name: api
    access_log:
      sampling:
        - {name: api_errors, match: {status: [5xx]}, keep: true}
        - {name: api_slow, match: {slower_than: 1s}, drop: true}
`,
			want: func(r *Record) decision {
				switch r.Route {
				case "users":
					return decision{"users_sample", tracecontext.KeepByKey(userID(r), 25)}
				case "api":
					switch {
					case r.Status >= 500:
						return decision{"api_errors", true}
					case r.Duration > time.Second:
						return decision{"api_slow", false}
					}
					return decision{"", true} // no route rule matched: kept, global rules not consulted
				}
				return decision{"everything", false}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out sink
			// The default buffer (8192) holds the whole stream.
			l, reg := newTestLogger(t, tt.config, &out, nil)

			type tally struct{ keep, drop int }
			want := map[string]*tally{}
			var wantIDs []string
			sampledOut := 0
			for i, r := range records {
				d := tt.want(r)
				if d.rule != "" {
					if want[d.rule] == nil {
						want[d.rule] = &tally{}
					}
					if d.keep {
						want[d.rule].keep++
					} else {
						want[d.rule].drop++
					}
				}
				if d.keep {
					wantIDs = append(wantIDs, reqID(i))
				} else {
					sampledOut++
				}
				l.Log(r)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}

			var gotIDs []string
			for _, line := range out.lines() {
				gotIDs = append(gotIDs, requestID(t, line))
			}
			if !slices.Equal(gotIDs, wantIDs) {
				t.Errorf("kept %d lines, want %d; first difference: %s", len(gotIDs), len(wantIDs), firstDiff(gotIDs, wantIDs))
			}
			for rule, w := range want {
				for _, c := range []struct {
					decision string
					n        int
				}{{"keep", w.keep}, {"drop", w.drop}} {
					if got := counterValue(t, reg, "penstock_access_log_sampled_total", "rule", rule, "decision", c.decision); got != float64(c.n) {
						t.Errorf("sampled_total{rule=%q,decision=%q} = %v, want %d", rule, c.decision, got, c.n)
					}
				}
			}
			if got := linesTotal(t, reg, resultSampledOut); got != float64(sampledOut) {
				t.Errorf("lines_total{sampled_out} = %v, want %d", got, sampledOut)
			}
			if got := linesTotal(t, reg, resultWritten); got != float64(len(wantIDs)) {
				t.Errorf("lines_total{written} = %v, want %d", got, len(wantIDs))
			}
			// Every rule of the case must have decided something, or the
			// stream does not exercise it and the case proves nothing.
			for _, name := range ruleNames(l) {
				if w := want[name]; w == nil || w.keep+w.drop == 0 {
					if !strings.HasPrefix(name, "never_reached") {
						t.Errorf("rule %q decided no request of the stream", name)
					}
				}
			}
		})
	}
}

// ruleNames lists the rules of l's current settings.
func ruleNames(l *Logger) []string {
	s := l.s
	var names []string
	for _, r := range s.global {
		names = append(names, r.name)
	}
	for _, rules := range s.perRoute {
		for _, r := range rules {
			names = append(names, r.name)
		}
	}
	return names
}

func firstDiff(got, want []string) string {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Sprintf("line %d is %s, want %s", i, got[i], want[i])
		}
	}
	if len(got) > len(want) {
		return "extra " + got[len(want)]
	}
	if len(want) > len(got) {
		return "missing " + want[len(got)]
	}
	return "none"
}

// TestKeepByTraceIDAgreesWithTraceSampling checks that keep_percent by
// trace id keeps exactly the traces that trace sampling at the same ratio
// samples, so a sampled trace has its log line and the other way round.
func TestKeepByTraceIDAgreesWithTraceSampling(t *testing.T) {
	records := stream(5000)
	for _, percent := range []float64{0, 0.5, 10, 33.3, 50, 99, 100} {
		t.Run(fmt.Sprint(percent), func(t *testing.T) {
			var out sink
			l, _ := newTestLogger(t, fmt.Sprintf("access_log: {buffer: 10000, sampling: [{keep_percent: %g}]}", percent), &out, nil)
			for _, r := range records {
				l.Log(r)
			}
			l.Close()
			kept := map[string]bool{}
			for _, line := range out.lines() {
				kept[requestID(t, line)] = true
			}
			for i, r := range records {
				var c tracecontext.Context
				c.TraceID = r.TraceID
				c.Decide(percent / 100)
				if sampled := c.Sampled(); kept[reqID(i)] != sampled {
					t.Fatalf("trace %x: line kept %v, trace sampled %v", r.TraceID, kept[reqID(i)], sampled)
				}
			}
			if percent > 0 && percent < 100 && (len(kept) == 0 || len(kept) == len(records)) {
				t.Errorf("kept %d of %d: the ratio was not exercised", len(kept), len(records))
			}
		})
	}
}

// TestKeepByParamIsConsistent checks that keep_by param keeps a given value
// always or never, whatever the trace, and falls back to the trace id for a
// request without the parameter.
func TestKeepByParamIsConsistent(t *testing.T) {
	var out sink
	l, _ := newTestLogger(t, `access_log: {buffer: 10000, sampling: [{keep_percent: 30, keep_by: "param:id"}]}`, &out, nil)
	rng := rand.New(rand.NewPCG(3, 4))
	type sent struct {
		id      string // the parameter, "" for the route without it
		traceID [16]byte
	}
	var all []sent
	for round := range 5 {
		for u := range 200 {
			r := withRoute(&Record{Method: "GET", Path: fmt.Sprintf("/v1/users/user-%d", u), RequestID: fmt.Sprintf("%d/%d", round, u)})
			for j := range r.TraceID {
				r.TraceID[j] = byte(rng.Uint32())
			}
			all = append(all, sent{fmt.Sprintf("user-%d", u), r.TraceID})
			l.Log(r)
		}
		r := withRoute(&Record{Method: "POST", Path: "/v1/models/m/predict", RequestID: fmt.Sprintf("%d/model", round)})
		r.TraceID[15] = byte(round * 60)
		all = append(all, sent{"", r.TraceID})
		l.Log(r)
	}
	l.Close()
	kept := map[string]bool{}
	for _, line := range out.lines() {
		kept[requestID(t, line)] = true
	}
	keptUsers := map[string]int{}
	for i, s := range all {
		round, idx := i/201, i%201
		id := fmt.Sprintf("%d/%d", round, idx)
		want := false
		if s.id == "" {
			id = fmt.Sprintf("%d/model", round)
			want = tracecontext.SampledByRatio(s.traceID, 0.30)
		} else {
			want = tracecontext.KeepByKey(s.id, 30)
			if kept[id] {
				keptUsers[s.id]++
			}
		}
		if kept[id] != want {
			t.Errorf("request %s (param %q): kept %v, want %v", id, s.id, kept[id], want)
		}
	}
	for user, n := range keptUsers {
		if n != 5 {
			t.Errorf("%s kept %d times of 5", user, n)
		}
	}
	if n := len(keptUsers); n < 30 || n > 90 {
		t.Errorf("kept %d users of 200 at 30%%", n)
	}
}
