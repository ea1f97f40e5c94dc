// Package tracing records OpenTelemetry spans for exchanges: one server span
// per sampled request and one client span per upstream attempt, exported by
// the OpenTelemetry SDK over OTLP (HTTP or gRPC) or to stdout.
//
// The trace context itself is not this package's business: tracecontext has
// already read or created it, decided sampling and chosen penstock's span id
// (which is logged and sent upstream whether or not a span is recorded). The
// tracer only makes the SDK record spans with exactly those ids: an
// IDGenerator hands the SDK the ids carried in the start context, and a
// Sampler repeats the decision already made, so the SDK never decides
// anything on its own.
//
// Names follow the stable OpenTelemetry HTTP semantic conventions
// (STYLE.md point 9). A Tracer built with exporter "none", and a nil
// *Tracer, do nothing and allocate nothing.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/sdk"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/exchange"
)

// ScopeName is the instrumentation scope of penstock's spans.
const ScopeName = "github.com/penstock-dev/penstock/internal/tracing"

// Attribute keys of penstock's own (non-semconv) attributes.
const (
	// RouteNameKey is the name of the matched route.
	RouteNameKey = attribute.Key("penstock.route.name")
	// UpstreamKey is the upstream pool a client span was sent to.
	UpstreamKey = attribute.Key("penstock.upstream")
	// ArmKey is the split arm that served the request (internal/split), on
	// the server span and the client spans of split routes only.
	ArmKey = attribute.Key("penstock.split.arm")
	// PathParamPrefix prefixes path parameter attributes
	// ("url.path_param.model"), recorded when a route opts in.
	PathParamPrefix = "url.path_param."
)

// Batching of exported spans. The SDK's queue drops spans rather than block
// a request when the collector cannot keep up.
const (
	batchTimeout  = 2 * time.Second
	exportTimeout = 10 * time.Second
	maxQueueSize  = 4096
	maxBatchSize  = 512
)

// Tracer records spans for exchanges. Its methods may be called on a nil
// *Tracer and are then no-ops.
type Tracer struct {
	provider *sdktrace.TracerProvider
	tracer   trace.Tracer
}

// New builds the tracer for cfg (with defaults applied, see
// config.Tracing). Exporter "none" (or "") returns a Tracer that records
// nothing. version is the service.version resource attribute.
func New(ctx context.Context, cfg config.Tracing, version string) (*Tracer, error) {
	return newTracer(ctx, cfg, version, os.Stdout)
}

// newTracer is New with the stdout exporter's writer given.
func newTracer(ctx context.Context, cfg config.Tracing, version string, stdout io.Writer) (*Tracer, error) {
	var (
		exp sdktrace.SpanExporter
		err error
	)
	switch cfg.Exporter {
	case "", "none":
		return &Tracer{}, nil
	case "otlp_http":
		endpoint := cfg.Endpoint
		if endpoint == "" {
			endpoint = "127.0.0.1:4318"
		}
		exp, err = otlptracehttp.New(ctx,
			otlptracehttp.WithEndpoint(endpoint),
			otlptracehttp.WithInsecure(),
			otlptracehttp.WithTimeout(exportTimeout))
	case "otlp_grpc":
		endpoint := cfg.Endpoint
		if endpoint == "" {
			endpoint = "127.0.0.1:4317"
		}
		exp, err = otlptracegrpc.New(ctx,
			otlptracegrpc.WithEndpoint(endpoint),
			otlptracegrpc.WithInsecure(),
			otlptracegrpc.WithTimeout(exportTimeout))
	case "stdout":
		exp, err = stdouttrace.New(stdouttrace.WithWriter(stdout))
	default:
		return nil, fmt.Errorf("tracing: unknown exporter %q", cfg.Exporter)
	}
	if err != nil {
		return nil, fmt.Errorf("tracing: %s exporter: %w", cfg.Exporter, err)
	}
	return newWithExporter(cfg, version, exp), nil
}

// newWithExporter builds a recording Tracer that batches spans to exp.
func newWithExporter(cfg config.Tracing, version string, exp sdktrace.SpanExporter) *Tracer {
	name := cfg.ServiceName
	if name == "" {
		name = "penstock"
	}
	res := resource.NewWithAttributes(semconv.SchemaURL,
		semconv.ServiceName(name),
		semconv.ServiceVersion(version),
		semconv.TelemetrySDKName("opentelemetry"),
		semconv.TelemetrySDKLanguageGo,
		semconv.TelemetrySDKVersion(sdk.Version()),
	)
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithResource(res),
		sdktrace.WithSampler(decided{}),
		sdktrace.WithIDGenerator(carriedIDs{}),
		sdktrace.WithBatcher(exp,
			sdktrace.WithBatchTimeout(batchTimeout),
			sdktrace.WithExportTimeout(exportTimeout),
			sdktrace.WithMaxQueueSize(maxQueueSize),
			sdktrace.WithMaxExportBatchSize(maxBatchSize)),
	)
	return &Tracer{
		provider: tp,
		tracer:   tp.Tracer(ScopeName, trace.WithInstrumentationVersion(version), trace.WithSchemaURL(semconv.SchemaURL)),
	}
}

