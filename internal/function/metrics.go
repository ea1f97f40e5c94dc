package function

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the function runtime's Prometheus metrics, one set per
// process: functions come and go with reloads, the families stay.
type Metrics struct {
	invocations *prometheus.CounterVec
	coldStarts  *prometheus.CounterVec
	initSeconds *prometheus.HistogramVec
	duration    *prometheus.HistogramVec
	queueWait   *prometheus.HistogramVec
	queueDepth  *prometheus.GaugeVec
	instances   *prometheus.GaugeVec
}

// durationBuckets cover a warm invocation (sub-millisecond) to a timeout.
var durationBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// NewMetrics makes the metrics and registers them on reg (nil registers
// nothing). Registering on a registry that already has them (a second
// compile in the same process) reuses the registered ones.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		invocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "penstock_function_invocations_total",
			Help: "Function invocations by outcome (ok, function_error, crashed, timeout, init_failed, bad_response, queue_full, queue_timeout, shutting_down, too_large, client_gone).",
		}, []string{"function", "outcome"}),
		coldStarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "penstock_function_cold_starts_total",
			Help: "Function instances started.",
		}, []string{"function"}),
		initSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "penstock_function_init_duration_seconds",
			Help:    "Time from starting an instance's process to its readiness (first Runtime API poll, or a passed health check).",
			Buckets: durationBuckets,
		}, []string{"function"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "penstock_function_duration_seconds",
			Help:    "Invocation time on an instance, event handed over to response complete.",
			Buckets: durationBuckets,
		}, []string{"function"}),
		queueWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "penstock_function_queue_wait_seconds",
			Help:    "Time requests waited for an instance (cold starts included), of those that waited.",
			Buckets: durationBuckets,
		}, []string{"function"}),
		queueDepth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "penstock_function_queue_depth",
			Help: "Requests waiting for an instance.",
		}, []string{"function"}),
		instances: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "penstock_function_instances",
			Help: "Function instances by state (starting, idle, busy).",
		}, []string{"function", "state"}),
	}
	if reg != nil {
		m.invocations = register(reg, m.invocations)
		m.coldStarts = register(reg, m.coldStarts)
		m.initSeconds = register(reg, m.initSeconds)
		m.duration = register(reg, m.duration)
		m.queueWait = register(reg, m.queueWait)
		m.queueDepth = register(reg, m.queueDepth)
		m.instances = register(reg, m.instances)
	}
	return m
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}

// fnMetrics are one function's handles; a nil *fnMetrics records nothing.
type fnMetrics struct {
	m    *Metrics
	name string
	cold prometheus.Counter
	init prometheus.Observer
	dur  prometheus.Observer
	wait prometheus.Observer
	qlen prometheus.Gauge
	inst [3]prometheus.Gauge // by state: starting, idle, busy
}

func (m *Metrics) forFunction(name string) *fnMetrics {
	if m == nil {
		return nil
	}
	fm := &fnMetrics{m: m, name: name,
		cold: m.coldStarts.WithLabelValues(name),
		init: m.initSeconds.WithLabelValues(name),
		dur:  m.duration.WithLabelValues(name),
		wait: m.queueWait.WithLabelValues(name),
		qlen: m.queueDepth.WithLabelValues(name),
	}
	for s := stateStarting; s <= stateBusy; s++ {
		fm.inst[s] = m.instances.WithLabelValues(name, s.String())
	}
	return fm
}

func (fm *fnMetrics) invocation(outcome string, d time.Duration) {
	if fm == nil {
		return
	}
	fm.m.invocations.WithLabelValues(fm.name, outcome).Inc()
	if d > 0 {
		fm.dur.Observe(d.Seconds())
	}
}

func (fm *fnMetrics) coldStart() {
	if fm != nil {
		fm.cold.Inc()
	}
}

func (fm *fnMetrics) initDone(d time.Duration) {
	if fm != nil {
		fm.init.Observe(d.Seconds())
	}
}

func (fm *fnMetrics) queueWait(d time.Duration) {
	if fm != nil {
		fm.wait.Observe(d.Seconds())
	}
}

// queued sets the queue depth. The gauge is shared by a function and its
// successor during a reload; the last writer wins, briefly.
func (fm *fnMetrics) queued(n int) {
	if fm != nil {
		fm.qlen.Set(float64(n))
	}
}

// instanceState moves one instance from state from to state to; -1 is
// "none" (created, or gone). Deltas rather than values, so a draining
// function and its successor of the same name add up.
func (fm *fnMetrics) instanceState(from, to state) {
	if fm == nil {
		return
	}
	if from >= 0 && from <= stateBusy {
		fm.inst[from].Dec()
	}
	if to >= 0 && to <= stateBusy {
		fm.inst[to].Inc()
	}
}
