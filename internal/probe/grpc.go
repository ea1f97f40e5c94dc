package probe

import (
	"context"
	"net"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// GRPCFacts are a grpc probe's facts.
type GRPCFacts struct {
	// StatusCode is the gRPC status code of the Check call (0 is OK).
	StatusCode int `json:"status_code"`
	// ServingStatus is the health answer: SERVING, NOT_SERVING, …
	ServingStatus string `json:"serving_status"`
	TLS           bool   `json:"tls"`
}

// probeGRPC asks target (host:port) the gRPC health checking protocol's
// Check for the module's service.
func (p *Prober) probeGRPC(ctx context.Context, target string, m *Module, r *Result) error {
	gm := &m.GRPC
	host, port, err := splitHostPort(target, "")
	if err != nil {
		return r.failWith(ReasonOther, "%v", err)
	}
	ip, err := p.resolve(ctx, host, gm.PreferredIPProtocol, gm.IPProtocolFallback, r)
	if err != nil {
		return err
	}
	creds := insecure.NewCredentials()
	if gm.TLS {
		cfg, err := gm.TLSConfig.clientTLS(host, p.Sessions)
		if err != nil {
			return r.failWith(ReasonOther, "%v", err)
		}
		creds = credentials.NewTLS(cfg)
	}
	// The channel dials on its own goroutines, and may dial again while
	// the probe returns: the connect time goes through an atomic.
	var connect atomic.Int64
	dialer := func(ctx context.Context, addr string) (net.Conn, error) {
		start := time.Now()
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		connect.Store(int64(time.Since(start)))
		return c, err
	}
	defer func() { r.Phases.Connect = Seconds(connect.Load()) }()
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds), grpc.WithContextDialer(dialer)}
	if !gm.TLS {
		// With TLS the credentials' server name is the authority.
		opts = append(opts, grpc.WithAuthority(net.JoinHostPort(host, port)))
	}
	cc, err := grpc.NewClient("passthrough:///"+net.JoinHostPort(ip.String(), port), opts...)
	if err != nil {
		return r.failWith(ReasonOther, "grpc: %v", err)
	}
	defer cc.Close()
	facts := &GRPCFacts{TLS: gm.TLS, StatusCode: -1}
	r.GRPC = facts
	var pr peer.Peer
	start := time.Now()
	resp, err := grpc_health_v1.NewHealthClient(cc).Check(ctx, &grpc_health_v1.HealthCheckRequest{Service: gm.Service}, grpc.Peer(&pr), grpc.WaitForReady(true))
	r.Phases.Request = Seconds(time.Since(start))
	if ti, ok := pr.AuthInfo.(credentials.TLSInfo); ok {
		r.TLS = tlsFacts(ti.State)
	}
	if err != nil {
		st, _ := status.FromError(err)
		facts.StatusCode = int(st.Code())
		if st.Code() == codes.DeadlineExceeded || st.Code() == codes.Unavailable || st.Code() == codes.Canceled {
			// The cause (refused, certificate, …) is in the message; the
			// last connection error of the channel names it.
			if reason := classify(errorFromStatus(st), phaseConnect); reason != ReasonOther {
				r.Reason = reason
				return err
			}
			if st.Code() == codes.DeadlineExceeded {
				return r.failWith(ReasonTimeout, "grpc: %v", err)
			}
		}
		return r.failWith(ReasonGRPCError, "grpc: %v", err)
	}
	facts.StatusCode = 0
	facts.ServingStatus = resp.GetStatus().String()
	if resp.GetStatus() != grpc_health_v1.HealthCheckResponse_SERVING {
		return r.failWith(ReasonGRPCNotServing, "grpc: service %q is %s", gm.Service, facts.ServingStatus)
	}
	return nil
}
