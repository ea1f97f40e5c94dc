package dashboard

import (
	"math"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/penstock-dev/penstock/internal/ratelimit"
)

// Metric names the sampler reads (internal/metrics defines them).
const (
	metricDuration  = "penstock_http_server_request_duration_seconds"
	metricActive    = "penstock_http_server_active_requests"
	metricAttempts  = "penstock_upstream_attempts_total"
	metricDecisions = "penstock_rate_limit_decisions_total"
)

// Bounds of what the sampler keeps, whatever the configuration: its memory
// is at most about MaxRoutes × Slots × (3 + buckets + 1) × 4 bytes for
// routes (100 × 300 × 17 × 4 ≈ 2 MB with the 13 default buckets) plus
// MaxEndpoints × Slots × 8 and MaxLimits × Slots × 8 bytes.
const (
	// Slots is how many samples each ring holds: five minutes at one a
	// second.
	Slots = 300
	// MaxRoutes is how many routes are tracked, in configuration order
	// (requests that matched no route are tracked besides); later routes
	// are counted as untracked and shown without traffic figures.
	MaxRoutes = 100
	// MaxEndpoints and MaxLimits bound the upstream endpoints and rate
	// limits tracked the same way.
	MaxEndpoints = 256
	MaxLimits    = 64
	// maxBuckets bounds the duration histogram's buckets kept per sample
	// (the +Inf bucket included); a configuration with more keeps rates
	// and error ratios but shows no quantiles.
	maxBuckets = 64
)

// routeSlot indexes of a route ring's per-sample counters.
const (
	cTotal = iota
	c4xx
	c5xx
	routeCounters
)

// ring is a fixed-size window of per-sample deltas: width counters per
// sample, Slots samples. Sample k (the k-th since the sampler started) is at
// row k mod Slots.
type ring struct {
	width int
	data  []uint32
}

func newRing(width int) *ring { return &ring{width: width, data: make([]uint32, width*Slots)} }

func (r *ring) row(k int64) []uint32 {
	i := int(k%Slots) * r.width
	return r.data[i : i+r.width]
}

// sum adds the rows of samples (from, to] into out (len width).
func (r *ring) sum(from, to int64, out []uint64) {
	for k := max(from+1, to-Slots+1); k <= to; k++ {
		for i, v := range r.row(k) {
			out[i] += uint64(v)
		}
	}
}

// routeRing is one route's traffic: per sample, requests (all, 4xx, 5xx)
// then the duration histogram's per-bucket counts, the +Inf bucket last.
type routeRing struct {
	*ring
	bounds []float64 // the histogram's finite upper bounds
	active float64   // requests in flight at the last sample
}

// series is the previous cumulative value of one Prometheus series, from
// which the next sample's delta is taken.
type series struct {
	count   uint64
	buckets []uint64 // cumulative, the histogram's own (finite bounds only)
	seen    int64    // the sample that last saw it
}

// sampler turns the cumulative counters and histograms of a Prometheus
// registry into per-second deltas, kept in rings of Slots samples, from
// which rates, error ratios and quantiles over a window are computed. One
// goroutine calls sample; views read under the Dashboard's lock.
type sampler struct {
	k     int64 // samples taken; the latest is k-1
	times [Slots]time.Time

	prev      map[string]*series
	routes    map[string]*routeRing
	endpoints map[string]*ring // "pool\x00endpoint": attempts, failed attempts
	limits    map[string]*ring // limit: admitted, limited (shadow_limited counts as admitted)

	// tr is what the latest sample tracked.
	tr tracked
	// hottest are the limits' hottest keys, by limit, as read at
	// hottestAt (build reads them again every hottestEvery).
	hottest   map[string][]ratelimit.KeyStat
	hottestAt time.Time
	// untracked counts routes (endpoints, limits) seen in the last sample
	// beyond the caps.
	untrackedRoutes, untrackedEndpoints, untrackedLimits int
}

func newSampler() *sampler {
	return &sampler{prev: map[string]*series{}, routes: map[string]*routeRing{},
		endpoints: map[string]*ring{}, limits: map[string]*ring{}}
}

// tracked says which routes, endpoints and limits the sampler keeps: those
// of the configuration being served, in its order, up to the caps.
type tracked struct {
	routes    map[string]bool
	endpoints map[string]bool
	limits    map[string]bool
}

