package fleet

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// status is what GET /config/source shows (as Status).
type status = Status

// Status is a node's view of its configuration source, for GET
// /config/source on the admin API.
type Status struct {
	// Source is the etcd URL; Key the configuration key; Node this node's id.
	Source string `json:"source"`
	Key    string `json:"key"`
	Node   string `json:"node"`
	// Connected reports whether the last request to etcd succeeded;
	// LastContact is when one last did, LastError why the last one failed.
	Connected   bool       `json:"connected"`
	LastContact *time.Time `json:"last_contact,omitempty"`
	LastError   string     `json:"last_error,omitempty"`
	// Served is the revision this node serves.
	Served Served `json:"served"`
	// Latest is the newest revision of the key this node has seen.
	Latest int64 `json:"latest_revision"`
	// Missing is set while the key does not exist in etcd.
	Missing bool `json:"key_missing,omitempty"`
	// Refused is the last revision refused, with its errors;
	// RefusedTotal counts refusals since start.
	Refused      *Refusal `json:"last_refused,omitempty"`
	RefusedTotal int      `json:"refused_total"`
	// Cache is the on-disk copy of the last good configuration.
	Cache CacheStatus `json:"cache"`
	// Registered reports whether PREFIX/nodes/<node> holds this node's
	// revision now.
	Registered bool `json:"registered"`

	checked bool
}

// Served is the configuration a node serves.
type Served struct {
	// Revision is the etcd revision that wrote it.
	Revision int64 `json:"revision"`
	// From is "etcd", or "cache" when the node started from its cache and
	// has not reached etcd since.
	From   string    `json:"from"`
	Digest string    `json:"digest"`
	Since  time.Time `json:"since"`
}

// Refusal is a revision the node refused, the previous one serving on.
type Refusal struct {
	Revision int64          `json:"revision"`
	At       time.Time      `json:"at"`
	Errors   []RefusalError `json:"errors"`
}

// RefusalError is one error of a refused revision.
type RefusalError struct {
	// Field is the field path and Line its line in the document, when known.
	Field string `json:"field,omitempty"`
	Line  int    `json:"line,omitempty"`
	// Message says what is wrong; Error is the whole line as logged.
	Message string `json:"message"`
	Error   string `json:"error"`
}

// CacheStatus is the state of the cache file.
type CacheStatus struct {
	Path     string    `json:"path,omitempty"`
	Revision int64     `json:"revision,omitempty"`
	Written  time.Time `json:"written,omitzero"`
	Error    string    `json:"error,omitempty"`
}

// Status returns the node's view of its source now.
func (s *Source) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	if st.Refused != nil {
		r := *st.Refused
		st.Refused = &r
	}
	return st
}

// State is Status as the admin API takes it.
func (s *Source) State() any { return s.Status() }

// sourceMetrics follow the configuration source.
type sourceMetrics struct {
	revision  prometheus.Gauge
	refused   prometheus.Counter
	connected prometheus.Gauge
	fromCache prometheus.Gauge
}

func newSourceMetrics(reg prometheus.Registerer) *sourceMetrics {
	m := &sourceMetrics{
		revision: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "penstock_config_source_revision",
			Help: "etcd revision of the configuration this node serves.",
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "penstock_config_source_refused_total",
			Help: "Configuration revisions from etcd refused (invalid); the previous one kept serving.",
		}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "penstock_config_source_connected",
			Help: "1 while the last request to etcd succeeded, else 0.",
		}),
		fromCache: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "penstock_config_source_from_cache",
			Help: "1 while the configuration served was read from the on-disk cache (etcd not reached since start), else 0.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.revision, m.refused, m.connected, m.fromCache)
	}
	return m
}

// observe sets the gauges from st.
func (m *sourceMetrics) observe(st Status) {
	m.revision.Set(float64(st.Served.Revision))
	m.connected.Set(b2f(st.Connected))
	m.fromCache.Set(b2f(st.Served.From == "cache"))
}
