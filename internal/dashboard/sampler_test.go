package dashboard

import (
	"math"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/metrics"
)

func TestQuantile(t *testing.T) {
	bounds := []float64{0.1, 0.2, 0.4, 0.8}
	tests := []struct {
		name   string
		q      float64
		bounds []float64
		counts []uint64 // per bucket, +Inf last
		want   float64
		over   bool
		ok     bool
	}{
		{name: "no observations", q: 0.5, bounds: bounds, counts: []uint64{0, 0, 0, 0, 0}},
		{name: "no bounds", q: 0.5, counts: []uint64{3}},
		{name: "counts do not fit the bounds", q: 0.5, bounds: bounds, counts: []uint64{1, 2}},
		{name: "q out of range", q: 1.5, bounds: bounds, counts: []uint64{1, 0, 0, 0, 0}},
		// The first bucket starts at 0: rank 5 of 10 is halfway through it.
		{name: "first bucket interpolates from zero", q: 0.5, bounds: bounds, counts: []uint64{10, 0, 0, 0, 0}, want: 0.05, ok: true},
		// 10 in (0, 0.1], 10 in (0.1, 0.2]: rank 15 is halfway through the second.
		{name: "median in second bucket", q: 0.75, bounds: bounds, counts: []uint64{10, 10, 0, 0, 0}, want: 0.15, ok: true},
		{name: "rank on a bucket's upper edge", q: 0.5, bounds: bounds, counts: []uint64{10, 10, 0, 0, 0}, want: 0.1, ok: true},
		// 99 fast, 1 in (0.4, 0.8]: rank 99 is the last fast one.
		{name: "p99 at the edge of the tail", q: 0.99, bounds: bounds, counts: []uint64{99, 0, 0, 1, 0}, want: 0.1, ok: true},
		// 98 fast and 2 slow: rank 99 is half of the slow bucket.
		{name: "p99 inside the tail bucket", q: 0.99, bounds: bounds, counts: []uint64{98, 0, 0, 2, 0}, want: 0.6, ok: true},
		// Empty buckets below the rank are skipped.
		{name: "empty buckets skipped", q: 0.5, bounds: bounds, counts: []uint64{0, 0, 4, 0, 0}, want: 0.3, ok: true},
		// Above the last bound nothing more is known: the last bound, flagged.
		{name: "rank in the +Inf bucket", q: 0.99, bounds: bounds, counts: []uint64{50, 0, 0, 0, 50}, want: 0.8, over: true, ok: true},
		{name: "q=1 with observations above the last bound", q: 1, bounds: bounds, counts: []uint64{1, 0, 0, 0, 1}, want: 0.8, over: true, ok: true},
		{name: "q=0 is the start of the first non-empty bucket", q: 0, bounds: bounds, counts: []uint64{0, 5, 0, 0, 0}, want: 0.1, ok: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, over, ok := quantile(tt.q, tt.bounds, tt.counts)
			if ok != tt.ok || over != tt.over || (ok && math.Abs(got-tt.want) > 1e-9) {
				t.Errorf("quantile(%g) = %g, over %v, ok %v; want %g, over %v, ok %v", tt.q, got, over, ok, tt.want, tt.over, tt.ok)
			}
		})
	}
}

// histogram builds one series of the request duration histogram: its
// cumulative bucket counts (finite bounds) and its total count.
func histogram(route, class string, bounds []float64, cum []uint64, count uint64) *dto.Metric {
	m := &dto.Metric{
		Label: []*dto.LabelPair{
			{Name: proto.String("method"), Value: proto.String("GET")},
			{Name: proto.String("route"), Value: proto.String(route)},
			{Name: proto.String("status_class"), Value: proto.String(class)},
		},
		Histogram: &dto.Histogram{SampleCount: proto.Uint64(count)},
	}
	for i, b := range bounds {
		m.Histogram.Bucket = append(m.Histogram.Bucket, &dto.Bucket{UpperBound: proto.Float64(b), CumulativeCount: proto.Uint64(cum[i])})
	}
	return m
}

