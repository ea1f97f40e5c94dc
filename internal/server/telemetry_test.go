package server_test

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/server"
	"github.com/penstock-dev/penstock/internal/tracing/otlptest"
)

// observed is a gateway started with a metrics registry and an access log
// file, for telemetry tests.
type observed struct {
	g       *server.Server
	reg     *prometheus.Registry
	logPath string
	stopped bool
}

func startObserved(t *testing.T, yamlText string) *observed {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "access.log")
	yamlText += fmt.Sprintf("access_log: {output: %q}\n", logPath)
	cfg, err := config.Parse([]byte(yamlText), "telemetry.yaml")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	g, err := server.New(cfg, server.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registerer: reg, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	o := &observed{g: g, reg: reg, logPath: logPath}
	t.Cleanup(func() { o.stop() })
	return o
}

// stop shuts the gateway down, which flushes the access log and spans.
func (o *observed) stop() {
	if !o.stopped {
		o.stopped = true
		o.g.Shutdown(context.Background())
	}
}

// lines stops the gateway and returns the access log's lines as JSON maps.
func (o *observed) lines(t *testing.T) []map[string]any {
	t.Helper()
	o.stop()
	f, err := os.Open(o.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("access log line is not JSON: %v: %s", err, sc.Text())
		}
		out = append(out, m)
	}
	return out
}