// Enabled reports whether t records spans (an exporter is configured).
func (t *Tracer) Enabled() bool { return t != nil && t.provider != nil }

// Shutdown flushes the spans still queued and stops the exporter, within
// ctx's deadline. The Tracer records nothing afterwards.
func (t *Tracer) Shutdown(ctx context.Context) error {
	if !t.Enabled() {
		return nil
	}
	return t.provider.Shutdown(ctx)
}

// ForceFlush exports the spans queued so far without stopping.
func (t *Tracer) ForceFlush(ctx context.Context) error {
	if !t.Enabled() {
		return nil
	}
	return t.provider.ForceFlush(ctx)
}

// serverSpan is what StartServer keeps in x.State.Span.
type serverSpan struct {
	span trace.Span
	// children is the parent context of client spans: the context Start
	// returned, holding the server span. Its idContext is spent once the
	// server span has started, so client spans get ids of their own.
	children context.Context
	method   string // the span name's method: known method or "HTTP"
	pattern  string // the route pattern the span is named after
	start    idContext
	// attrs collects the span's attributes, backed by buf, and is handed
	// to the SDK once, at the end: each SetAttributes call grows the
	// span's own slice again.
	attrs []attribute.KeyValue
	buf   [16]attribute.KeyValue
	opts  [2]trace.SpanStartOption
}

// IsRecording reports whether the span still records: a serverSpan is the
// exchange's handle on its span (exchange.Span).
func (ss *serverSpan) IsRecording() bool { return ss.span.IsRecording() }

var (
	serverKind = trace.WithSpanKind(trace.SpanKindServer)
	// clientOpts is a package-level slice so that passing it allocates
	// nothing.
	clientOpts = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}
)

// StartServer starts the server span for x when its trace is sampled and t
// records spans, and keeps it in x.State.Span. The span has the ids of
// x.State.Trace (TraceID, and SpanID as its own id), the client's span
// (ParentID) as remote parent when there is one, and the client's
// tracestate. paramAttributes records the path parameters as
// "url.path_param.<name>" attributes.
func (t *Tracer) StartServer(x *exchange.Exchange, paramAttributes bool) {
	if !t.Enabled() || !x.State.Trace.Sampled() || x.State.Span != nil {
		return
	}
	tc := &x.State.Trace
	ss := &serverSpan{}
	ss.start = idContext{
		Context: context.Background(),
		traceID: trace.TraceID(tc.TraceID),
		spanID:  trace.SpanID(tc.SpanID),
		sampled: true,
	}
	if tc.ParentID != ([8]byte{}) {
		var ts trace.TraceState
		if tc.State != "" {
			// An invalid tracestate is dropped, as W3C §3.3.1.1 asks.
			ts, _ = trace.ParseTraceState(strings.Clone(tc.State))
		}
		parent := trace.NewSpanContext(trace.SpanContextConfig{
			TraceID:    trace.TraceID(tc.TraceID),
			SpanID:     trace.SpanID(tc.ParentID),
			TraceFlags: trace.TraceFlags(tc.Flags),
			TraceState: ts,
			Remote:     true,
		})
		ss.start.Context = trace.ContextWithRemoteSpanContext(context.Background(), parent)
	}

	method, known := normalizeMethod(x.Req.Method)
	ss.method = method
	ss.pattern = x.State.Pattern

	ss.opts[0] = serverKind
	opts := ss.opts[:1]
	if !x.Start.IsZero() {
		ss.opts[1] = trace.WithTimestamp(x.Start)
		opts = ss.opts[:2]
	}
	ctx, span := t.tracer.Start(&ss.start, spanName(method, ss.pattern), opts...)
	ss.start.spent = true
	ss.span = span
	ss.children = ctx

	// The request's strings alias engine memory that is reused after the
	// exchange, while the SDK keeps attributes until they are exported:
	// they are copied. Route names and patterns come from the config and
	// are kept as they are.
	a := ss.buf[:0]
	if known {
		a = append(a, semconv.HTTPRequestMethodKey.String(method))
	} else {
		a = append(a, semconv.HTTPRequestMethodOther, semconv.HTTPRequestMethodOriginal(strings.Clone(x.Req.Method)))
	}
	if ss.pattern != "" {
		a = append(a, semconv.HTTPRoute(ss.pattern))
	}
	if x.Req.Path != "" {
		a = append(a, semconv.URLPath(strings.Clone(x.Req.Path)))
	}
	a = append(a, semconv.URLScheme(scheme(x)))
	if host, port, ok := splitHostPort(x.Req.Host); ok {
		if host != "" {
			a = append(a, semconv.ServerAddress(strings.Clone(host)))
		}
		if port > 0 {
			a = append(a, semconv.ServerPort(port))
		}
	}
	if v := protocolVersion(x.Req.Proto); v != "" {
		a = append(a, semconv.NetworkProtocolVersion(v))
	}
	if x.Req.RemoteAddr.IsValid() {
		a = append(a, semconv.ClientAddress(x.Req.RemoteAddr.Addr().String()))
	}
	if x.State.RouteName != "" {
		a = append(a, RouteNameKey.String(x.State.RouteName))
	}
	if paramAttributes {
		p := &x.State.Params
		for i := 0; i < p.Len(); i++ {
			a = append(a, attribute.String(PathParamPrefix+p.Key(i), strings.Clone(p.Value(i))))
		}
	}
	ss.attrs = a
	x.State.Span = ss
}

