package tracing

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"testing"
	"time"
	"unsafe"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/router"
	"github.com/penstock-dev/penstock/internal/tracecontext"
	"github.com/penstock-dev/penstock/internal/tracing/otlptest"
)

const (
	clientTraceID  = "4bf92f3577b34da6a3ce929d0e0e4736"
	clientParentID = "00f067aa0ba902b7"
)

// testRouter is the route table the test exchanges are matched against,
// as the gateway's router stage would.
func testRouter(t testing.TB) *router.Router[string] {
	t.Helper()
	var b router.Builder[string]
	for _, s := range []router.Spec[string]{
		{Name: "predict", Path: "/v1/models/:model/predict", Methods: []string{"POST"}},
		{Name: "health", Path: "/healthz"},
	} {
		if err := b.Add(s); err != nil {
			t.Fatal(err)
		}
	}
	r, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// newExchange builds an exchange the way the engine and the first pipeline
// stages do: request fields and headers, trace context extraction and the
// sampling decision, then routing. headers are name, value pairs.
func newExchange(t testing.TB, rt *router.Router[string], method, host, path string, headers ...string) *exchange.Exchange {
	t.Helper()
	x := &exchange.Exchange{
		Req: exchange.Request{
			Proto:      exchange.HTTP11,
			Method:     method,
			Scheme:     "http",
			Host:       host,
			Path:       path,
			RemoteAddr: netip.MustParseAddrPort("192.0.2.10:51234"),
		},
		Start: time.Now(),
	}
	for i := 0; i+1 < len(headers); i += 2 {
		x.Req.Header.Add(headers[i], headers[i+1])
	}
	x.State.TraceFound = tracecontext.Extract(&x.Req.Header, true, true, &x.State.Trace)
	x.State.Trace.Decide(1)
	res := rt.Lookup(x.Req.Host, x.Req.Method, x.Req.Path, &x.Req.Header, &x.State.Params)
	if res.Found {
		x.State.RouteName, x.State.Pattern = res.Name, res.Pattern
	}
	return x
}

func wantAttrs(t *testing.T, s otlptest.Span, want map[string]any) {
	t.Helper()
	for k, v := range want {
		got, ok := s.Attributes[k]
		switch {
		case v == nil && ok:
			t.Errorf("%s: attribute %s = %v, want none", s.Name, k, got)
		case v != nil && got != v:
			t.Errorf("%s: attribute %s = %#v, want %#v", s.Name, k, got, v)
		}
	}
}

func TestOTLPHTTP(t *testing.T) {
	rcv := otlptest.NewReceiver(t)
	testExport(t, rcv, "otlp_http")
}

func TestOTLPGRPC(t *testing.T) {
	rcv := otlptest.NewGRPCReceiver(t)
	testExport(t, rcv, "otlp_grpc")
}

func testExport(t *testing.T, rcv *otlptest.Receiver, exporter string) {
	ctx := context.Background()
	tr, err := New(ctx, config.Tracing{Exporter: exporter, Endpoint: rcv.Endpoint(), ServiceName: "edge"}, "1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	if !tr.Enabled() {
		t.Fatal("tracer not enabled")
	}
	rt := testRouter(t)

	// A: the client sent a sampled traceparent and a tracestate; the
	// first upstream attempt times out, the second succeeds.
	a := newExchange(t, rt, "POST", "api.example.com:8443", "/v1/models/resnet/predict",
		"traceparent", "00-"+clientTraceID+"-"+clientParentID+"-01",
		"tracestate", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
	if !a.State.TraceFound || !a.State.Trace.Sampled() {
		t.Fatal("exchange A: trace context not found or not sampled")
	}
	tr.StartServer(a, true)
	if a.State.Span == nil {
		t.Fatal("StartServer stored no span")
	}
	id1, end1 := tr.StartClient(a, "models", "10.0.0.7:8000", 1)
	tp1 := string(a.State.Trace.AppendTraceparent(nil, id1))
	end1(0, context.DeadlineExceeded)
	a.State.Arm = "canary" // a split route's arm, set before the attempt
	id2, end2 := tr.StartClient(a, "models", "10.0.0.8:8000", 2)
	end2(200, nil)
	a.State.Status = 200
	tr.EndServer(a)
	if a.State.Span != nil {
		t.Error("EndServer left the span in x.State.Span")
	}
	tr.EndServer(a) // a second call is a no-op

	// B: no trace context, penstock starts the trace; no healthy endpoint.
	b := newExchange(t, rt, "GET", "[2001:db8::1]", "/healthz")
	if b.State.TraceFound || !b.State.Trace.Sampled() {
		t.Fatal("exchange B: want a new sampled trace")
	}
	tr.StartServer(b, false)
	b.State.Status, b.State.ErrorKind, b.State.Error = 503, "no_healthy_endpoint", "all endpoints down"
	tr.EndServer(b)

	// C: the client decided not to sample.
	c := newExchange(t, rt, "POST", "api.example.com", "/v1/models/x/predict",
		"traceparent", "00-"+clientTraceID+"-"+clientParentID+"-00")
	tr.StartServer(c, true)
	if c.State.Span != nil {
		t.Fatal("unsampled exchange got a span")
	}
	idC, endC := tr.StartClient(c, "models", "10.0.0.7:8000", 1)
	if idC != c.State.Trace.SpanID {
		t.Errorf("unsampled StartClient = %x, want the server span id %x", idC, c.State.Trace.SpanID)
	}
	endC(200, nil)
	c.State.Status = 200
	tr.EndServer(c)

	// D: an unknown method, no route.
	d := newExchange(t, rt, "PURGE", "cache.example.com", "/nowhere")
	tr.StartServer(d, false)
	d.State.Status, d.State.ErrorKind = 404, "no_route"
	tr.EndServer(d)

	if err := tr.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	spans := rcv.WaitForSpans(5, 5*time.Second)
	if len(spans) != 5 {
		t.Fatalf("got %d spans, want 5 (A server + 2 clients, B server, D server): %v", len(spans), spans)
	}
	byID := map[[8]byte]otlptest.Span{}
	for _, s := range spans {
		byID[s.SpanID] = s
		if s.ServiceName != "edge" || s.Resource["service.version"] != "1.2.3" || s.Scope != ScopeName {
			t.Errorf("%s: resource %v, scope %q", s.Name, s.Resource, s.Scope)
		}
		if s.TraceID == c.State.Trace.TraceID && s.SpanID == c.State.Trace.SpanID {
			t.Errorf("unsampled exchange exported %v", s)
		}
	}

	// A's server span: penstock's ids, the client's span as parent.
	sa, ok := byID[a.State.Trace.SpanID]
	if !ok {
		t.Fatalf("no span with A's server span id %x: %v", a.State.Trace.SpanID, spans)
	}
	if sa.Kind != tracepb.Span_SPAN_KIND_SERVER || sa.Name != "POST /v1/models/:model/predict" {
		t.Errorf("A server span = %v", sa)
	}
	if hex.EncodeToString(sa.TraceID[:]) != clientTraceID || hex.EncodeToString(sa.ParentSpanID[:]) != clientParentID {
		t.Errorf("A server span ids: %v", sa)
	}
	if sa.TraceState != "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7" {
		t.Errorf("A tracestate = %q", sa.TraceState)
	}
	if !sa.Start.Equal(a.Start) {
		t.Errorf("A server span starts at %v, want the exchange's start %v", sa.Start, a.Start)
	}
	wantAttrs(t, sa, map[string]any{
		"penstock.split.arm":        "canary",
		"http.request.method":       "POST",
		"http.route":                "/v1/models/:model/predict",
		"http.response.status_code": int64(200),
		"server.address":            "api.example.com",
		"server.port":               int64(8443),
		"network.protocol.version":  "1.1",
		"url.path":                  "/v1/models/resnet/predict",
		"url.scheme":                "http",
		"client.address":            "192.0.2.10",
		"penstock.route.name":       "predict",
		"url.path_param.model":      "resnet",
		"error.type":                nil,
	})
	if sa.StatusCode != tracepb.Status_STATUS_CODE_UNSET {
		t.Errorf("A status = %v", sa.StatusCode)
	}

	// A's client spans: children of the server span, with the ids that
	// went upstream.
	if id1 == id2 || id1 == a.State.Trace.SpanID || id2 == a.State.Trace.SpanID {
		t.Errorf("client span ids %x, %x, server %x: want distinct", id1, id2, a.State.Trace.SpanID)
	}
	if want := "00-" + clientTraceID + "-" + hex.EncodeToString(id1[:]) + "-01"; tp1 != want {
		t.Errorf("upstream traceparent = %s, want %s", tp1, want)
	}
	for i, id := range [][8]byte{id1, id2} {
		s, ok := byID[id]
		if !ok {
			t.Fatalf("no client span %x: %v", id, spans)
		}
		if s.Kind != tracepb.Span_SPAN_KIND_CLIENT || s.Name != "POST" {
			t.Errorf("client span = %v", s)
		}
		if s.TraceID != sa.TraceID || s.ParentSpanID != sa.SpanID {
			t.Errorf("client span %v is not a child of %v", s, sa)
		}
		if i == 0 {
			wantAttrs(t, s, map[string]any{
				"http.request.method":       "POST",
				"server.address":            "10.0.0.7",
				"server.port":               int64(8000),
				"penstock.upstream":         "models",
				"error.type":                "timeout",
				"http.response.status_code": nil,
				"http.request.resend_count": nil,
				"penstock.split.arm":        nil,
			})
			if s.StatusCode != tracepb.Status_STATUS_CODE_ERROR {
				t.Errorf("failed attempt status = %v", s.StatusCode)
			}
		} else {
			wantAttrs(t, s, map[string]any{
				"server.address":            "10.0.0.8",
				"http.response.status_code": int64(200),
				"http.request.resend_count": int64(1),
				"error.type":                nil,
				"penstock.split.arm":        "canary",
			})
			if s.StatusCode != tracepb.Status_STATUS_CODE_UNSET {
				t.Errorf("second attempt status = %v", s.StatusCode)
			}
		}
	}

	// B: a root span with penstock's new ids.
	sb, ok := byID[b.State.Trace.SpanID]
	if !ok {
		t.Fatalf("no span for B: %v", spans)
	}
	if sb.TraceID != b.State.Trace.TraceID || sb.ParentSpanID != ([8]byte{}) || sb.Name != "GET /healthz" {
		t.Errorf("B span = %v", sb)
	}
	wantAttrs(t, sb, map[string]any{
		"server.address":            "2001:db8::1",
		"server.port":               nil,
		"http.response.status_code": int64(503),
		"error.type":                "no_healthy_endpoint",
		"url.path_param.model":      nil,
	})
	if sb.StatusCode != tracepb.Status_STATUS_CODE_ERROR || sb.StatusMessage != "all endpoints down" {
		t.Errorf("B status = %v %q", sb.StatusCode, sb.StatusMessage)
	}

	// D: unknown method, no route.
	sd := byID[d.State.Trace.SpanID]
	if sd.Name != "HTTP" {
		t.Errorf("D name = %q, want HTTP", sd.Name)
	}
	wantAttrs(t, sd, map[string]any{
		"http.request.method":          "_OTHER",
		"http.request.method_original": "PURGE",
		"http.route":                   nil,
		"error.type":                   "no_route",
		"http.response.status_code":    int64(404),
	})
	if sd.StatusCode != tracepb.Status_STATUS_CODE_UNSET {
		t.Errorf("D (404) status = %v, want unset", sd.StatusCode)
	}
}

// TestRouteAfterStart covers a server span started before routing: the
// name and http.route are set when it ends.
func TestRouteAfterStart(t *testing.T) {
	rcv := otlptest.NewReceiver(t)
	tr, err := New(context.Background(), config.Tracing{Exporter: "otlp_http", Endpoint: rcv.Endpoint()}, "dev")
	if err != nil {
		t.Fatal(err)
	}
	x := newExchange(t, testRouter(t), "GET", "h", "/healthz")
	pattern, name := x.State.Pattern, x.State.RouteName
	x.State.Pattern, x.State.RouteName = "", ""
	tr.StartServer(x, false)
	x.State.Pattern, x.State.RouteName = pattern, name
	x.State.Status = 204
	tr.EndServer(x)
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	s := rcv.WaitForSpans(1, 5*time.Second)[0]
	if s.Name != "GET /healthz" || s.ServiceName != "penstock" {
		t.Errorf("span = %v (service %q)", s, s.ServiceName)
	}
	wantAttrs(t, s, map[string]any{"http.route": "/healthz", "penstock.route.name": "health"})
}

// sequence is the gateway's per-request call sequence.
func sequence(tr *Tracer, x *exchange.Exchange) [8]byte {
	tr.StartServer(x, true)
	id, end := tr.StartClient(x, "models", "10.0.0.7:8000", 1)
	end(200, nil)
	tr.EndServer(x)
	return id
}

func TestNone(t *testing.T) {
	tr, err := New(context.Background(), config.Tracing{Exporter: "none"}, "dev")
	if err != nil {
		t.Fatal(err)
	}
	rt := testRouter(t)
	x := newExchange(t, rt, "POST", "h", "/v1/models/m/predict")
	for _, tr := range []*Tracer{tr, nil} {
		if tr.Enabled() {
			t.Fatal("enabled")
		}
		if id := sequence(tr, x); id != x.State.Trace.SpanID {
			t.Errorf("StartClient = %x, want %x", id, x.State.Trace.SpanID)
		}
		if x.State.Span != nil {
			t.Error("a span was stored")
		}
		if n := testing.AllocsPerRun(1000, func() { sequence(tr, x) }); n != 0 {
			t.Errorf("%v allocations per request, want 0", n)
		}
		if err := tr.ForceFlush(context.Background()); err != nil {
			t.Error(err)
		}
		if err := tr.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	}
}

// TestNotSampledAllocs: a recording tracer costs nothing for exchanges
// whose trace is not sampled.
func TestNotSampledAllocs(t *testing.T) {
	tr := newWithExporter(config.Tracing{}, "dev", discard{})
	defer tr.Shutdown(context.Background())
	x := newExchange(t, testRouter(t), "POST", "h", "/v1/models/m/predict",
		"traceparent", "00-"+clientTraceID+"-"+clientParentID+"-00")
	if n := testing.AllocsPerRun(1000, func() { sequence(tr, x) }); n != 0 {
		t.Errorf("%v allocations per unsampled request, want 0", n)
	}
}

func TestStdout(t *testing.T) {
	var buf bytes.Buffer
	tr, err := newTracer(context.Background(), config.Tracing{Exporter: "stdout", ServiceName: "edge"}, "dev", &buf)
	if err != nil {
		t.Fatal(err)
	}
	x := newExchange(t, testRouter(t), "POST", "h", "/v1/models/m/predict")
	x.State.Status = 200
	clientID := sequence(tr, x)
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	type stub struct {
		Name        string
		SpanKind    int
		SpanContext struct{ TraceID, SpanID string }
		Parent      struct{ SpanID string }
		Attributes  []struct{ Key string }
	}
	var got []stub
	dec := json.NewDecoder(&buf)
	for {
		var s stub
		if err := dec.Decode(&s); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("stdout output is not JSON: %v", err)
		}
		got = append(got, s)
	}
	if len(got) != 2 {
		t.Fatalf("got %d spans on stdout, want 2", len(got))
	}
	// The client span ends first.
	cs, ss := got[0], got[1]
	if ss.Name != "POST /v1/models/:model/predict" || ss.SpanContext.SpanID != hex.EncodeToString(x.State.Trace.SpanID[:]) ||
		ss.SpanContext.TraceID != hex.EncodeToString(x.State.Trace.TraceID[:]) {
		t.Errorf("server span = %+v", ss)
	}
	if cs.Name != "POST" || cs.SpanContext.SpanID != hex.EncodeToString(clientID[:]) || cs.Parent.SpanID != ss.SpanContext.SpanID {
		t.Errorf("client span = %+v", cs)
	}
}

func TestUnknownExporter(t *testing.T) {
	if _, err := New(context.Background(), config.Tracing{Exporter: "zipkin"}, "dev"); err == nil {
		t.Fatal("no error for an unknown exporter")
	}
}

func TestSplitHostPort(t *testing.T) {
	for _, c := range []struct {
		in   string
		host string
		port int
		ok   bool
	}{
		{"example.com", "example.com", 0, true},
		{"example.com:8080", "example.com", 8080, true},
		{"example.com:", "example.com", 0, true},
		{"example.com:http", "example.com", 0, true},
		{"[::1]:443", "::1", 443, true},
		{"[::1]", "::1", 0, true},
		{"::1", "::1", 0, true},
		{"[::1", "", 0, false},
		{"[::1]x", "", 0, false},
		{"", "", 0, false},
	} {
		host, port, ok := splitHostPort(c.in)
		if host != c.host || port != c.port || ok != c.ok {
			t.Errorf("splitHostPort(%q) = %q, %d, %v; want %q, %d, %v", c.in, host, port, ok, c.host, c.port, c.ok)
		}
	}
}

func TestErrorType(t *testing.T) {
	for err, want := range map[error]string{
		context.DeadlineExceeded: "timeout",
		context.Canceled:         "canceled",
		errors.New("x"):          "_OTHER",
		timeoutErr{}:             "timeout",
		// A kinded error names its kind, wrapped or not, timeout or not.
		kindedErr{"reset"}: "reset",
		fmt.Errorf("attempt: %w", kindedErr{"connect"}): "connect",
	} {
		if got := errorType(err); got != want {
			t.Errorf("errorType(%v) = %q, want %q", err, got, want)
		}
	}
}

type kindedErr struct{ kind string }

func (e kindedErr) Error() string     { return "failed: " + e.kind }
func (e kindedErr) ErrorType() string { return e.kind }
func (kindedErr) Timeout() bool       { return true }

type timeoutErr struct{}

func (timeoutErr) Error() string { return "i/o timeout" }
func (timeoutErr) Timeout() bool { return true }

func TestUnixEndpoint(t *testing.T) {
	rcv := otlptest.NewReceiver(t)
	tr, err := New(context.Background(), config.Tracing{Exporter: "otlp_http", Endpoint: rcv.Endpoint()}, "dev")
	if err != nil {
		t.Fatal(err)
	}
	x := newExchange(t, testRouter(t), "GET", "h", "/healthz")
	tr.StartServer(x, false)
	_, end := tr.StartClient(x, "local", "unix:/run/model.sock", 1)
	end(503, nil)
	x.State.Status = 503
	tr.EndServer(x)
	tr.Shutdown(context.Background())
	for _, s := range rcv.WaitForSpans(2, 5*time.Second) {
		if s.Kind != tracepb.Span_SPAN_KIND_CLIENT {
			continue
		}
		wantAttrs(t, s, map[string]any{
			"server.address":    "/run/model.sock",
			"server.port":       nil,
			"network.transport": "unix",
			"error.type":        "503",
		})
		if s.StatusCode != tracepb.Status_STATUS_CODE_ERROR {
			t.Errorf("503 attempt status = %v", s.StatusCode)
		}
		return
	}
	t.Fatal("no client span")
}

// discard is an exporter that drops spans, for benchmarks.
type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

func benchmarkSequence(b *testing.B, tr *Tracer, traceparent string) {
	rt := testRouter(b)
	headers := []string{}
	if traceparent != "" {
		headers = append(headers, "traceparent", traceparent)
	}
	x := newExchange(b, rt, "POST", "api.example.com", "/v1/models/resnet/predict", headers...)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		// A new span id per request, as Extract would draw.
		x.State.Trace.SpanID = tracecontext.NewSpanID()
		x.State.Status = 200
		sequence(tr, x)
	}
}