// sample adds one gathered set of metric families, taken at now. The first
// sample only sets the baseline; a series first seen later counts from
// zero (it was created by its first request), and one whose count went
// down was reset and counts from zero again, as Prometheus's rate() does.
func (s *sampler) sample(now time.Time, mfs []*dto.MetricFamily, tr tracked) {
	k := s.k
	s.tr = tr
	s.times[k%Slots] = now
	first := k == 0
	for _, r := range s.routes {
		clear(r.row(k))
	}
	for _, r := range s.endpoints {
		clear(r.row(k))
	}
	for _, r := range s.limits {
		clear(r.row(k))
	}
	s.untrackedRoutes, s.untrackedEndpoints, s.untrackedLimits = 0, 0, 0
	untracked := map[string]bool{}
	for _, mf := range mfs {
		switch mf.GetName() {
		case metricDuration:
			for _, m := range mf.GetMetric() {
				route := label(m, "route")
				if !tr.routes[route] {
					untracked["r\x00"+route] = true
					continue
				}
				s.addDuration(k, first, route, m)
			}
		case metricActive:
			for _, m := range mf.GetMetric() {
				if r := s.routes[label(m, "route")]; r != nil {
					r.active = m.GetGauge().GetValue()
				}
			}
		case metricAttempts:
			for _, m := range mf.GetMetric() {
				key := label(m, "upstream") + "\x00" + label(m, "endpoint")
				if !tr.endpoints[key] {
					untracked["e\x00"+key] = true
					continue
				}
				col := 1
				if label(m, "outcome") == "ok" {
					col = 0
				}
				s.addCounter(k, first, s.endpoints, MaxEndpoints, key, metricAttempts, col, m)
			}
		case metricDecisions:
			for _, m := range mf.GetMetric() {
				name := label(m, "limit")
				if !tr.limits[name] {
					untracked["l\x00"+name] = true
					continue
				}
				col := 0
				if label(m, "result") == "limited" {
					col = 1
				}
				s.addCounter(k, first, s.limits, MaxLimits, name, metricDecisions, col, m)
			}
		}
	}
	for key := range untracked {
		switch key[0] {
		case 'r':
			s.untrackedRoutes++
		case 'e':
			s.untrackedEndpoints++
		case 'l':
			s.untrackedLimits++
		}
	}
	// Forget what the configuration no longer has, and series no longer
	// exported, so memory follows what is served.
	for name := range s.routes {
		if !tr.routes[name] {
			delete(s.routes, name)
		}
	}
	for name := range s.endpoints {
		if !tr.endpoints[name] {
			delete(s.endpoints, name)
		}
	}
	for name := range s.limits {
		if !tr.limits[name] {
			delete(s.limits, name)
		}
	}
	for id, p := range s.prev {
		if p.seen != k {
			delete(s.prev, id)
		}
	}
	s.k++
}

// addDuration adds one request duration histogram series (a route's
// method and status class) to the route's ring.
func (s *sampler) addDuration(k int64, first bool, route string, m *dto.Metric) {
	h := m.GetHistogram()
	bs := h.GetBucket()
	// client_golang may export the +Inf bucket explicitly; it is the count.
	if n := len(bs); n > 0 && math.IsInf(bs[n-1].GetUpperBound(), +1) {
		bs = bs[:n-1]
	}
	r := s.routes[route]
	if r != nil && !sameBounds(r.bounds, bs) {
		r = nil // the buckets changed: start over
	}
	if r == nil {
		if len(s.routes) > MaxRoutes && s.routes[route] == nil { // MaxRoutes and "none"
			return
		}
		bounds := make([]float64, 0, len(bs))
		if len(bs)+1 <= maxBuckets {
			for _, b := range bs {
				bounds = append(bounds, b.GetUpperBound())
			}
		}
		r = &routeRing{ring: newRing(routeCounters + len(bounds) + 1), bounds: bounds}
		s.routes[route] = r
	}
	id := seriesID(metricDuration, m)
	p := s.prev[id]
	cum := make([]uint64, len(bs))
	for i, b := range bs {
		cum[i] = b.GetCumulativeCount()
	}
	count := h.GetSampleCount()
	if p == nil {
		p = &series{}
		s.prev[id] = p
		if first {
			// The baseline: no delta from before the sampler started.
			p.count, p.buckets, p.seen = count, cum, k
			return
		}
	}
	if count < p.count || len(p.buckets) != len(cum) {
		// Reset (or a new series): everything counted since is new.
		p.count, p.buckets = 0, make([]uint64, len(cum))
	}
	delta := count - p.count
	row := r.row(k)
	row[cTotal] += uint32(min(delta, math.MaxUint32))
	switch label(m, "status_class") {
	case "4xx":
		row[c4xx] += uint32(min(delta, math.MaxUint32))
	case "5xx":
		row[c5xx] += uint32(min(delta, math.MaxUint32))
	}
	if len(r.bounds) == len(cum) {
		var below uint64
		for i := range cum {
			d := cum[i] - min(p.buckets[i], cum[i]) // cumulative delta up to bound i
			row[routeCounters+i] += uint32(min(d-min(below, d), math.MaxUint32))
			below = d
		}
		row[routeCounters+len(cum)] += uint32(min(delta-min(below, delta), math.MaxUint32))
	}
	p.count, p.buckets, p.seen = count, cum, k
}