// EndServer sets the response attributes and status on x's server span and
// ends it. It does nothing when no span was started.
func (t *Tracer) EndServer(x *exchange.Exchange) {
	ss, ok := x.State.Span.(*serverSpan)
	if !ok {
		return
	}
	x.State.Span = nil
	span := ss.span
	a := ss.attrs
	if x.State.Pattern != ss.pattern {
		// The route was matched after the span started.
		ss.pattern = x.State.Pattern
		span.SetName(spanName(ss.method, ss.pattern))
		a = append(a, semconv.HTTPRoute(ss.pattern))
		if x.State.RouteName != "" {
			a = append(a, RouteNameKey.String(x.State.RouteName))
		}
	}
	status := x.State.Status
	if status > 0 {
		a = append(a, semconv.HTTPResponseStatusCode(status))
	}
	errType := x.State.ErrorKind
	if errType == "" && status >= 500 {
		errType = strconv.Itoa(status)
	}
	if errType != "" {
		a = append(a, semconv.ErrorTypeKey.String(errType))
	}
	if x.State.Arm != "" {
		a = append(a, ArmKey.String(x.State.Arm))
	}
	span.SetAttributes(a...)
	// Server spans report an error for 5xx only: a 4xx is the client's
	// failure, not the server's (HTTP semconv, span status). A response cut
	// short after its status was sent failed too.
	if status >= 500 || x.State.Aborted {
		msg := x.State.Error
		if msg == "" && x.State.Aborted {
			msg = "response aborted"
		}
		span.SetStatus(codes.Error, strings.Clone(msg))
	}
	span.End()
}

// clientSpan is one upstream attempt's span.
type clientSpan struct {
	span  trace.Span
	attrs []attribute.KeyValue // set once, at the end; backed by buf
	buf   [9]attribute.KeyValue
}

// noEnd is the end function of attempts without a span; a package-level
// value so that returning it allocates nothing.
var noEnd = func(int, error) {}

// StartClient starts the client span of one upstream attempt (attempt
// counts from 1) to endpoint ("host:port" or "unix:/path") of the pool
// upstream, as a child of x's server span. It returns the span id to send
// upstream as the parent in traceparent, and the function that ends the
// span with the upstream's status (0 if none arrived) and the attempt's
// error. Without a server span it returns x.State.Trace.SpanID and a no-op.
func (t *Tracer) StartClient(x *exchange.Exchange, upstream, endpoint string, attempt int) (spanID [8]byte, end func(status int, err error)) {
	ss, ok := x.State.Span.(*serverSpan)
	if !ok || !t.Enabled() {
		return x.State.Trace.SpanID, noEnd
	}
	method, known := normalizeMethod(x.Req.Method)
	_, span := t.tracer.Start(ss.children, method, clientOpts...)
	cs := &clientSpan{span: span}
	a := cs.buf[:0]
	if known {
		a = append(a, semconv.HTTPRequestMethodKey.String(method))
	} else {
		a = append(a, semconv.HTTPRequestMethodOther, semconv.HTTPRequestMethodOriginal(strings.Clone(x.Req.Method)))
	}
	if path, ok := unixPath(endpoint); ok {
		a = append(a, semconv.ServerAddress(path), semconv.NetworkTransportUnix)
	} else if host, port, ok := splitHostPort(endpoint); ok {
		a = append(a, semconv.ServerAddress(host))
		if port > 0 {
			a = append(a, semconv.ServerPort(port))
		}
	}
	if attempt > 1 {
		a = append(a, semconv.HTTPRequestResendCount(attempt-1))
	}
	if upstream != "" {
		a = append(a, UpstreamKey.String(upstream))
	}
	if x.State.Arm != "" {
		a = append(a, ArmKey.String(x.State.Arm))
	}
	cs.attrs = a
	return [8]byte(span.SpanContext().SpanID()), cs.end
}