func BenchmarkRecorded(b *testing.B) {
	tr := newWithExporter(config.Tracing{}, "dev", discard{})
	defer tr.Shutdown(context.Background())
	benchmarkSequence(b, tr, "00-"+clientTraceID+"-"+clientParentID+"-01")
}

func BenchmarkRecordedRoot(b *testing.B) {
	tr := newWithExporter(config.Tracing{}, "dev", discard{})
	defer tr.Shutdown(context.Background())
	benchmarkSequence(b, tr, "")
}

func BenchmarkRecordedOTLP(b *testing.B) {
	rcv := otlptest.NewReceiver(b)
	tr, err := New(context.Background(), config.Tracing{Exporter: "otlp_http", Endpoint: rcv.Endpoint()}, "dev")
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Shutdown(context.Background())
	benchmarkSequence(b, tr, "00-"+clientTraceID+"-"+clientParentID+"-01")
}

func BenchmarkNotSampled(b *testing.B) {
	tr := newWithExporter(config.Tracing{}, "dev", discard{})
	defer tr.Shutdown(context.Background())
	benchmarkSequence(b, tr, "00-"+clientTraceID+"-"+clientParentID+"-00")
}

func BenchmarkNone(b *testing.B) {
	tr, _ := New(context.Background(), config.Tracing{Exporter: "none"}, "dev")
	benchmarkSequence(b, tr, "00-"+clientTraceID+"-"+clientParentID+"-01")
}

