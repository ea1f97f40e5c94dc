package server_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// findSeries returns the first series of metric name that match accepts, or
// nil.
func findSeries(t *testing.T, reg *prometheus.Registry, name string, match func(*dto.Metric) bool) *dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if match(m) {
				return m
			}
		}
	}
	return nil
}

// value is a series' value: a counter's or gauge's value, a histogram's
// sample count.
func value(m *dto.Metric) float64 {
	switch {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetHistogram() != nil:
		return float64(m.GetHistogram().GetSampleCount())
	}
	return 0
}

// seriesValue returns the value of the first series of name carrying every
// label in labels (others may be present too); 0 when there is none.
func seriesValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	m := findSeries(t, reg, name, func(m *dto.Metric) bool {
		n := 0
		for _, lp := range m.GetLabel() {
			if v, ok := labels[lp.GetName()]; ok {
				if v != lp.GetValue() {
					return false
				}
				n++
			}
		}
		return n == len(labels)
	})
	if m == nil {
		return 0
	}
	return value(m)
}

// exactSeriesValue returns the value of the series of name whose labels are
// exactly lbls ("listener=tls,protocol=h3"), or -1 when there is none.
func exactSeriesValue(t *testing.T, reg *prometheus.Registry, name, lbls string) float64 {
	t.Helper()
	m := findSeries(t, reg, name, func(m *dto.Metric) bool { return labels(m) == lbls })
	if m == nil {
		return -1
	}
	return value(m)
}
