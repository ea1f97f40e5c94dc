package front

import (
	"bufio"
	"context"
	"net"
	"sync/atomic"
	"testing"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/metrics"
	"github.com/penstock-dev/penstock/internal/pipeline"
	"github.com/penstock-dev/penstock/internal/router"
	"github.com/penstock-dev/penstock/internal/snapshot"
)

// discardWriter is a ResponseWriter that keeps only the status, so the
// benchmark measures the pipeline and not an engine.
type discardWriter struct {
	hdr    exchange.Header
	status int
}

func (w *discardWriter) Header() *exchange.Header { return &w.hdr }
func (w *discardWriter) WriteHeader(s int)        { w.status = s }
func (w *discardWriter) Write(p []byte) (int, error) {
	return len(p), nil
}
func (w *discardWriter) Flush() error { return nil }
func (w *discardWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return nil, nil, exchange.ErrNotHijackable
}

// BenchmarkPipeline measures penstock's engine-independent request path:
// request id, trace context, target check, route lookup (with a path
// parameter), route metrics, the route's stages and a terminal handler that
// answers 200, without an engine or an upstream. It must not allocate.
func BenchmarkPipeline(b *testing.B) {
	cfg, err := config.Parse([]byte(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams: [{name: up, endpoints: [{address: "127.0.0.1:9"}]}]
routes:
  - {name: predict, match: {path: /v1/models/:model/predict, methods: [POST]}, upstream: up}
  - {name: assets, match: {path: "/v1/models/:model/assets/*file"}, upstream: up}
  - {name: health, match: {path: /healthz}, upstream: up}
`), "bench.yaml")
	if err != nil {
		b.Fatal(err)
	}
	terminal := exchange.HandlerFunc(func(x *exchange.Exchange) {
		x.State.Status = 200
		x.W.WriteHeader(200)
	})
	// Metrics on (they always are), no access log, no tracer: the access
	// log's cost is measured in internal/accesslog, the tracer's in
	// internal/tracing.
	m := metrics.New(cfg.Metrics, prometheus.NewRegistry())
	var rb router.Builder[*snapshot.Route]
	stages := pipeline.Standard()
	for i := range cfg.Routes {
		rc := &cfg.Routes[i]
		h, err := stages.Build(cfg, i, terminal, nil)
		if err != nil {
			b.Fatal(err)
		}
		rb.Add(router.Spec[*snapshot.Route]{Name: rc.Name, Path: rc.Match.Path, Methods: rc.Match.Methods,
			Value: &snapshot.Route{Name: rc.Name, Pattern: rc.Match.Path, Handler: h, Metrics: m.Route(rc.Name, "")}})
	}
	r, err := rb.Build()
	if err != nil {
		b.Fatal(err)
	}
	var snap atomic.Pointer[snapshot.Snapshot]
	snap.Store(&snapshot.Snapshot{Config: cfg, Router: r, W3C: true, B3: true, SampleRatio: 1, NoRoute: m.Route("", "")})
	f := &Handler{Snapshot: &snap, Draining: new(atomic.Bool)}
	w := &discardWriter{}
	ctx := context.Background()

	serve := func(b *testing.B, method, path string, want int) {
		b.ReportAllocs()
		for b.Loop() {
			x := exchange.Acquire()
			x.W, x.Ctx = w, ctx
			x.Req.Proto, x.Req.Method, x.Req.Scheme = exchange.HTTP11, method, "http"
			x.Req.Host, x.Req.Path = "api.example.com", path
			x.Req.Header.Add("Content-Type", "application/json")
			x.Req.Header.Add("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
			x.Req.ContentLength = 312
			f.ServeExchange(x)
			if w.status != want {
				b.Fatalf("status %d, want %d", w.status, want)
			}
			w.hdr.Reset()
			exchange.Release(x)
		}
	}
	b.Run("route", func(b *testing.B) { serve(b, "POST", "/v1/models/resnet50/predict", 200) })
	b.Run("no_route_404", func(b *testing.B) { serve(b, "POST", "/v2/unknown", 404) })
	b.Run("method_405", func(b *testing.B) { serve(b, "GET", "/v1/models/resnet50/predict", 405) })
	// A listener serving HTTP/3 adds Alt-Svc to every TCP response.
	f.AltSvc = NewAltSvc(&config.Listener{Protocols: []string{"h1", "h2", "h3"}, TLS: &config.ListenerTLS{SelfSigned: true},
		HTTP3: config.ListenerHTTP3{AltSvcExcludeHosts: []string{"legacy.example.com"}}}, &net.TCPAddr{Port: 8443})
	b.Run("route_alt_svc", func(b *testing.B) { serve(b, "POST", "/v1/models/resnet50/predict", 200) })
}