func counter(v float64, labels ...string) *dto.Metric {
	m := &dto.Metric{Counter: &dto.Counter{Value: proto.Float64(v)}}
	for i := 0; i < len(labels); i += 2 {
		m.Label = append(m.Label, &dto.LabelPair{Name: proto.String(labels[i]), Value: proto.String(labels[i+1])})
	}
	return m
}

func family(name string, ms ...*dto.Metric) *dto.MetricFamily {
	return &dto.MetricFamily{Name: proto.String(name), Metric: ms}
}

// TestSamplerRates feeds gathered series one second apart and checks the
// rates, ratios and quantiles computed from their deltas.
func TestSamplerRates(t *testing.T) {
	bounds := []float64{0.01, 0.1, 1}
	// Each step is one sample: the cumulative values gathered then.
	type step struct {
		ok2xx, err5xx       uint64   // counts
		okCum               []uint64 // 2xx series' cumulative buckets
		attemptsOK, failed  float64
		admitted, limited   float64
		wantRate, wantRatio float64 // route rate over the rate window, 5xx ratio over the stat window
	}
	tests := []struct {
		name  string
		steps []step
		// wantP50 is the route's median after the last step (0: none).
		wantP50     float64
		wantEPRate  float64
		wantLimited float64
	}{
		{
			name: "baseline only: no rate from one sample",
			steps: []step{
				{ok2xx: 500, okCum: []uint64{500, 500, 500}},
			},
		},
		{
			name: "steady 100/s, 10 % of 5xx",
			steps: []step{
				{ok2xx: 1000, err5xx: 100, okCum: []uint64{1000, 1000, 1000}},
				{ok2xx: 1090, err5xx: 110, okCum: []uint64{1000, 1090, 1090}, attemptsOK: 90, failed: 10, admitted: 30, limited: 6, wantRate: 100, wantRatio: 0.1},
				{ok2xx: 1180, err5xx: 120, okCum: []uint64{1000, 1180, 1180}, attemptsOK: 180, failed: 20, admitted: 60, limited: 12, wantRate: 100, wantRatio: 0.1},
			},
			// 180 of the 200 new requests are 2xx in (0.01, 0.1], 20 are
			// 5xx above 1 s: rank 100 is 100/180 through (0.01, 0.1].
			wantP50:     0.01 + 0.09*100.0/180,
			wantEPRate:  100,
			wantLimited: 6,
		},
		{
			name: "counter reset counts from zero",
			steps: []step{
				{ok2xx: 1000, okCum: []uint64{1000, 1000, 1000}, attemptsOK: 1000},
				// A restart of the series: 50 new requests, all fast.
				{ok2xx: 50, okCum: []uint64{50, 50, 50}, attemptsOK: 50, wantRate: 50},
			},
			wantP50:    0.005,
			wantEPRate: 50,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSampler()
			tr := tracked{routes: map[string]bool{"r": true}, endpoints: map[string]bool{"p\x00e": true}, limits: map[string]bool{"l": true}}
			start := time.Unix(1000, 0)
			for i, st := range tt.steps {
				// The 5xx series: everything above the last bound.
				errCum := []uint64{0, 0, 0}
				mfs := []*dto.MetricFamily{
					family(metricDuration, histogram("r", "2xx", bounds, st.okCum, st.ok2xx), histogram("r", "5xx", bounds, errCum, st.err5xx)),
					family(metricAttempts, counter(st.attemptsOK, "endpoint", "e", "outcome", "ok", "upstream", "p"),
						counter(st.failed, "endpoint", "e", "outcome", "timeout", "upstream", "p")),
					family(metricDecisions, counter(st.admitted, "key_class", "client_ip", "limit", "l", "result", "admitted"),
						counter(st.limited, "key_class", "client_ip", "limit", "l", "result", "limited")),
				}
				s.sample(start.Add(time.Duration(i)*time.Second), mfs, tr)
				r := s.routes["r"]
				sums, d, ok := s.window(r.ring, rateWindow)
				if i == 0 {
					if ok {
						t.Fatalf("a rate after one sample: %v over %s", sums, d)
					}
					continue
				}
				if got := float64(sums[cTotal]) / d.Seconds(); math.Abs(got-st.wantRate) > 1e-9 {
					t.Errorf("sample %d: rate %g, want %g", i, got, st.wantRate)
				}
				stat, _, _ := s.window(r.ring, statWindow)
				if got := float64(stat[c5xx]) / float64(max(stat[cTotal], 1)); math.Abs(got-st.wantRatio) > 1e-9 {
					t.Errorf("sample %d: 5xx ratio %g, want %g", i, got, st.wantRatio)
				}
			}
			v := routeView(&config.Route{Name: "r", Match: config.Match{Path: "/"}}, s)
			if tt.wantP50 == 0 {
				if v.P50 != nil {
					t.Errorf("P50 = %g, want none", *v.P50)
				}
			} else if v.P50 == nil || math.Abs(*v.P50-round(tt.wantP50)) > 1e-9 {
				t.Errorf("P50 = %v, want %g", v.P50, round(tt.wantP50))
			}
			if ep := s.endpoints["p\x00e"]; ep != nil {
				sums, d, ok := s.window(ep, rateWindow)
				got := 0.0
				if ok {
					got = float64(sums[0]+sums[1]) / d.Seconds()
				}
				if math.Abs(got-tt.wantEPRate) > 1e-9 {
					t.Errorf("endpoint attempts %g/s, want %g", got, tt.wantEPRate)
				}
			}
			if l := s.limits["l"]; l != nil {
				sums, d, ok := s.window(l, rateWindow)
				got := 0.0
				if ok {
					got = float64(sums[1]) / d.Seconds()
				}
				if math.Abs(got-tt.wantLimited) > 1e-9 {
					t.Errorf("limited %g/s, want %g", got, tt.wantLimited)
				}
			}
		})
	}
}

