package accesslog

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/tracecontext"
)

// countingWriter counts bytes and lines.
type countingWriter struct{ bytes, lines int }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.bytes += len(p)
	for _, c := range p {
		if c == '\n' {
			w.lines++
		}
	}
	return len(p), nil
}

// realisticMix is a day in the life of an inference gateway, in 100,000
// requests: load balancer health checks, a metrics scraper, a web console's
// static assets, model asset downloads, predictions (a few failing or slow)
// and streaming generations.
func realisticMix(n int) []*Record {
	rng := rand.New(rand.NewPCG(1, 2))
	out := make([]*Record, n)
	for i := range out {
		r := &Record{
			Time:      time.Unix(1795200000, int64(i)*int64(time.Millisecond)),
			TraceID:   tracecontext.NewTraceID(),
			SpanID:    tracecontext.NewSpanID(),
			RequestID: fmt.Sprintf("%032x", i),
			Proto:     "HTTP/1.1",
			Host:      "api.example.com",
			Client:    netip.MustParseAddrPort("10.1.2.3:40000"),
			Status:    200,
			Duration:  time.Duration(5+rng.IntN(40)) * time.Millisecond,
			Method:    "GET",
			Attempts:  1,
			Endpoint:  "10.0.0.7:8000",
			BytesOut:  512,
		}
		switch p := rng.IntN(100); {
		case p < 25: // health checks from two load balancers
			r.Path, r.Route, r.Pattern, r.Duration = "/healthz", "health", "/healthz", time.Millisecond
		case p < 30: // metrics scrapes
			r.Path, r.Route, r.Pattern = "/metrics", "metrics", "/metrics"
		case p < 50: // console assets
			r.Path, r.Route, r.Pattern = fmt.Sprintf("/console/static/app.%d.js", rng.IntN(20)), "console", "/console/*file"
		case p < 60: // model assets
			r.Path, r.Route, r.Pattern = "/v1/models/resnet50/assets/tokenizer.bin", "model-assets", "/v1/models/:model/assets/:file"
			r.BytesOut = 8192
		default: // predictions and generations
			r.Method, r.Route, r.Pattern = "POST", "predict", "/v1/models/:model/predict"
			r.Path, r.BytesIn = "/v1/models/resnet50/predict", 300
			switch q := rng.IntN(1000); {
			case q < 10:
				r.Status, r.ErrorKind, r.Error = 504, "upstream_timeout", "response header timeout"
			case q < 25:
				r.Status = 429
			case q < 40:
				r.Duration = 2 * time.Second
			}
		}
		out[i] = r
	}
	return out
}

// TestLogVolume measures what the default sampling rules save on a
// realistic mix, against logging every request, and checks that every
// error and slow request is still logged.
func TestLogVolume(t *testing.T) {
	mix := realisticMix(100_000)
	volume := func(rules []config.SamplingRule) *countingWriter {
		cfg := parseConfig(t, "# default rules\naccess_log: {buffer: 200000}")
		cfg.AccessLog.Sampling = rules
		for i := range cfg.AccessLog.Sampling {
			if cfg.AccessLog.Sampling[i].Name == "" {
				cfg.AccessLog.Sampling[i].Name = fmt.Sprint("rule", i)
			}
		}
		w := &countingWriter{}
		l, err := NewWithWriter(cfg, w, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range mix {
			l.Log(r)
		}
		l.Close()
		return w
	}
	all := volume([]config.SamplingRule{{Keep: true}})
	def := volume(config.DefaultSamplingRules())
	ten := 10.0
	sampled := volume(append(config.DefaultSamplingRules(), config.SamplingRule{Name: "rest", KeepPercent: &ten, KeepBy: "trace_id"}))
	errorsAndSlow := 0
	for _, r := range mix {
		if r.Status >= 400 || r.Duration > time.Second {
			errorsAndSlow++
		}
	}
	pct := func(w *countingWriter) float64 { return 100 * float64(w.bytes) / float64(all.bytes) }
	t.Logf("100,000 requests: every line %d lines / %.1f MiB; default rules %d lines / %.1f MiB (%.0f%%); "+
		"default rules + keep 10%% of the rest %d lines / %.1f MiB (%.0f%%)",
		all.lines, float64(all.bytes)/(1<<20), def.lines, float64(def.bytes)/(1<<20), pct(def),
		sampled.lines, float64(sampled.bytes)/(1<<20), pct(sampled))
	if all.lines != len(mix) {
		t.Errorf("keep-all wrote %d lines for %d requests", all.lines, len(mix))
	}
	// The mix is 50% health checks, scrapes and console assets, which the
	// defaults drop; API traffic is kept.
	if pct(def) > 60 {
		t.Errorf("default rules kept %.0f%% of the bytes; health checks and assets should have gone", pct(def))
	}
	if pct(sampled) > 10 {
		t.Errorf("with 10%% of the rest kept, %.0f%% of the bytes remained", pct(sampled))
	}
	for name, w := range map[string]*countingWriter{"default": def, "sampled": sampled} {
		if w.lines < errorsAndSlow {
			t.Errorf("%s rules wrote %d lines, fewer than the %d errors and slow requests", name, w.lines, errorsAndSlow)
		}
	}
}
