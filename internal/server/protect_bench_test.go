package server_test

import (
	"syscall"
	"testing"
	"time"
)

// cpuTime is the process's user and system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkProtectionOverhead proxies one small keep-alive request (as
// BenchmarkProxyZeroAlloc) through a pool without protection, with the
// circuit breakers on, and with the breakers and outlier detection on,
// all in one run. cpu-ns/op is the whole process's CPU per request (client,
// gateway and upstream): the breakers must add under 3 % to it.
func BenchmarkProtectionOverhead(b *testing.B) {
	up := rawUpstream(b)
	cases := []struct{ name, block string }{
		{"off", ""},
		{"breaker", "    circuit_breaker: {}\n"},
		{"breaker_outlier", "    circuit_breaker: {}\n    outlier_detection: {}\n"},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			g := startGatewayTB(b, lines(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams:
  - name: up
    endpoints: [{address: %s}]
%sroutes: [{name: predict, match: {path: "/v1/models/:model/predict"}, upstream: up}]
access_log: {enabled: false}
logging: {level: error}
`, up, c.block))
			start := cpuTime(b)
			rawGet(b, g.Addr("main").String(), "/v1/models/resnet50/predict")
			b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/op")
		})
	}
}