// TestSamplerWindowAndSpark checks that figures cover only their window,
// that the ring forgets what is older than Slots samples, and the
// sparkline's points.
func TestSamplerWindowAndSpark(t *testing.T) {
	s := newSampler()
	tr := tracked{routes: map[string]bool{"r": true}}
	bounds := []float64{1}
	start := time.Unix(0, 0)
	var total uint64
	// 400 samples: 10 requests per second for the first 390, then none.
	for i := range 400 {
		if i > 0 && i < 390 {
			total += 10
		}
		s.sample(start.Add(time.Duration(i)*time.Second),
			[]*dto.MetricFamily{family(metricDuration, histogram("r", "2xx", bounds, []uint64{total}, total))}, tr)
	}
	r := s.routes["r"]
	sums, d, _ := s.window(r.ring, rateWindow)
	if sums[cTotal] != 0 || d != rateWindow*time.Second {
		t.Errorf("last %d samples: %d requests over %s, want 0 over %ds", rateWindow, sums[cTotal], d, rateWindow)
	}
	sums, d, _ = s.window(r.ring, Slots+100)
	// The window is clamped to the ring: Slots-1 intervals, of which the
	// first Slots-1-10 carried 10 requests each.
	if want := uint64(10 * (Slots - 1 - 10)); sums[cTotal] != want || d != (Slots-1)*time.Second {
		t.Errorf("whole ring: %d requests over %s, want %d over %ds", sums[cTotal], d, want, Slots-1)
	}
	sp := s.series(r.ring, cTotal, sparkPoints, sparkEvery)
	if len(sp) != sparkPoints {
		t.Fatalf("%d points, want %d", len(sp), sparkPoints)
	}
	// The last two points (10 s) are idle, the ones before at 10/s.
	if sp[sparkPoints-1] != 0 || sp[sparkPoints-2] != 0 || sp[sparkPoints-3] != 10 {
		t.Errorf("sparkline ends %v, want ... 10 0 0", sp[sparkPoints-4:])
	}
}

