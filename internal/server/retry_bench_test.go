package server_test

import "testing"

// BenchmarkProxyRetryPolicy is BenchmarkProxyZeroAlloc's request through a
// route with a retry policy on every condition, a per-try timeout and the
// budget: a request whose first attempt succeeds pays one atomic add for
// the budget and allocates nothing.
func BenchmarkProxyRetryPolicy(b *testing.B) {
	up := rawUpstream(b)
	g := startGatewayTB(b, lines(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes:
  - name: predict
    match: {path: "/v1/models/:model/predict"}
    upstream: up
    retry: {attempts: 3, on: [connect_failure, reset, timeout, 502, 503, 504], per_try_timeout: 5s}
access_log: {enabled: false}
logging: {level: error}
`, up))
	rawGet(b, g.Addr("main").String(), "/v1/models/resnet50/predict")
}