// TestAliasedStrings: the request's strings alias engine buffers that are
// reused once the exchange is over, before the batch is exported; the
// exported span must still have the values of its own request.
func TestAliasedStrings(t *testing.T) {
	rcv := otlptest.NewReceiver(t)
	tr, err := New(context.Background(), config.Tracing{Exporter: "otlp_http", Endpoint: rcv.Endpoint()}, "dev")
	if err != nil {
		t.Fatal(err)
	}
	wire := []byte("PURGE api.example.com /v1/models/resnet/predict congo=t61rcWkgMzE")
	str := func(from, to int) string { return unsafe.String(&wire[from], to-from) }
	x := newExchange(t, testRouter(t), "POST", "h", "/v1/models/x/predict",
		"traceparent", "00-"+clientTraceID+"-"+clientParentID+"-01")
	x.Req.Method, x.Req.Host, x.Req.Path, x.State.Trace.State = str(0, 5), str(6, 21), str(22, 47), str(48, len(wire))
	x.State.Params = router.Params{}
	testRouter(t).Lookup("h", "POST", x.Req.Path, nil, &x.State.Params)
	tr.StartServer(x, true)
	_, end := tr.StartClient(x, "models", "10.0.0.7:8000", 1)
	end(200, nil)
	x.State.Status = 200
	tr.EndServer(x)
	for i := range wire {
		wire[i] = 'X'
	}
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, s := range rcv.WaitForSpans(2, 5*time.Second) {
		if s.Kind == tracepb.Span_SPAN_KIND_SERVER {
			wantAttrs(t, s, map[string]any{
				"http.request.method_original": "PURGE",
				"server.address":               "api.example.com",
				"url.path":                     "/v1/models/resnet/predict",
				"url.path_param.model":         "resnet",
			})
			if s.TraceState != "congo=t61rcWkgMzE" {
				t.Errorf("tracestate = %q", s.TraceState)
			}
		} else {
			wantAttrs(t, s, map[string]any{"http.request.method_original": "PURGE"})
		}
	}
}