// addCounter adds a counter series's delta to column col of rings[key],
// creating the ring if fewer than limit exist.
func (s *sampler) addCounter(k int64, first bool, rings map[string]*ring, limit int, key, metric string, col int, m *dto.Metric) {
	r := rings[key]
	if r == nil {
		if len(rings) >= limit {
			return
		}
		r = newRing(2)
		rings[key] = r
	}
	v := uint64(m.GetCounter().GetValue())
	id := seriesID(metric, m)
	p := s.prev[id]
	if p == nil {
		p = &series{}
		s.prev[id] = p
		if first {
			p.count, p.seen = v, k
			return
		}
	}
	if v < p.count {
		p.count = 0
	}
	r.row(k)[col] += uint32(min(v-p.count, math.MaxUint32))
	p.count, p.seen = v, k
}

func sameBounds(bounds []float64, bs []*dto.Bucket) bool {
	if len(bounds) == 0 {
		return true // quantiles off (too many buckets): nothing to compare
	}
	if len(bounds) != len(bs) {
		return false
	}
	for i, b := range bs {
		if b.GetUpperBound() != bounds[i] {
			return false
		}
	}
	return true
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// seriesID names a series by its metric and label values.
func seriesID(metric string, m *dto.Metric) string {
	var b strings.Builder
	b.WriteString(metric)
	for _, l := range m.GetLabel() {
		b.WriteByte(0)
		b.WriteString(l.GetName())
		b.WriteByte('=')
		b.WriteString(l.GetValue())
	}
	return b.String()
}

// latest is the index of the latest sample, -1 before the first.
func (s *sampler) latest() int64 { return s.k - 1 }

// span returns the sample n samples before the latest (clamped to the
// oldest kept) and the time between the two; ok is false when there are
// fewer than two samples.
func (s *sampler) span(n int64) (from int64, d time.Duration, ok bool) {
	to := s.latest()
	from = max(to-n, 0, to-Slots+1)
	if to <= from {
		return 0, 0, false
	}
	return from, s.times[to%Slots].Sub(s.times[from%Slots]), true
}

// window sums ring r over the last n samples: the counters and the time
// they cover.
func (s *sampler) window(r *ring, n int64) ([]uint64, time.Duration, bool) {
	from, d, ok := s.span(n)
	if !ok || d <= 0 {
		return nil, 0, false
	}
	out := make([]uint64, r.width)
	r.sum(from, s.latest(), out)
	return out, d, true
}

// series returns, for ring r and column col, the rate per second over each
// of points consecutive groups of every samples, oldest first, ending at
// the latest sample. Groups before the first sample are 0.
func (s *sampler) series(r *ring, col int, points, every int) []float64 {
	out := make([]float64, points)
	to := s.latest()
	for p := points - 1; p >= 0; p-- {
		hi := to - int64((points-1-p)*every)
		lo := hi - int64(every)
		if hi <= 0 {
			break
		}
		lo = max(lo, 0, to-Slots+1)
		if hi <= lo {
			break
		}
		var n uint64
		for k := lo + 1; k <= hi; k++ {
			n += uint64(r.row(k)[col])
		}
		d := s.times[hi%Slots].Sub(s.times[lo%Slots]).Seconds()
		if d > 0 {
			out[p] = float64(n) / d
		}
	}
	return out
}

// quantile estimates the q-quantile (0 ≤ q ≤ 1) of observations counted
// per bucket: counts[i] observations at most bounds[i] (and above
// bounds[i-1]), counts[len(bounds)] above the last bound. It interpolates
// linearly inside the bucket the rank falls in, as Prometheus's
// histogram_quantile does: the first bucket starts at 0 (when its bound is
// positive), and a rank in the +Inf bucket gives the last finite bound
// with over set, since nothing more is known. ok is false without
// observations or bounds.
func quantile(q float64, bounds []float64, counts []uint64) (v float64, over, ok bool) {
	if len(bounds) == 0 || len(counts) != len(bounds)+1 || q < 0 || q > 1 || math.IsNaN(q) {
		return 0, false, false
	}
	var total uint64
	for _, c := range counts {
		total += c
	}
	if total == 0 {
		return 0, false, false
	}
	rank := q * float64(total)
	var cum uint64
	for i, in := range counts {
		if float64(cum+in) < rank || in == 0 {
			cum += in
			continue
		}
		if i == len(bounds) {
			return bounds[len(bounds)-1], true, true
		}
		start, end := 0.0, bounds[i]
		if i > 0 {
			start = bounds[i-1]
		} else if end <= 0 {
			return end, false, true
		}
		return start + (end-start)*(rank-float64(cum))/float64(in), false, true
	}
	// q = 0 with every observation above the last bound, or rounding.
	return bounds[len(bounds)-1], true, true
}
