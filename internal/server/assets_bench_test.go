package server_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkAssetFetch fetches an 8 KiB model asset (the demo's size)
// through penstock with the route's cache off and on. The upstream answers
// at once from memory, so the difference is the round trip to it that a
// hit saves, not model latency; client and upstream share the process.
func BenchmarkAssetFetch(b *testing.B) {
	body := []byte(strings.Repeat("t", 8<<10))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=300")
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(body)
	}))
	b.Cleanup(srv.Close)
	for _, bc := range []struct{ name, cache string }{
		{"cache=off", ""},
		{"cache=on", "cache: {enabled: true}"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			g := startGatewayTB(b, lines(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes:
  - name: assets
    match: {path: "/v1/models/:model/assets/:file"}
    upstream: up
    %s
logging: {level: error}
access_log: {enabled: false}
`, srv.Listener.Addr().String(), bc.cache))
			benchGet(b, "http://"+g.Addr("main").String()+"/v1/models/resnet50/assets/tokenizer.bin")
		})
	}
}

// BenchmarkEarlyHintsCost is one small keep-alive HTTP/1.1 prediction
// through penstock without and with two early hints: the 103 costs one more
// write to the client, before the request is forwarded.
func BenchmarkEarlyHintsCost(b *testing.B) {
	up := fastUpstream(b)
	for _, bc := range []struct{ name, hints string }{
		{"hints=0", ""},
		{"hints=2", `early_hints: ["</v1/models/:model/assets/model_config.json>; rel=preload; as=fetch", "</v1/models/:model/assets/tokenizer.bin>; rel=preload; as=fetch"]`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			g := startGatewayTB(b, lines(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes:
  - name: predict
    match: {path: "/v1/models/:model/predict"}
    upstream: up
    %s
logging: {level: error}
access_log: {enabled: false}
`, up, bc.hints))
			benchGet(b, "http://"+g.Addr("main").String()+"/v1/models/resnet50/predict")
		})
	}
}
