package tracing

import (
	"context"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/tracing/otlptest"
)

// TestInvocationSpan: a function invocation is a child span of the
// request's server span with the FaaS attributes, the cold-start flag
// among them, and an error status when it failed.
func TestInvocationSpan(t *testing.T) {
	rcv := otlptest.NewReceiver(t)
	tr, err := New(context.Background(), config.Tracing{Exporter: "otlp_http", Endpoint: rcv.Endpoint()}, "dev")
	if err != nil {
		t.Fatal(err)
	}
	x := newExchange(t, testRouter(t), "GET", "h", "/healthz")
	tr.StartServer(x, false)
	tr.StartInvocation(x, "tokenize", "id-1", 3, true)(200, "")
	tr.StartInvocation(x, "tokenize", "id-2", 3, false)(504, "timeout")
	x.State.Status = 200
	tr.EndServer(x)
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	spans := rcv.WaitForSpans(3, 5*time.Second)
	var cold, warm otlptest.Span
	for _, s := range spans {
		switch s.Attributes["faas.invocation_id"] {
		case "id-1":
			cold = s
		case "id-2":
			warm = s
		}
	}
	wantAttrs(t, cold, map[string]any{"faas.invoked_name": "tokenize", "faas.coldstart": true,
		"penstock.function.instance": int64(3), "http.response.status_code": int64(200), "error.type": nil})
	wantAttrs(t, warm, map[string]any{"faas.coldstart": false, "error.type": "timeout"})
	if cold.Name != "invoke tokenize" {
		t.Errorf("span name %q", cold.Name)
	}
}