// end records the attempt's outcome. Client spans report an error for any
// status of 400 and up, or a failed attempt (HTTP semconv, span status).
func (cs *clientSpan) end(status int, err error) {
	a := cs.attrs
	if status > 0 {
		a = append(a, semconv.HTTPResponseStatusCode(status))
	}
	switch {
	case err != nil:
		a = append(a, semconv.ErrorTypeKey.String(errorType(err)))
	case status >= 400:
		a = append(a, semconv.ErrorTypeKey.String(strconv.Itoa(status)))
	}
	cs.span.SetAttributes(a...)
	switch {
	case err != nil:
		cs.span.SetStatus(codes.Error, err.Error())
	case status >= 400:
		cs.span.SetStatus(codes.Error, "")
	}
	cs.span.End()
}

// errorType names an attempt's failure with a low-cardinality, stable value
// (semconv error.type): the kind an error states itself (upstream.Error's
// "connect", "reset", "protocol"…), else a timeout or a cancellation, else
// "_OTHER" as the semantic conventions ask. A Go type name would change
// with the code and mean nothing to an operator.
func errorType(err error) string {
	var kinded interface{ ErrorType() string }
	var te interface{ Timeout() bool }
	switch {
	case errors.As(err, &kinded):
		return kinded.ErrorType()
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &te) && te.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "_OTHER"
}

// spanName is "{method} {route}", or "{method}" without a route.
func spanName(method, pattern string) string {
	if pattern == "" {
		return method
	}
	return method + " " + pattern
}

// normalizeMethod returns the method for the span name and
// http.request.method: a method HTTP semconv knows, any other as "HTTP"
// (name) with known false (the attribute is then "_OTHER"). The result is
// a constant, never the request's own string.
func normalizeMethod(m string) (string, bool) {
	switch m {
	case "GET":
		return "GET", true
	case "HEAD":
		return "HEAD", true
	case "POST":
		return "POST", true
	case "PUT":
		return "PUT", true
	case "DELETE":
		return "DELETE", true
	case "CONNECT":
		return "CONNECT", true
	case "OPTIONS":
		return "OPTIONS", true
	case "TRACE":
		return "TRACE", true
	case "PATCH":
		return "PATCH", true
	case "QUERY":
		return "QUERY", true
	}
	return "HTTP", false
}

// scheme returns url.scheme as a constant.
func scheme(x *exchange.Exchange) string {
	if x.Req.Scheme == "https" || x.Req.Scheme == "" && x.Req.TLS != nil {
		return "https"
	}
	return "http"
}

func protocolVersion(p exchange.Proto) string {
	switch p {
	case exchange.HTTP10:
		return "1.0"
	case exchange.HTTP11:
		return "1.1"
	case exchange.HTTP2:
		return "2"
	case exchange.HTTP3:
		return "3"
	}
	return ""
}

// splitHostPort splits "host", "host:port", "[v6]" or "[v6]:port". port is
// 0 when absent; ok is false for an empty or malformed value.
func splitHostPort(s string) (host string, port int, ok bool) {
	if s == "" {
		return "", 0, false
	}
	var rest string
	if s[0] == '[' {
		i := strings.IndexByte(s, ']')
		if i < 0 {
			return "", 0, false
		}
		host, rest = s[1:i], s[i+1:]
		if rest != "" && rest[0] != ':' {
			return "", 0, false
		}
	} else {
		i := strings.LastIndexByte(s, ':')
		if i < 0 {
			return s, 0, true
		}
		if strings.IndexByte(s[:i], ':') >= 0 {
			return s, 0, true // a bare IPv6 address
		}
		host, rest = s[:i], s[i:]
	}
	if len(rest) > 1 {
		n, err := strconv.Atoi(rest[1:])
		if err == nil && n > 0 && n <= 65535 {
			port = n
		}
	}
	return host, port, true
}

func unixPath(endpoint string) (string, bool) {
	path, ok := strings.CutPrefix(endpoint, "unix:")
	return path, ok && path != ""
}
