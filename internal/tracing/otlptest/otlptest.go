// Package otlptest is a real OTLP trace receiver for tests: an httptest
// server on 127.0.0.1 that accepts POST /v1/traces with a protobuf
// ExportTraceServiceRequest body (gzip or not), as a collector would, and
// keeps the spans it decoded for the test to inspect. NewGRPCReceiver does
// the same for OTLP/gRPC (TraceService/Export). Only tests import it: it is a
// package, not a _test.go file, so that the tests of several packages share
// it.
package otlptest

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// Span is one span as the receiver decoded it.
type Span struct {
	// ServiceName is the service.name attribute of the span's resource.
	ServiceName string
	// Resource holds all resource attributes.
	Resource map[string]any
	// Scope is the instrumentation scope name.
	Scope string

	Name         string
	Kind         tracepb.Span_SpanKind
	TraceID      [16]byte
	SpanID       [8]byte
	ParentSpanID [8]byte
	TraceState   string
	Start, End   time.Time
	// Attributes maps attribute keys to string, bool, int64, float64,
	// []byte or []any values.
	Attributes    map[string]any
	StatusCode    tracepb.Status_StatusCode
	StatusMessage string
}

// String describes the span in one line for test failure messages.
func (s Span) String() string {
	return fmt.Sprintf("%s %q trace=%x span=%x parent=%x status=%s attrs=%v",
		s.Kind, s.Name, s.TraceID, s.SpanID, s.ParentSpanID, s.StatusCode, s.Attributes)
}

// Receiver is a running OTLP/HTTP receiver.
type Receiver struct {
	t        testing.TB
	srv      *httptest.Server // OTLP/HTTP
	endpoint string

	mu       sync.Mutex
	spans    []Span
	requests int
	changed  chan struct{} // closed and replaced whenever spans arrive
}

// NewReceiver starts a receiver on a loopback port; it is closed when the
// test ends.
func NewReceiver(t testing.TB) *Receiver {
	t.Helper()
	r := &Receiver{t: t, changed: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", r.serveTraces)
	r.srv = httptest.NewServer(mux) // httptest listens on 127.0.0.1
	r.endpoint = r.srv.Listener.Addr().String()
	t.Cleanup(r.srv.Close)
	return r
}

// NewGRPCReceiver starts an OTLP/gRPC receiver (plaintext) on a loopback
// port; it is stopped when the test ends.
func NewGRPCReceiver(t testing.TB) *Receiver {
	t.Helper()
	r := &Receiver{t: t, changed: make(chan struct{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("otlptest: %v", err)
	}
	gs := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(gs, grpcService{r: r})
	go gs.Serve(ln)
	r.endpoint = ln.Addr().String()
	t.Cleanup(gs.Stop)
	return r
}

// Endpoint returns the receiver's host:port.
func (r *Receiver) Endpoint() string { return r.endpoint }

// URL returns the full URL of the OTLP/HTTP traces endpoint ("" for a gRPC
// receiver).
func (r *Receiver) URL() string {
	if r.srv == nil {
		return ""
	}
	return r.srv.URL + "/v1/traces"
}

// Requests reports how many export requests were accepted.
func (r *Receiver) Requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests
}

// Spans returns a copy of the spans received so far, in arrival order.
func (r *Receiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Span(nil), r.spans...)
}

// Reset forgets the spans received so far.
func (r *Receiver) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.spans = nil
}

// WaitForSpans waits until at least n spans have arrived and returns them.
// It fails the test if they have not arrived within timeout.
func (r *Receiver) WaitForSpans(n int, timeout time.Duration) []Span {
	r.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		got, ch := len(r.spans), r.changed
		if got >= n {
			out := append([]Span(nil), r.spans...)
			r.mu.Unlock()
			return out
		}
		r.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			r.t.Fatalf("otlptest: %d spans after %v, want %d: %v", got, timeout, n, r.Spans())
			return nil
		}
	}
}

func (r *Receiver) serveTraces(w http.ResponseWriter, req *http.Request) {
	ct := req.Header.Get("Content-Type")
	if ct != "application/x-protobuf" {
		http.Error(w, "unsupported content type "+ct, http.StatusUnsupportedMediaType)
		return
	}
	var body io.Reader = req.Body
	switch enc := req.Header.Get("Content-Encoding"); strings.ToLower(enc) {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(req.Body)
		if err != nil {
			http.Error(w, "bad gzip body: "+err.Error(), http.StatusBadRequest)
			return
		}
		defer zr.Close()
		body = zr
	default:
		http.Error(w, "unsupported content encoding "+enc, http.StatusUnsupportedMediaType)
		return
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
		return
	}
	var msg coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(raw, &msg); err != nil {
		http.Error(w, "decoding request: "+err.Error(), http.StatusBadRequest)
		return
	}
	out, err := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	r.add(&msg)

	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(http.StatusOK)
	w.Write(out)
}

func (r *Receiver) add(msg *coltracepb.ExportTraceServiceRequest) {
	spans := Decode(msg)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.spans = append(r.spans, spans...)
	r.requests++
	close(r.changed)
	r.changed = make(chan struct{})
}

type grpcService struct {
	coltracepb.UnimplementedTraceServiceServer
	r *Receiver
}

func (g grpcService) Export(_ context.Context, msg *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	g.r.add(msg)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// Decode flattens an export request into spans.
func Decode(msg *coltracepb.ExportTraceServiceRequest) []Span {
	var spans []Span
	for _, rs := range msg.GetResourceSpans() {
		res := attrMap(rs.GetResource().GetAttributes())
		svc, _ := res["service.name"].(string)
		for _, ss := range rs.GetScopeSpans() {
			scope := ss.GetScope().GetName()
			for _, s := range ss.GetSpans() {
				sp := Span{
					ServiceName:   svc,
					Resource:      res,
					Scope:         scope,
					Name:          s.GetName(),
					Kind:          s.GetKind(),
					TraceState:    s.GetTraceState(),
					Start:         time.Unix(0, int64(s.GetStartTimeUnixNano())),
					End:           time.Unix(0, int64(s.GetEndTimeUnixNano())),
					Attributes:    attrMap(s.GetAttributes()),
					StatusCode:    s.GetStatus().GetCode(),
					StatusMessage: s.GetStatus().GetMessage(),
				}
				copy(sp.TraceID[:], s.GetTraceId())
				copy(sp.SpanID[:], s.GetSpanId())
				copy(sp.ParentSpanID[:], s.GetParentSpanId())
				spans = append(spans, sp)
			}
		}
	}
	return spans
}

func attrMap(kvs []*commonpb.KeyValue) map[string]any {
	m := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		m[kv.GetKey()] = anyValue(kv.GetValue())
	}
	return m
}

func anyValue(v *commonpb.AnyValue) any {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_BoolValue:
		return x.BoolValue
	case *commonpb.AnyValue_IntValue:
		return x.IntValue
	case *commonpb.AnyValue_DoubleValue:
		return x.DoubleValue
	case *commonpb.AnyValue_BytesValue:
		return x.BytesValue
	case *commonpb.AnyValue_ArrayValue:
		out := make([]any, 0, len(x.ArrayValue.GetValues()))
		for _, e := range x.ArrayValue.GetValues() {
			out = append(out, anyValue(e))
		}
		return out
	case *commonpb.AnyValue_KvlistValue:
		return attrMap(x.KvlistValue.GetValues())
	}
	return nil
}
