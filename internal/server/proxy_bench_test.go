package server_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/penstock-dev/penstock/internal/tracing/otlptest"
)

// fastUpstream answers every request with a 64-byte JSON body.
func fastUpstream(b *testing.B) string {
	body := []byte(`{"model":"resnet50","outputs":[0.91,0.07,0.02],"compute_ms":0.1}` + "\n")[:64]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	b.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// benchGet sends keep-alive GETs to url, one at a time. The figures include
// the client and the upstream, which run in the same process: compare
// benchmarks with each other, not with other tools.
func benchGet(b *testing.B, url string) {
	benchGetWith(b, &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}, url)
}

// benchGetWith is benchGet with client c.
//
// Besides the time per request it reports the process's CPU time per
// request (cpu-ns/op: client, gateway and upstream together, on every
// core), which parallel work elsewhere in the gateway would hide from
// ns/op.
func benchGetWith(b *testing.B, c *http.Client, url string) {
	b.ReportAllocs()
	cpu0 := processCPU()
	defer func() { b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op") }()
	for b.Loop() {
		resp, err := c.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}

// processCPU is the process's user and system CPU time in nanoseconds.
func processCPU() int64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkProxy compares one small keep-alive HTTP/1.1 request sent
// directly to the upstream, through penstock, and through
// httputil.ReverseProxy (the common Go baseline; used here as a reference
// only, never on penstock's path).
func BenchmarkProxy(b *testing.B) {
	up := fastUpstream(b)
	b.Run("direct", func(b *testing.B) { benchGet(b, "http://"+up+"/v1/models/resnet50/predict") })
	for _, engine := range []string{"native", "stdhttp"} {
		b.Run("penstock/engine="+engine, func(b *testing.B) {
			cfg := lines(`listeners: [{name: main, address: "127.0.0.1:0", engine: %s}]
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes: [{name: predict, match: {path: "/v1/models/:model/predict"}, upstream: up}]
access_log: {enabled: false}
logging: {level: error}
`, engine, up)
			g := startGatewayTB(b, cfg)
			benchGet(b, "http://"+g.Addr("main").String()+"/v1/models/resnet50/predict")
		})
	}
	// HTTP/2: the native engine hands HTTP/2 to penstock's own engine
	// (internal/engine/h2), the stdhttp one serves it with net/http's.
	for _, engine := range []string{"native", "stdhttp"} {
		for _, proto := range []string{"h2c", "h2"} {
			b.Run("penstock/"+proto+"/engine="+engine, func(b *testing.B) {
				listener := `{name: main, address: "127.0.0.1:0", protocols: [h1, h2c], engine: %s}`
				c, scheme := h2cClient(), "http"
				if proto == "h2" {
					listener = `{name: main, address: "127.0.0.1:0", tls: {self_signed: true}, engine: %s}`
					c, scheme = h2Client(), "https"
				}
				cfg := lines(`listeners: [`+listener+`]
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes: [{name: predict, match: {path: "/v1/models/:model/predict"}, upstream: up}]
access_log: {enabled: false}
logging: {level: error}
`, engine, up)
				g := startGatewayTB(b, cfg)
				benchGetWith(b, c, scheme+"://"+g.Addr("main").String()+"/v1/models/resnet50/predict")
			})
		}
	}
	b.Run("httputil.ReverseProxy", func(b *testing.B) {
		target, _ := url.Parse("http://" + up)
		rp := httputil.NewSingleHostReverseProxy(target)
		rp.Transport = &http.Transport{MaxIdleConnsPerHost: 64}
		srv := httptest.NewServer(rp)
		b.Cleanup(srv.Close)
		benchGet(b, srv.URL+"/v1/models/resnet50/predict")
	})
}

// BenchmarkTelemetryOverhead measures what making every request visible
// costs on proxy throughput: one small keep-alive request through penstock
// with the access log and tracing off (metrics stay on: they cannot be
// turned off), with only the access log (a JSON line per request to a
// file), and with everything on: access log, metrics, and a server and a
// client span per sampled request exported over OTLP/HTTP to a real receiver
// on loopback, at 10% and 100% trace sampling.
func BenchmarkTelemetryOverhead(b *testing.B) {
	up := fastUpstream(b)
	base := lines(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes: [{name: predict, match: {path: "/v1/models/:model/predict"}, upstream: up}]
logging: {level: error}
`, up)
	b.Run("off", func(b *testing.B) {
		g := startGatewayTB(b, base+"access_log: {enabled: false}\ntracing: {exporter: none}\n")
		benchGet(b, "http://"+g.Addr("main").String()+"/v1/models/resnet50/predict")
	})
	b.Run("access_log", func(b *testing.B) {
		logFile := filepath.Join(b.TempDir(), "access.log")
		g := startGatewayTB(b, base+fmt.Sprintf("access_log: {output: %q}\ntracing: {exporter: none}\n", logFile))
		benchGet(b, "http://"+g.Addr("main").String()+"/v1/models/resnet50/predict")
	})
	for _, ratio := range []string{"0.1", "1"} {
		b.Run("on_sample_"+ratio, func(b *testing.B) {
			// The receiver runs in this process, so its protobuf decoding is
			// counted too: an upper bound on the exporter's share.
			recv := otlptest.NewReceiver(b)
			logFile := filepath.Join(b.TempDir(), "access.log")
			g := startGatewayTB(b, base+fmt.Sprintf("access_log: {output: %q}\ntracing: {exporter: otlp_http, endpoint: %q, sample_ratio: %s}\n",
				logFile, recv.Endpoint(), ratio))
			benchGet(b, "http://"+g.Addr("main").String()+"/v1/models/resnet50/predict")
		})
	}
}
