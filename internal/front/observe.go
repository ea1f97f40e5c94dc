package front

import (
	"time"

	"github.com/penstock-dev/penstock/internal/accesslog"
	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/grpccall"
	"github.com/penstock-dev/penstock/internal/metrics"
	"github.com/penstock-dev/penstock/internal/snapshot"
)

// finish records a completed exchange in metrics, the trace and the access
// log of the snapshot it ran on. It runs once per request, after the
// response (or its failure).
func finish(x *exchange.Exchange, s *snapshot.Snapshot, rm *metrics.Route) {
	st := &x.State
	dur := time.Since(x.Start)
	sampled := st.Trace.Sampled()
	// Exemplars link a latency bucket to a trace, so they are attached only
	// when traces are exported; they cost allocations, and a trace id that
	// leads nowhere is not worth them.
	rm.Done(x.Req.Method, st.Status, dur, st.BytesIn, st.BytesOut, &st.Trace.TraceID, sampled && s.Tracer.Enabled())
	grpcCode, grpcOK := st.GRPCStatus()
	if st.GRPC || grpcOK {
		rm.GRPCDone(grpcCode, grpcOK)
	}
	s.Tracer.EndServer(x)

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
		Arm:          st.Arm,
		BytesIn:      st.BytesIn,
		BytesOut:     st.BytesOut,
		Client:       x.Req.RemoteAddr,
		ErrorKind:    st.ErrorKind,
		Error:        st.Error,
	}
	if st.GRPC || grpcOK {
		rec.GRPCService, rec.GRPCMethod = grpccall.SplitPath(x.Req.Path)
		if grpcOK {
			rec.GRPCStatus = grpccall.StatusString(grpcCode)
		}
	}
	s.AccessLog.Log(&rec)
}
