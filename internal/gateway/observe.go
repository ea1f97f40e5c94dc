package gateway

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/penstock-dev/penstock/internal/accesslog"
	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/metrics"
	"github.com/penstock-dev/penstock/internal/tracing"
)

// observability is what makes every request visible: metrics, the access
// log and the tracer. It lives as long as the gateway, not a snapshot: a
// metric registry cannot be rebuilt per reload without resetting counters,
// and the access log's writer holds its file and buffer.
type observability struct {
	metrics *metrics.Metrics
	log     *accesslog.Logger
	tracer  *tracing.Tracer
}

func newObservability(cfg *config.Config, reg prometheus.Registerer, version string) (*observability, error) {
	al, err := accesslog.New(cfg, reg)
	if err != nil {
		return nil, err
	}
	tr, err := tracing.New(context.Background(), cfg.Tracing, version)
	if err != nil {
		al.Close()
		return nil, err
	}
	return &observability{metrics: metrics.New(cfg.Metrics, reg), log: al, tracer: tr}, nil
}

func (o *observability) close(ctx context.Context) error {
	return errors.Join(o.log.Close(), o.tracer.Shutdown(ctx))
}

// routeHost is the host label of a route's metrics when metrics.per_host is
// on: the configured host patterns, never the request's Host.
func routeHost(hosts []string) string { return strings.Join(hosts, ",") }

// finish records a completed exchange in metrics, the trace and the access
// log. It runs once per request, after the response (or its failure).
func (o *observability) finish(x *exchange.Exchange, rm *metrics.Route) {
	st := &x.State
	dur := time.Since(x.Start)
	sampled := st.Trace.Sampled()
	// Exemplars link a latency bucket to a trace, so they are attached only
	// when traces are exported; they cost allocations, and a trace id that
	// leads nowhere is not worth them.
	rm.Done(x.Req.Method, st.Status, dur, st.BytesIn, st.BytesOut, &st.Trace.TraceID, sampled && o.tracer.Enabled())
	o.tracer.EndServer(x)

	var tlsVersion uint16
	if x.Req.TLS != nil {
		tlsVersion = x.Req.TLS.Version
	}
	rec := accesslog.Record{
		Time:         x.Start,
		TraceID:      st.Trace.TraceID,
		SpanID:       st.Trace.SpanID,
		Sampled:      sampled,
		RequestID:    st.RequestID,
		Proto:        x.Req.Proto.String(),
		TLSVersion:   tlsVersion,
		Method:       x.Req.Method,
		Host:         x.Req.Host,
		Route:        st.RouteName,
		Pattern:      st.Pattern,
		Path:         x.Req.Path,
		Query:        x.Req.Query,
		Params:       &st.Params,
		Status:       st.Status,
		Duration:     dur,
		UpstreamWait: st.UpstreamWait,
		Endpoint:     st.Endpoint,
		Attempts:     st.Attempts,
		BytesIn:      st.BytesIn,
		BytesOut:     st.BytesOut,
		Client:       x.Req.RemoteAddr,
		ErrorKind:    st.ErrorKind,
		Error:        st.Error,
	}
	o.log.Log(&rec)
}
