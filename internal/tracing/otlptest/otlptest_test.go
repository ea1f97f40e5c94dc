package otlptest

import (
	"bytes"
	"compress/gzip"
	"net/http"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

func request() *coltracepb.ExportTraceServiceRequest {
	str := func(k, v string) *commonpb.KeyValue {
		return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
	}
	return &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{str("service.name", "svc")}},
		ScopeSpans: []*tracepb.ScopeSpans{{
			Scope: &commonpb.InstrumentationScope{Name: "scope"},
			Spans: []*tracepb.Span{{
				TraceId:      bytes.Repeat([]byte{1}, 16),
				SpanId:       bytes.Repeat([]byte{2}, 8),
				ParentSpanId: bytes.Repeat([]byte{3}, 8),
				Name:         "GET /x",
				Kind:         tracepb.Span_SPAN_KIND_SERVER,
				Attributes: []*commonpb.KeyValue{str("http.route", "/x"),
					{Key: "http.response.status_code", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: 200}}}},
				Status: &tracepb.Status{Code: tracepb.Status_STATUS_CODE_OK},
			}},
		}},
	}}}
}

func post(t *testing.T, url, encoding string, body []byte) int {
	t.Helper()
	req, err := http.NewRequest("POST", url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestReceiverDecodes(t *testing.T) {
	r := NewReceiver(t)
	raw, err := proto.Marshal(request())
	if err != nil {
		t.Fatal(err)
	}
	if code := post(t, r.URL(), "", raw); code != 200 {
		t.Fatalf("plain: status %d", code)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(raw)
	zw.Close()
	if code := post(t, r.URL(), "gzip", gz.Bytes()); code != 200 {
		t.Fatalf("gzip: status %d", code)
	}
	if code := post(t, r.URL(), "", []byte("not protobuf \xff\xff")); code != 400 {
		t.Fatalf("garbage: status %d, want 400", code)
	}

	spans := r.WaitForSpans(2, time.Second)
	if len(spans) != 2 || r.Requests() != 2 {
		t.Fatalf("got %d spans in %d requests", len(spans), r.Requests())
	}
	s := spans[1]
	if s.Name != "GET /x" || s.Kind != tracepb.Span_SPAN_KIND_SERVER || s.ServiceName != "svc" || s.Scope != "scope" {
		t.Errorf("span = %v", s)
	}
	if s.TraceID != [16]byte{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1} || s.SpanID != [8]byte{2, 2, 2, 2, 2, 2, 2, 2} || s.ParentSpanID != [8]byte{3, 3, 3, 3, 3, 3, 3, 3} {
		t.Errorf("ids = %v", s)
	}
	if s.Attributes["http.route"] != "/x" || s.Attributes["http.response.status_code"] != int64(200) || s.StatusCode != tracepb.Status_STATUS_CODE_OK {
		t.Errorf("attributes = %v", s)
	}
	r.Reset()
	if n := len(r.Spans()); n != 0 {
		t.Errorf("after Reset: %d spans", n)
	}
}
