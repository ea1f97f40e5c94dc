package server_test

import (
	"context"
	"crypto/tls"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
)

// BenchmarkGRPCUnary sends small unary calls one at a time from a grpc-go
// client to a grpc-go server, directly and through penstock (h2c and TLS
// listeners, h2c upstream), and reports the latency's median and 99th
// percentile besides the mean: the difference is what penstock adds to a
// call on loopback. Client and server run in this process: compare the
// sub-benchmarks with each other, not with other tools.
func BenchmarkGRPCUnary(b *testing.B) {
	up := startGRPCUpstream(b, nil)
	g := startGatewayTB(b, lines(`listeners:
  - {name: plain, address: "127.0.0.1:0", protocols: [h1, h2c]}
  - {name: tls, address: "127.0.0.1:0", tls: {self_signed: true}}
upstreams: [{name: up, protocol: h2c, endpoints: [{address: %s}]}]
routes: [{name: svc, match: {grpc: {service: grpc.testing.TestService}}, upstream: up}]
access_log: {enabled: false}
logging: {level: error}
`, up))
	for _, tc := range []struct {
		name, addr string
		tls        bool
	}{
		{"direct", up, false},
		{"penstock/h2c", g.Addr("plain").String(), false},
		{"penstock/tls", g.Addr("tls").String(), true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			creds := insecure.NewCredentials()
			if tc.tls {
				creds = credentials.NewTLS(&tls.Config{InsecureSkipVerify: true})
			}
			cc, err := grpc.NewClient(tc.addr, grpc.WithTransportCredentials(creds))
			if err != nil {
				b.Fatal(err)
			}
			defer cc.Close()
			c := testgrpc.NewTestServiceClient(cc)
			ctx := context.Background()
			req := &testgrpc.SimpleRequest{ResponseSize: 64, Payload: &testgrpc.Payload{Body: make([]byte, 64)}}
			if _, err := c.UnaryCall(ctx, req); err != nil { // connect outside the timing
				b.Fatal(err)
			}
			lat := make([]time.Duration, 0, b.N)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				if _, err := c.UnaryCall(ctx, req); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}