// TestAccessLogOneLinePerRequest checks that each request gives exactly one
// line with every field, over HTTP/1.1 and HTTP/2, keyed by route pattern,
// and that failures are logged too.
func TestAccessLogOneLinePerRequest(t *testing.T) {
	rec := newRecorder(t, "orders")
	o := startObserved(t, lines(`listeners:
  - {name: main, address: "127.0.0.1:0", protocols: [h1, h2c]}
  - {name: tls, address: "127.0.0.1:0", tls: {self_signed: true}}
upstreams: [{name: orders, endpoints: [{address: %s}]}]
routes: [{name: order, match: {path: "/orders/:id"}, upstream: orders}]
`, rec.addr()))
	do(t, client, "GET", baseURL(o.g, "main")+"/orders/1?x=1", nil, nil)
	do(t, h2cClient(), "GET", baseURL(o.g, "main")+"/orders/2", nil, nil)
	do(t, h2Client(), "POST", baseURL(o.g, "tls")+"/orders/3", nil, strings.NewReader("hello"))
	do(t, client, "GET", baseURL(o.g, "main")+"/nowhere", nil, nil)

	ls := o.lines(t)
	if len(ls) != 4 {
		t.Fatalf("%d lines for 4 requests", len(ls))
	}
	want := []struct {
		path, proto, tls, method string
		status                   float64
		route, pattern           string
		bytesIn                  float64
	}{
		{"/orders/1?x=1", "HTTP/1.1", "", "GET", 200, "order", "/orders/:id", 0},
		{"/orders/2", "HTTP/2.0", "", "GET", 200, "order", "/orders/:id", 0},
		{"/orders/3", "HTTP/2.0", "1.3", "POST", 200, "order", "/orders/:id", 5},
		{"/nowhere", "HTTP/1.1", "", "GET", 404, "", "", 0},
	}
	for i, w := range want {
		l := ls[i]
		for _, key := range []string{"time", "trace_id", "span_id", "request_id", "protocol", "method", "host", "path", "status", "duration_s", "client", "bytes_in", "bytes_out"} {
			if _, ok := l[key]; !ok {
				t.Errorf("line %d lacks %q: %v", i, key, l)
			}
		}
		if l["path"] != w.path || l["protocol"] != w.proto || l["method"] != w.method || l["status"] != w.status ||
			str(l["route"]) != w.route || str(l["route_pattern"]) != w.pattern || str(l["tls"]) != w.tls || l["bytes_in"] != w.bytesIn {
			t.Errorf("line %d = %v\nwant %+v", i, l, w)
		}
		if len(str(l["trace_id"])) != 32 || len(str(l["span_id"])) != 16 {
			t.Errorf("line %d: trace_id %v span_id %v", i, l["trace_id"], l["span_id"])
		}
	}
	if ls[3]["error_kind"] != "no_route" {
		t.Errorf("404 line lacks error_kind: %v", ls[3])
	}
	if ls[0]["upstream"] != rec.addr() || ls[0]["attempts"] != 1.0 {
		t.Errorf("upstream fields: %v", ls[0])
	}
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// TestTraceContextPropagation checks that a client's trace id is logged and
// continued upstream as a child, and that a request without one starts a
// new trace and is counted as missing.
func TestTraceContextPropagation(t *testing.T) {
	rec := newRecorder(t, "up")
	o := startObserved(t, lines(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes: [{name: r, match: {path: /r}, upstream: up}]
`, rec.addr()))
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	const parent = "00f067aa0ba902b7"
	_, body := do(t, client, "GET", baseURL(o.g, "main")+"/r", map[string]string{
		"traceparent": "00-" + traceID + "-" + parent + "-01",
		"tracestate":  "vendor=abc",
	}, nil)
	seenWith := decodeSeen(t, body)
	_, body = do(t, client, "GET", baseURL(o.g, "main")+"/r", nil, nil)
	seenWithout := decodeSeen(t, body)

	missing := testutil.ToFloat64(counterVec(t, o.reg, "penstock_trace_context_missing_total", "route", "r"))
	ls := o.lines(t)
	if len(ls) != 2 {
		t.Fatalf("%d lines", len(ls))
	}

	// With a traceparent: same trace, penstock's span is the parent upstream.
	tp := strings.Split(seenWith.Header.Get("Traceparent"), "-")
	if len(tp) != 4 || tp[1] != traceID || tp[2] == parent || tp[3] != "01" {
		t.Errorf("upstream traceparent %q", seenWith.Header.Get("Traceparent"))
	}
	if ls[0]["trace_id"] != traceID {
		t.Errorf("logged trace id %v, want the client's", ls[0]["trace_id"])
	}
	if tp[2] != ls[0]["span_id"] {
		t.Errorf("upstream parent %s is not the logged span %v", tp[2], ls[0]["span_id"])
	}
	if seenWith.Header.Get("Tracestate") != "vendor=abc" {
		t.Errorf("tracestate not passed on: %q", seenWith.Header.Get("Tracestate"))
	}

	// Without: a new trace, logged and sent upstream, and counted.
	tp2 := strings.Split(seenWithout.Header.Get("Traceparent"), "-")
	if len(tp2) != 4 || tp2[1] != ls[1]["trace_id"] || tp2[1] == traceID {
		t.Errorf("new trace: upstream %q, logged %v", seenWithout.Header.Get("Traceparent"), ls[1]["trace_id"])
	}
	if missing != 1 {
		t.Errorf("penstock_trace_context_missing_total{route=r} = %v, want 1", missing)
	}
}

// counterVec finds one labelled series of a gathered metric.
func counterVec(t *testing.T, reg *prometheus.Registry, name, label, value string) prometheus.Collector {
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
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
					c.Add(m.GetCounter().GetValue())
					return c
				}
			}
		}
	}
	t.Fatalf("no %s{%s=%q}", name, label, value)
	return nil
}

// TestRequestMetricsByRoute checks the duration histogram's counts for a
// route after N requests, labelled by route name, never by path.
func TestRequestMetricsByRoute(t *testing.T) {
	rec := newRecorder(t, "up")
	o := startObserved(t, lines(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes: [{name: order, match: {path: "/orders/:id"}, upstream: up}]
`, rec.addr()))
	for i := range 7 {
		do(t, client, "GET", fmt.Sprintf("%s/orders/%d", baseURL(o.g, "main"), i), nil, nil)
	}
	for range 3 {
		do(t, client, "POST", baseURL(o.g, "main")+"/orders/x", nil, strings.NewReader("{}"))
	}
	do(t, client, "GET", baseURL(o.g, "main")+"/unknown/path", nil, nil)

	counts := map[string]uint64{}
	mfs, err := o.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "penstock_http_server_request_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			counts[labels(m)] = m.GetHistogram().GetSampleCount()
		}
	}
	want := map[string]uint64{
		"method=GET,route=order,status_class=2xx":  7,
		"method=POST,route=order,status_class=2xx": 3,
		"method=GET,route=none,status_class=4xx":   1,
	}
	for k, n := range want {
		if counts[k] != n {
			t.Errorf("%s: %d requests, want %d (all: %v)", k, counts[k], n, counts)
		}
	}
	for k := range counts {
		if strings.Contains(k, "/orders/") {
			t.Errorf("a raw path leaked into labels: %s", k)
		}
	}
	attempts := testutil.ToFloat64(counterVec(t, o.reg, "penstock_upstream_attempts_total", "outcome", "ok"))
	if attempts != 10 {
		t.Errorf("upstream attempts ok = %v, want 10", attempts)
	}
}

func labels(m *dto.Metric) string {
	var parts []string
	for _, lp := range m.GetLabel() {
		parts = append(parts, lp.GetName()+"="+lp.GetValue())
	}
	return strings.Join(parts, ",")
}

