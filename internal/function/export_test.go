package function

import "github.com/prometheus/client_golang/prometheus"

// InvocationsForTest and ColdStartsForTest expose the counters to the
// tests of package function_test.
func InvocationsForTest(m *Metrics) *prometheus.CounterVec { return m.invocations }
func ColdStartsForTest(m *Metrics) *prometheus.CounterVec  { return m.coldStarts }

// InstancesForTest exposes the instances gauge.
func InstancesForTest(m *Metrics) *prometheus.GaugeVec { return m.instances }
