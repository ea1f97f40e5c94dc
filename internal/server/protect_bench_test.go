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
// circuit breakers on, with the breakers and outlier detection on, with one
// local rate limit (per client IP, never reached), and with that limit and
// the breakers, all in one run (-count interleaves them). cpu-ns/op is the
// whole process's CPU per request (client, gateway and upstream): a limit
// and the breakers together must add under 3 % to it.
func BenchmarkProtectionOverhead(b *testing.B) {
	up := rawUpstream(b)
	const limit = "limits: [{name: per-client, algorithm: token_bucket, rate: 1000000, burst: 1000000, key: {from: client_ip}}]\n"
	cases := []struct{ name, block, limits, route string }{
		{name: "off"},
		{name: "breaker", block: "    circuit_breaker: {}\n"},
		{name: "breaker_outlier", block: "    circuit_breaker: {}\n    outlier_detection: {}\n"},
		{name: "limit", limits: limit, route: ", limits: [per-client]"},
		{name: "limit_breaker", block: "    circuit_breaker: {}\n", limits: limit, route: ", limits: [per-client]"},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			g := startGatewayTB(b, lines(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams:
  - name: up
    endpoints: [{address: %s}]
%sroutes: [{name: predict, match: {path: "/v1/models/:model/predict"}, upstream: up%s}]
%saccess_log: {enabled: false}
logging: {level: error}
`, up, c.block, c.route, c.limits))
			start := cpuTime(b)
			rawGet(b, g.Addr("main").String(), "/v1/models/resnet50/predict")
			b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/op")
		})
	}
}
