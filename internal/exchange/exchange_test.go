package exchange

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/tracecontext"
)

func TestProtoString(t *testing.T) {
	tests := []struct {
		name  string
		proto Proto
		want  string
	}{
		{name: "HTTP/1.0", proto: HTTP10, want: "HTTP/1.0"},
		{name: "HTTP/1.1", proto: HTTP11, want: "HTTP/1.1"},
		{name: "HTTP/2", proto: HTTP2, want: "HTTP/2.0"},
		{name: "HTTP/3", proto: HTTP3, want: "HTTP/3.0"},
		{name: "zero value is unknown", proto: 0, want: "HTTP/?"},
		{name: "out of range is unknown", proto: 200, want: "HTTP/?"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.proto.String(); got != tt.want {
				t.Errorf("Proto(%d).String() = %q, want %q", tt.proto, got, tt.want)
			}
		})
	}
}

// nopWriter is a ResponseWriter that does nothing; Release must drop it.
type nopWriter struct{ h Header }

func (w *nopWriter) Header() *Header                              { return &w.h }
func (w *nopWriter) WriteHeader(int)                              {}
func (w *nopWriter) Write(p []byte) (int, error)                  { return len(p), nil }
func (w *nopWriter) Flush() error                                 { return nil }
func (w *nopWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) { return nil, nil, ErrNotHijackable }

// testRoute and testSpan stand for the gateway's route and the tracer's
// span.
type testRoute struct{}

func (testRoute) RouteName() string { return "predict" }

type testSpan struct{}

func (testSpan) IsRecording() bool { return true }

// fillEverything sets every field of x to a non-zero value, the way an engine
// and the pipeline would over one request.
func fillEverything(t *testing.T, x *Exchange) {
	t.Helper()
	x.Req = Request{
		Proto:         HTTP2,
		Method:        "POST",
		Scheme:        "https",
		Host:          "api.example.com",
		Path:          "/v1/models/llama/predict",
		Query:         "stream=1",
		Header:        x.Req.Header,
		Body:          io.NopCloser(strings.NewReader("{}")),
		ContentLength: 2,
		RemoteAddr:    netip.MustParseAddrPort("192.0.2.1:5000"),
		TLS:           &tls.ConnectionState{Version: tls.VersionTLS13},
		EarlyData:     true,
		HandshakeDone: make(chan struct{}),
		Trailer:       testTrailer{},
	}
	x.Req.Header.Add("Content-Type", "application/json")
	x.W = &nopWriter{}
	x.Ctx = context.Background()
	x.Start = time.Now()

	x.State.Params.Match([]string{"model"})
	x.State.Params.Add("llama")
	x.State.Route = testRoute{}
	x.State.RouteName = "predict"
	x.State.Pattern = "/v1/models/:model/predict"
	x.State.RequestID = "7d9c1f0e2b3a4c5d"
	x.State.Status = 200
	x.State.BytesOut = 512
	x.State.Endpoint = "10.0.0.1:8080"
	x.State.Attempts = 2
	x.State.Arm = "canary"
	x.State.TrustedPeer = true
	x.State.ClientAddr = netip.MustParseAddr("192.0.2.1")
	x.State.Trace = tracecontext.Context{TraceID: tracecontext.NewTraceID(), SpanID: tracecontext.NewSpanID(),
		ParentID: tracecontext.NewSpanID(), Flags: 1, State: "k=v", From: tracecontext.W3C, Decided: true}
	x.State.TraceFound = true
	x.State.UpstreamWait = time.Millisecond
	x.State.BytesIn = 2
	x.State.ErrorKind = "upstream_timeout"
	x.State.Error = "timeout"
	x.State.Span = testSpan{}
	x.State.Aborted = true
	x.State.GRPC = true
	x.State.SetGRPCStatus(14)
	copy(x.State.IDBuffer(), "0123456789abcdef0123456789abcdef")
	copy(x.State.scratch[:], `{"error":"no_route"}`)

	// Guard the guard: if a field is added to these structs, this function
	// must set it, or the check below could not notice Release forgetting it.
	for _, v := range []reflect.Value{reflect.ValueOf(x).Elem(), reflect.ValueOf(&x.Req).Elem(), reflect.ValueOf(&x.State).Elem()} {
		for i := range v.NumField() {
			if v.Field(i).IsZero() && v.Type().Field(i).Name != "Header" {
				t.Fatalf("fillEverything left %s.%s zero", v.Type().Name(), v.Type().Field(i).Name)
			}
		}
	}
}

func TestReleaseResetsEveryField(t *testing.T) {
	x := Acquire()
	fillEverything(t, x)
	Release(x)
	// x is back in the pool; nothing else in this test takes from it, so it
	// can be inspected.

	if x.Req.Header.Len() != 0 {
		t.Errorf("Req.Header has %d fields after Release, want 0", x.Req.Header.Len())
	}
	if x.State.Params.Len() != 0 {
		t.Errorf("State.Params has %d entries after Release, want 0", x.State.Params.Len())
	}
	if got := len(x.State.IDBuffer()); got != 32 {
		t.Errorf("IDBuffer is %d bytes, want 32", got)
	}
	// Every other field must be its zero value. Header keeps its memory (that
	// is the point of pooling), Params only its count, and idBuf
	// and scratch are scratch space always overwritten before use.
	keep := map[string]bool{"Request.Header": true, "State.Params": true, "State.idBuf": true, "State.scratch": true}
	for _, v := range []reflect.Value{reflect.ValueOf(x).Elem(), reflect.ValueOf(&x.Req).Elem(), reflect.ValueOf(&x.State).Elem()} {
		for i := range v.NumField() {
			name := v.Type().Name() + "." + v.Type().Field(i).Name
			if keep[name] || name == "Exchange.Req" || name == "Exchange.State" {
				continue
			}
			if !v.Field(i).IsZero() {
				t.Errorf("%s = %v after Release, want the zero value", name, v.Field(i))
			}
		}
	}
}

func TestAcquireAfterReleaseIsEmpty(t *testing.T) {
	for i := range 20 {
		x := Acquire()
		if x.Req.Header.Len() != 0 || x.Req.Method != "" || x.State.Status != 0 || x.State.Aborted || x.W != nil {
			t.Fatalf("acquisition %d returned a used exchange: %+v", i, x.Req)
		}
		fillEverything(t, x)
		Release(x)
	}
}

func TestReleasedHeaderMemoryIsReused(t *testing.T) {
	x := Acquire()
	for range 8 {
		x.Req.Header.Add("X-Filler", "0123456789abcdef0123456789abcdef")
	}
	x.State.Status = 200
	Release(x)
	if cap(x.Req.Header.buf) == 0 || cap(x.Req.Header.fields) == 0 {
		t.Errorf("Release dropped the header's memory (buf cap %d, fields cap %d); a pooled exchange should keep it",
			cap(x.Req.Header.buf), cap(x.Req.Header.fields))
	}
}

func TestHandlerFunc(t *testing.T) {
	var got *Exchange
	h := HandlerFunc(func(x *Exchange) { got = x })
	x := &Exchange{}
	h.ServeExchange(x)
	if got != x {
		t.Error("HandlerFunc did not pass the exchange through")
	}
}

func TestErrNotHijackableMessage(t *testing.T) {
	if got := ErrNotHijackable.Error(); !strings.Contains(got, "hijack") {
		t.Errorf("ErrNotHijackable = %q, want it to mention hijacking", got)
	}
}

type testTrailer struct{}

func (testTrailer) ReadTrailer(*Header) {}
