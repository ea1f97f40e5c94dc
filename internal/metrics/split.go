package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// MirrorResults are the result label values of
// penstock_split_mirror_requests_total: copied (sent to the shadow pool),
// dropped (the mirror's queue was full) and skipped (the request had a
// body, which is never copied).
var MirrorResults = [...]string{"copied", "dropped", "skipped"}

// Mirror results, indexes into MirrorResults.
const (
	MirrorCopied = iota
	MirrorDropped
	MirrorSkipped
)

// splitVecs holds the split metrics and the handles resolved from them.
type splitVecs struct {
	requests *prometheus.CounterVec
	mirror   *prometheus.CounterVec
	rollout  rolloutVecs

	mu      sync.Mutex
	arms    map[[2]string]prometheus.Counter
	mirrors map[string]*[len(MirrorResults)]prometheus.Counter
}

func newSplitVecs() *splitVecs {
	return &splitVecs{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "penstock_split_requests_total",
			Help: "Requests of split routes, by route and the arm that served them.",
		}, []string{"route", "arm"}),
		mirror: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "penstock_split_mirror_requests_total",
			Help: "Requests of split routes chosen for mirroring, by route and result (copied to the shadow pool, dropped because the mirror queue was full, skipped because the request had a body).",
		}, []string{"route", "result"}),
		arms:    make(map[[2]string]prometheus.Counter),
		mirrors: make(map[string]*[len(MirrorResults)]prometheus.Counter),
		rollout: newRolloutVecs(),
	}
}

func (v *splitVecs) collectors() []prometheus.Collector {
	return append([]prometheus.Collector{v.requests, v.mirror}, v.rollout.collectors()...)
}

// SplitArm returns the request counter of arm of the split route named
// route. Handles are cached, so a reload that keeps the arm keeps its
// series.
func (m *Metrics) SplitArm(route, arm string) prometheus.Counter {
	v := m.split
	v.mu.Lock()
	defer v.mu.Unlock()
	k := [2]string{route, arm}
	if c := v.arms[k]; c != nil {
		return c
	}
	c := v.requests.WithLabelValues(route, arm)
	v.arms[k] = c
	return c
}

// SplitMirror returns the mirror counters of the split route named route,
// indexed by MirrorCopied, MirrorDropped and MirrorSkipped.
func (m *Metrics) SplitMirror(route string) *[len(MirrorResults)]prometheus.Counter {
	v := m.split
	v.mu.Lock()
	defer v.mu.Unlock()
	if c := v.mirrors[route]; c != nil {
		return c
	}
	c := new([len(MirrorResults)]prometheus.Counter)
	for i, r := range MirrorResults {
		c[i] = v.mirror.WithLabelValues(route, r)
	}
	v.mirrors[route] = c
	return c
}