// TestSamplerBounds checks the caps: routes outside the tracked set are
// counted, not kept, and what the configuration dropped is forgotten.
func TestSamplerBounds(t *testing.T) {
	s := newSampler()
	bounds := []float64{1}
	mfs := []*dto.MetricFamily{family(metricDuration,
		histogram("kept", "2xx", bounds, []uint64{1}, 1),
		histogram("other", "2xx", bounds, []uint64{1}, 1),
		histogram("another", "2xx", bounds, []uint64{1}, 1))}
	s.sample(time.Unix(0, 0), mfs, tracked{routes: map[string]bool{"kept": true}})
	if len(s.routes) != 1 || s.untrackedRoutes != 2 {
		t.Errorf("%d routes kept, %d untracked; want 1 and 2", len(s.routes), s.untrackedRoutes)
	}
	s.sample(time.Unix(1, 0), mfs, tracked{routes: map[string]bool{}})
	if len(s.routes) != 0 || len(s.prev) != 0 {
		t.Errorf("after a reload that removed the route: %d routes, %d series kept; want none", len(s.routes), len(s.prev))
	}
}

// TestSamplerReadsGatewayMetrics records requests through internal/metrics
// on a fresh registry and reads them back: the names and labels the
// sampler expects are the ones the gateway exports.
func TestSamplerReadsGatewayMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(config.Metrics{}, reg)
	route := m.Route("predict", "")
	up := m.Upstream("models", "127.0.0.1:1")
	rl := m.RateLimit("per-client", "client_ip")
	s := newSampler()
	tr := tracked{routes: map[string]bool{"predict": true}, endpoints: map[string]bool{"models\x00127.0.0.1:1": true},
		limits: map[string]bool{"per-client": true}}
	gather := func(at time.Time) {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		s.sample(at, mfs, tr)
	}
	gather(time.Unix(0, 0))
	for i := range 200 {
		route.Start()
		status := 200
		if i%4 == 0 {
			status = 503
		}
		route.Done("POST", status, 30*time.Millisecond, 10, 10, nil, false)
		up.Attempt(20*time.Millisecond, "ok")
		rl.Decided(metrics.RateLimitLimited)
	}
	gather(time.Unix(2, 0))
	v := routeView(&config.Route{Name: "predict", Match: config.Match{Path: "/"}}, s)
	if v.Rate != 100 || v.Err5xx != 0.25 || v.Requests != 200 {
		t.Errorf("route: %g req/s, 5xx %g, %d requests; want 100, 0.25, 200", v.Rate, v.Err5xx, v.Requests)
	}
	// 30 ms falls in the default (0.025, 0.05] bucket.
	if v.P50 == nil || *v.P50 <= 0.025 || *v.P50 > 0.05 {
		t.Errorf("P50 = %v, want within (0.025, 0.05]", v.P50)
	}
	ep := s.endpoints["models\x00127.0.0.1:1"]
	if sums, _, _ := s.window(ep, rateWindow); ep == nil || sums[0] != 200 {
		t.Errorf("endpoint attempts not sampled: %v", ep)
	}
	lim := s.limits["per-client"]
	if sums, _, _ := s.window(lim, rateWindow); lim == nil || sums[1] != 200 {
		t.Errorf("limit refusals not sampled: %v", lim)
	}
}

func TestRound(t *testing.T) {
	tests := []struct{ in, want float64 }{
		{0, 0}, {math.NaN(), 0}, {math.Inf(1), 0},
		{123456, 123500}, {1.23456, 1.235}, {0.000123456, 0.0001235}, {-2.5, -2.5},
	}
	for _, tt := range tests {
		if got := round(tt.in); math.Abs(got-tt.want) > 1e-12 {
			t.Errorf("round(%g) = %g, want %g", tt.in, got, tt.want)
		}
	}
}
