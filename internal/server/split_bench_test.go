package server_test

import (
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkProxySplit is BenchmarkProxyZeroAlloc's request through a route
// split 50/50 between two pools (to the same upstream), by each mode, with
// the arm header on: choosing an arm allocates nothing. "plain" is the
// route without a split, in the same run; "rollout" is the weight split
// with a rollout judging every request (live comparison on, analyses every
// 30 s window by its own goroutine). cpu-ns/op is the process's CPU time
// (gateway, client and upstream together) per request.
func BenchmarkProxySplit(b *testing.B) {
	up := rawUpstream(b)
	for _, bc := range []struct{ name, split string }{
		{"plain", ""},
		{"weight", "split: {arm_header: X-Penstock-Arm, arms: [{name: a, upstream: up, weight: 50}, {name: b, upstream: up2, weight: 50}]}"},
		{"trace_id", "split: {by: trace_id, arms: [{name: a, upstream: up, weight: 50}, {name: b, upstream: up2, weight: 50}]}"},
		{"key", "split: {by: key, key: {header: user-agent}, arms: [{name: a, upstream: up, weight: 50}, {name: b, upstream: up2, weight: 50}]}"},
		{"rollout", "split: {arm_header: X-Penstock-Arm, arms: [{name: a, upstream: up, weight: 100}, {name: b, upstream: up2}], " +
			"rollout: {steps: [{weight: 50}, {weight: 100, hold: 1h}], state_file: STATE}}"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			bc.split = strings.ReplaceAll(bc.split, "STATE", filepath.Join(b.TempDir(), "state.json"))
			g := startGatewayTB(b, lines(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams: [{name: up, endpoints: [{address: %s}]}, {name: up2, endpoints: [{address: %s}]}]
routes:
  - name: predict
    match: {path: "/v1/models/:model/predict"}
    upstream: up
    %s
access_log: {enabled: false}
logging: {level: error}
`, up, up, bc.split))
			before := cpuTime(b)
			rawGet(b, g.Addr("main").String(), "/v1/models/resnet50/predict")
			b.ReportMetric(float64(cpuTime(b)-before)/float64(b.N), "cpu-ns/op")
		})
	}
}
