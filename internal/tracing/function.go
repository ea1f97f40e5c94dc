package tracing

import (
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/penstock-dev/penstock/internal/exchange"
)

var invocationOpts = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}

// StartInvocation starts the span of one function invocation
// (internal/function) as a child of x's server span, with OpenTelemetry's
// FaaS attributes: faas.invoked_name, faas.invocation_id, faas.coldstart
// (the invocation started its instance) and the instance. It returns the
// function that ends the span with the response status and the
// invocation's failure, if any. Without a server span it returns a no-op.
func (t *Tracer) StartInvocation(x *exchange.Exchange, function, invocationID string, instance int, cold bool) (end func(status int, failure string)) {
	ss, ok := x.State.Span.(*serverSpan)
	if !ok || !t.Enabled() {
		return noInvocationEnd
	}
	_, span := t.tracer.Start(ss.children, "invoke "+function, invocationOpts...)
	span.SetAttributes(semconv.FaaSInvokedName(function), semconv.FaaSInvocationID(invocationID),
		semconv.FaaSColdstart(cold), semconv.FaaSTriggerHTTP,
		UpstreamKey.String("function:"+function), attribute.Int("penstock.function.instance", instance))
	return func(status int, failure string) {
		if status > 0 {
			span.SetAttributes(semconv.HTTPResponseStatusCode(status))
		}
		if failure != "" {
			span.SetAttributes(semconv.ErrorTypeKey.String(failure))
			span.SetStatus(codes.Error, failure)
		}
		span.End()
	}
}

func noInvocationEnd(int, string) {}
