package tracing

import (
	"context"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/penstock-dev/penstock/internal/tracecontext"
)

// idsKey is the context key under which an idContext answers for itself.
type idsKey struct{}

// idContext carries the ids and the sampling decision that tracecontext
// already chose for a server span into the SDK's IDGenerator and Sampler.
// It is a context.Context itself (rather than a context.WithValue) so that
// it lives inside the serverSpan and costs no allocation of its own.
type idContext struct {
	context.Context
	traceID trace.TraceID
	spanID  trace.SpanID
	sampled bool
	// spent is set once the server span has started: spans started later
	// on a context derived from this one (client spans) are not the server
	// span and must not get its ids.
	spent bool
}

// Value answers idsKey with c until c is spent and defers everything else
// to the parent.
func (c *idContext) Value(key any) any {
	if key == (idsKey{}) {
		if c.spent {
			return nil
		}
		return c
	}
	return c.Context.Value(key)
}

func carried(ctx context.Context) *idContext {
	c, _ := ctx.Value(idsKey{}).(*idContext)
	return c
}

// carriedIDs is the SDK IDGenerator: for a span started on an idContext it
// returns the carried ids; for any other span (client spans) random ones,
// drawn as tracecontext draws its own.
type carriedIDs struct{}

// NewIDs returns the carried trace and span id, or random ones.
func (carriedIDs) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	if c := carried(ctx); c != nil && c.traceID.IsValid() && c.spanID.IsValid() {
		return c.traceID, c.spanID
	}
	return tracecontext.NewTraceID(), tracecontext.NewSpanID()
}

// NewSpanID returns the carried span id for a span of the carried trace
// (the server span under a remote parent), or a random one.
func (carriedIDs) NewSpanID(ctx context.Context, traceID trace.TraceID) trace.SpanID {
	if c := carried(ctx); c != nil && c.traceID == traceID && c.spanID.IsValid() {
		return c.spanID
	}
	return tracecontext.NewSpanID()
}

// decided is the SDK Sampler: it repeats the decision already made. A span
// started on an idContext (the server span) is sampled as tracecontext
// decided, whether or not it has a remote parent (a trace penstock started
// has none, and a parent-based sampler would fall back to its root
// sampler). Any other span follows its parent (client spans follow the
// server span). The parent's tracestate is kept.
type decided struct{}

// ShouldSample implements sdktrace.Sampler.
func (decided) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	psc := trace.SpanContextFromContext(p.ParentContext)
	sampled := psc.IsSampled()
	if c := carried(p.ParentContext); c != nil {
		sampled = c.sampled
	}
	res := sdktrace.SamplingResult{Decision: sdktrace.Drop, Tracestate: psc.TraceState()}
	if sampled {
		res.Decision = sdktrace.RecordAndSample
	}
	return res
}

// Description implements sdktrace.Sampler.
func (decided) Description() string { return "PenstockTraceContextDecision" }