// TestSpansReachOTLP sends requests through a gateway exporting to a real
// OTLP/HTTP receiver and checks span names, attributes and links.
func TestSpansReachOTLP(t *testing.T) {
	recv := otlptest.NewReceiver(t)
	rec := newRecorder(t, "models")
	o := startObserved(t, lines(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams: [{name: models, endpoints: [{address: %s}]}]
routes:
  - name: predict
    match: {path: "/v1/models/:model/predict", methods: [POST]}
    upstream: models
    tracing: {param_attributes: true}
tracing: {exporter: otlp_http, endpoint: %q}
`, rec.addr(), recv.Endpoint()))
	const traceID = "0af7651916cd43dd8448eb211c80319c"
	const parent = "b7ad6b7169203331"
	do(t, client, "POST", baseURL(o.g, "main")+"/v1/models/resnet50/predict", map[string]string{
		"traceparent": "00-" + traceID + "-" + parent + "-01",
	}, strings.NewReader(`{"inputs":[1]}`))
	do(t, client, "POST", baseURL(o.g, "main")+"/v1/models/resnet50/predict", map[string]string{
		"traceparent": "00-" + strings.Repeat("1", 32) + "-" + parent + "-00", // not sampled
	}, strings.NewReader(`{}`))
	o.stop() // flushes the batch

	spans := recv.WaitForSpans(2, 10*time.Second)
	if len(spans) != 2 {
		t.Fatalf("%d spans, want a server and a client span of the sampled request only", len(spans))
	}
	var server, clientSpan otlptest.Span
	for _, s := range spans {
		if s.ParentSpanID == [8]byte(mustHex(parent)) {
			server = s
		} else {
			clientSpan = s
		}
	}
	if server.Name != "POST /v1/models/:model/predict" {
		t.Errorf("server span name %q", server.Name)
	}
	if hex.EncodeToString(server.TraceID[:]) != traceID || clientSpan.TraceID != server.TraceID {
		t.Errorf("trace ids: server %x client %x", server.TraceID, clientSpan.TraceID)
	}
	if clientSpan.ParentSpanID != server.SpanID {
		t.Errorf("client span's parent %x is not the server span %x", clientSpan.ParentSpanID, server.SpanID)
	}
	for k, v := range map[string]any{
		"http.request.method":       "POST",
		"http.route":                "/v1/models/:model/predict",
		"http.response.status_code": int64(200),
		"url.path_param.model":      "resnet50",
		"penstock.route.name":       "predict",
	} {
		if server.Attributes[k] != v {
			t.Errorf("server span %s = %v, want %v", k, server.Attributes[k], v)
		}
	}
	if server.Attributes["server.address"] != "127.0.0.1" {
		t.Errorf("server.address = %v", server.Attributes["server.address"])
	}
	if clientSpan.Attributes["penstock.upstream"] != "models" || clientSpan.Attributes["http.response.status_code"] != int64(200) {
		t.Errorf("client span attributes %v", clientSpan.Attributes)
	}
	if server.ServiceName != "penstock" {
		t.Errorf("service.name %q", server.ServiceName)
	}
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// TestScrapePassesPromtool takes a scrape of everything the gateway exports
// after traffic (requests, failures, reloads, connections, TLS handshakes,
// access log counters) and checks it with promtool.
func TestScrapePassesPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool is required (scripts/test installs it)")
		}
		t.Skip("promtool not installed (scripts/test installs it)")
	}
	rec := newRecorder(t, "up")
	text := lines(`listeners:
  - {name: main, address: "127.0.0.1:0"}
  - {name: tls, address: "127.0.0.1:0", tls: {self_signed: true}}
upstreams:
  - {name: up, endpoints: [{address: %s}]}
  - {name: dead, endpoints: [{address: %s}]}
routes:
  - {name: r, match: {path: "/r/:id"}, upstream: up}
  - {name: d, match: {path: /dead}, upstream: dead}
`, rec.addr(), closedAddr(t))
	o := startObserved(t, text)
	for i := range 5 {
		do(t, client, "GET", fmt.Sprintf("%s/r/%d", baseURL(o.g, "main"), i), nil, nil)
	}
	do(t, h2Client(), "POST", baseURL(o.g, "tls")+"/r/1", nil, strings.NewReader("x"))
	do(t, client, "GET", baseURL(o.g, "main")+"/dead", nil, nil)
	do(t, client, "GET", baseURL(o.g, "main")+"/nowhere", nil, nil)
	do(t, client, "BREW", baseURL(o.g, "main")+"/r/1", nil, nil)
	cfg, _ := config.Parse([]byte(text+"access_log: {enabled: false}\n"), "next.yaml")
	o.g.Reload(cfg)

	mfs, err := o.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var scrape strings.Builder
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&scrape, mf); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(scrape.String())
	out, err := cmd.CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	for _, name := range []string{"penstock_http_server_request_duration_seconds", "penstock_upstream_attempts_total",
		"penstock_connections_open", "penstock_tls_handshakes_total", "penstock_access_log_lines_total", "penstock_config_reloads_total"} {
		if !strings.Contains(scrape.String(), name) {
			t.Errorf("scrape lacks %s", name)
		}
	}
}
