package demo

import (
	"net/http"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// GRPCHealthService is the gRPC service the demo backend serves over h2c
// beside its HTTP routes: the standard health checking protocol, which
// `penstock probe` speaks (module grpc_plain), so the demo's gRPC route
// can be tried without a gRPC tool.
const GRPCHealthService = "grpc.health.v1.Health"

// withGRPC serves gRPC calls (HTTP/2, Content-Type application/grpc...)
// with srv and everything else with next.
func withGRPC(srv *grpc.Server, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			srv.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// newGRPCServer returns the backend's gRPC server: the health service,
// SERVING for the whole server ("") and for "models".
func newGRPCServer() *grpc.Server {
	srv := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus("models", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	return srv
}
