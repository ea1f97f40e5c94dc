package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// grpcCodes is the number of gRPC's status codes (0 to 16). The
// grpc_status label takes their numbers, "other" for any number an
// upstream makes up, and "none" for a call that ended without a status
// (its stream was cut), so its cardinality is bounded.
const grpcCodes = 17

const (
	grpcOther = grpcCodes
	grpcNone  = grpcCodes + 1
)

var grpcStatusLabels = func() [grpcCodes + 2]string {
	var l [grpcCodes + 2]string
	for i := range grpcCodes {
		l[i] = strconv.Itoa(i)
	}
	l[grpcOther], l[grpcNone] = "other", "none"
	return l
}()

// grpcVecs counts gRPC calls by route and grpc-status. A separate counter,
// rather than a label on the request histograms, so that other requests
// pay nothing and the histograms keep their cardinality: gRPC calls are
// in those too, under status_class 2xx as HTTP sees them.
type grpcVecs struct {
	calls *prometheus.CounterVec
}

func newGRPCVecs() *grpcVecs {
	return &grpcVecs{calls: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "penstock_grpc_requests_total",
		Help: "gRPC calls (and gRPC-Web calls) finished, by route and the grpc-status they ended with (the upstream's, or penstock's own refusal).",
	}, []string{"route", "grpc_status"})}
}

// GRPCDone counts a finished gRPC call of the route that ended with status
// code; ok false means it ended without one. The counter of each code is
// resolved on its first use.
func (r *Route) GRPCDone(code int, ok bool) {
	switch {
	case !ok:
		code = grpcNone
	case code < 0 || code >= grpcCodes:
		code = grpcOther
	}
	c := r.grpc[code].Load()
	if c == nil {
		counter := r.m.grpc.calls.WithLabelValues(r.name, grpcStatusLabels[code])
		r.grpc[code].CompareAndSwap(nil, &counter)
		c = r.grpc[code].Load()
	}
	(*c).Inc()
}
