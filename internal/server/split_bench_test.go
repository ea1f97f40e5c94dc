package server_test

import "testing"

// BenchmarkProxySplit is BenchmarkProxyZeroAlloc's request through a route
// split 50/50 between two pools (to the same upstream), by each mode, with
// the arm header on: choosing an arm allocates nothing. "plain" is the
// route without a split, in the same run.
func BenchmarkProxySplit(b *testing.B) {
	up := rawUpstream(b)
	for _, bc := range []struct{ name, split string }{
		{"plain", ""},
		{"weight", "split: {arm_header: X-Penstock-Arm, arms: [{name: a, upstream: up, weight: 50}, {name: b, upstream: up2, weight: 50}]}"},
		{"trace_id", "split: {by: trace_id, arms: [{name: a, upstream: up, weight: 50}, {name: b, upstream: up2, weight: 50}]}"},
		{"key", "split: {by: key, key: {header: user-agent}, arms: [{name: a, upstream: up, weight: 50}, {name: b, upstream: up2, weight: 50}]}"},
	} {
		b.Run(bc.name, func(b *testing.B) {
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
			rawGet(b, g.Addr("main").String(), "/v1/models/resnet50/predict")
		})
	}
}