// TestConcurrent runs many exchanges at once (for -race) and checks that
// every client span is the child of its own exchange's server span.
func TestConcurrent(t *testing.T) {
	rcv := otlptest.NewReceiver(t)
	tr, err := New(context.Background(), config.Tracing{Exporter: "otlp_http", Endpoint: rcv.Endpoint()}, "dev")
	if err != nil {
		t.Fatal(err)
	}
	rt := testRouter(t)
	const workers, each = 8, 50
	var wg sync.WaitGroup
	var mu sync.Mutex
	parents := map[[8]byte][8]byte{} // client span → server span
	for w := 0; w < workers; w++ {
		wg.Go(func() {
			for i := 0; i < each; i++ {
				x := newExchange(t, rt, "POST", "h", "/v1/models/m/predict")
				tr.StartServer(x, true)
				id, end := tr.StartClient(x, "models", "10.0.0.7:8000", 1)
				end(200, nil)
				x.State.Status = 200
				tr.EndServer(x)
				mu.Lock()
				parents[id] = x.State.Trace.SpanID
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	spans := rcv.WaitForSpans(2*workers*each, 5*time.Second)
	servers := 0
	for _, s := range spans {
		if s.Kind == tracepb.Span_SPAN_KIND_SERVER {
			servers++
			continue
		}
		if want, ok := parents[s.SpanID]; !ok || s.ParentSpanID != want {
			t.Fatalf("client span %x has parent %x, want %x", s.SpanID, s.ParentSpanID, want)
		}
	}
	if servers != workers*each || len(spans) != 2*workers*each {
		t.Errorf("%d spans, %d server spans", len(spans), servers)
	}
}
