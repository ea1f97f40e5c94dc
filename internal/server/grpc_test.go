package server_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/penstock-dev/penstock/internal/grpccall"
	"github.com/penstock-dev/penstock/internal/server"
	"github.com/penstock-dev/penstock/internal/testpki"
)

// grpcService is a real grpc-go TestService: the calls echo what they are
// given, return the status they are asked for with trailing metadata, and
// one can be made to ignore its deadline.
type grpcService struct {
	testgrpc.UnimplementedTestServiceServer
	// stall is closed when the test ends: a call asked to stall waits for
	// it, whatever its deadline, so only penstock can end it in time.
	stall chan struct{}
}

// binDetail is binary trailing metadata (a -bin key, base64 on the wire).
var binDetail = []byte{0x00, 0x01, 0xfe, 0xff, '\r', '\n'}

func (s *grpcService) UnaryCall(ctx context.Context, req *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	grpc.SetHeader(ctx, metadata.Pairs("x-head", "h1"))
	grpc.SetTrailer(ctx, metadata.Pairs("x-trail", "t1", "x-detail-bin", string(binDetail)))
	if string(req.GetPayload().GetBody()) == "stall" {
		<-s.stall
		return nil, status.Error(codes.Internal, "stalled call answered")
	}
	if st := req.GetResponseStatus(); st != nil && st.Code != 0 {
		return nil, status.Error(codes.Code(st.Code), st.Message)
	}
	return &testgrpc.SimpleResponse{Payload: &testgrpc.Payload{Body: make([]byte, req.GetResponseSize())}}, nil
}

func (s *grpcService) StreamingOutputCall(req *testgrpc.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[testgrpc.StreamingOutputCallResponse]) error {
	for _, p := range req.GetResponseParameters() {
		if err := stream.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: make([]byte, p.GetSize())}}); err != nil {
			return err
		}
	}
	if string(req.GetPayload().GetBody()) == "stall" {
		<-s.stall
	}
	stream.SetTrailer(metadata.Pairs("x-count", "streamed"))
	return nil
}

func (s *grpcService) StreamingInputCall(stream grpc.ClientStreamingServer[testgrpc.StreamingInputCallRequest, testgrpc.StreamingInputCallResponse]) error {
	total := 0
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return stream.SendAndClose(&testgrpc.StreamingInputCallResponse{AggregatedPayloadSize: int32(total)})
		}
		if err != nil {
			return err
		}
		total += len(req.GetPayload().GetBody())
	}
}

func (s *grpcService) FullDuplexCall(stream grpc.BidiStreamingServer[testgrpc.StreamingOutputCallRequest, testgrpc.StreamingOutputCallResponse]) error {
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(&testgrpc.StreamingOutputCallResponse{Payload: req.GetPayload()}); err != nil {
			return err
		}
	}
}

// startGRPCUpstream serves a grpcService on loopback, over TLS when cert
// is set (HTTP/2 by ALPN) and h2c with prior knowledge otherwise.
func startGRPCUpstream(t testing.TB, cert *tls.Certificate) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var opts []grpc.ServerOption
	if cert != nil {
		opts = append(opts, grpc.Creds(credentials.NewServerTLSFromCert(cert)))
	}
	srv := grpc.NewServer(opts...)
	svc := &grpcService{stall: make(chan struct{})}
	testgrpc.RegisterTestServiceServer(srv, svc)
	go srv.Serve(ln)
	t.Cleanup(func() {
		close(svc.stall)
		srv.Stop()
	})
	return ln.Addr().String()
}

// grpcGateway starts penstock with an h2c and a TLS listener in front of
// a grpc-go server reached over h2c and one reached over HTTP/2 with TLS.
func grpcGateway(t *testing.T) *server.Server {
	t.Helper()
	ca := testpki.NewCA(t, "grpc test CA")
	issued := ca.Server(t, "grpc.test")
	caFile := ca.WriteCA(t, filepath.Join(t.TempDir(), "ca.pem"))
	h2c := startGRPCUpstream(t, nil)
	h2tls := startGRPCUpstream(t, &issued.Pair)
	return startGateway(t, lines(`listeners:
  - {name: plain, address: "127.0.0.1:0", protocols: [h1, h2c]}
  - {name: tls, address: "127.0.0.1:0", tls: {self_signed: true}}
upstreams:
  - {name: h2c, protocol: h2c, endpoints: [{address: %s}]}
  - {name: h2tls, protocol: h2, tls: {ca_file: %s, server_name: grpc.test}, endpoints: [{address: %s}]}
  - {name: down, protocol: h2c, endpoints: [{address: %s}]}
limits: [{name: one, algorithm: token_bucket, rate: 0.001, burst: 1, key: {from: client_ip}}]
routes:
  - {name: limited, match: {hosts: [limited.test], grpc: {service: grpc.testing.TestService, method: UnaryCall}}, upstream: h2c, limits: [one]}
  - {name: down, match: {hosts: [down.test], path: "/grpc.testing.TestService/*rest"}, upstream: down}
  - {name: tls-upstream, match: {hosts: [h2tls.test], path: "/grpc.testing.TestService/*rest"}, upstream: h2tls}
  - {name: web, match: {hosts: [web.test], path: "/grpc.testing.TestService/*rest"}, upstream: h2c, grpc_web: true}
  - {name: svc, match: {grpc: {service: grpc.testing.TestService}}, upstream: h2c}
`, h2c, caFile, h2tls, closedAddr(t)))
}

// grpcClient connects a grpc-go client to penstock's listener, sending
// authority as :authority (which chooses the route).
func grpcClient(t *testing.T, g *server.Server, listener, authority string) testgrpc.TestServiceClient {
	t.Helper()
	creds := insecure.NewCredentials()
	if listener == "tls" {
		creds = credentials.NewTLS(&tls.Config{InsecureSkipVerify: true})
	}
	cc, err := grpc.NewClient(g.Addr(listener).String(), grpc.WithTransportCredentials(creds), grpc.WithAuthority(authority))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return testgrpc.NewTestServiceClient(cc)
}

// TestGRPCThroughPenstock runs the four kinds of gRPC call of a real
// grpc-go client and server through penstock, from an h2c and a TLS
// listener to an h2c and a TLS upstream: messages, status, header and
// trailing metadata (binary included) arrive as the server sent them.
func TestGRPCThroughPenstock(t *testing.T) {
	g := grpcGateway(t)
	for _, path := range []struct{ name, listener, authority string }{
		{"h2c to h2c", "plain", "any.test"},
		{"h2c to h2 TLS", "plain", "h2tls.test"},
		{"TLS to h2c", "tls", "any.test"},
		{"TLS to h2 TLS", "tls", "h2tls.test"},
	} {
		t.Run(path.name, func(t *testing.T) {
			c := grpcClient(t, g, path.listener, path.authority)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()

			t.Run("unary ok with header and trailing metadata", func(t *testing.T) {
				var hdr, trl metadata.MD
				resp, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 100000}, grpc.Header(&hdr), grpc.Trailer(&trl))
				if err != nil {
					t.Fatal(err)
				}
				if n := len(resp.GetPayload().GetBody()); n != 100000 {
					t.Errorf("payload %d bytes, want 100000", n)
				}
				if got := hdr.Get("x-head"); len(got) != 1 || got[0] != "h1" {
					t.Errorf("header metadata x-head = %q", got)
				}
				if got := trl.Get("x-trail"); len(got) != 1 || got[0] != "t1" {
					t.Errorf("trailing metadata x-trail = %q", got)
				}
				if got := trl.Get("x-detail-bin"); len(got) != 1 || got[0] != string(binDetail) {
					t.Errorf("binary trailing metadata = %q, want %q", got, binDetail)
				}
			})
			t.Run("unary error keeps code, message and trailers", func(t *testing.T) {
				var trl metadata.MD
				msg := "bad request: ünïcode and 100% \r\n kept"
				_, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.FailedPrecondition), Message: msg}}, grpc.Trailer(&trl))
				st := status.Convert(err)
				if st.Code() != codes.FailedPrecondition || st.Message() != msg {
					t.Errorf("status %v %q, want FailedPrecondition %q", st.Code(), st.Message(), msg)
				}
				if got := trl.Get("x-detail-bin"); len(got) != 1 || got[0] != string(binDetail) {
					t.Errorf("binary trailing metadata = %q", got)
				}
			})
			t.Run("server streaming", func(t *testing.T) {
				sizes := []int32{1, 10, 100, 1000, 70000}
				var params []*testgrpc.ResponseParameters
				for _, n := range sizes {
					params = append(params, &testgrpc.ResponseParameters{Size: n})
				}
				stream, err := c.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: params})
				if err != nil {
					t.Fatal(err)
				}
				for i, want := range sizes {
					resp, err := stream.Recv()
					if err != nil {
						t.Fatalf("message %d: %v", i, err)
					}
					if n := int32(len(resp.GetPayload().GetBody())); n != want {
						t.Errorf("message %d: %d bytes, want %d", i, n, want)
					}
				}
				if _, err := stream.Recv(); err != io.EOF {
					t.Errorf("end of stream: %v, want io.EOF (status OK)", err)
				}
				if got := stream.Trailer().Get("x-count"); len(got) != 1 || got[0] != "streamed" {
					t.Errorf("trailing metadata x-count = %q", got)
				}
			})
			t.Run("client streaming", func(t *testing.T) {
				stream, err := c.StreamingInputCall(ctx)
				if err != nil {
					t.Fatal(err)
				}
				total := 0
				for _, n := range []int{5, 50, 500, 50000} {
					total += n
					if err := stream.Send(&testgrpc.StreamingInputCallRequest{Payload: &testgrpc.Payload{Body: make([]byte, n)}}); err != nil {
						t.Fatal(err)
					}
				}
				resp, err := stream.CloseAndRecv()
				if err != nil {
					t.Fatal(err)
				}
				if int(resp.GetAggregatedPayloadSize()) != total {
					t.Errorf("aggregated %d bytes, want %d", resp.GetAggregatedPayloadSize(), total)
				}
			})
			t.Run("bidi ping-pong is not buffered", func(t *testing.T) {
				// Each message is answered before the next is sent, and the
				// request stream stays open throughout: a proxy that waited
				// for the request's end, or held responses back, would hang
				// on the first Recv.
				stream, err := c.FullDuplexCall(ctx)
				if err != nil {
					t.Fatal(err)
				}
				for i := range 20 {
					body := []byte{byte(i), 'p', 'i', 'n', 'g'}
					if err := stream.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: body}}); err != nil {
						t.Fatalf("send %d: %v", i, err)
					}
					resp, err := stream.Recv()
					if err != nil {
						t.Fatalf("recv %d: %v", i, err)
					}
					if string(resp.GetPayload().GetBody()) != string(body) {
						t.Fatalf("reply %d = %q, want %q", i, resp.GetPayload().GetBody(), body)
					}
				}
				stream.CloseSend()
				if _, err := stream.Recv(); err != io.EOF {
					t.Errorf("end of stream: %v, want io.EOF", err)
				}
			})
		})
	}
}

// TestGRPCRefusals checks that penstock's own refusals of a gRPC call
// reach a grpc-go client as gRPC statuses, in a trailers-only response.
func TestGRPCRefusals(t *testing.T) {
	g := grpcGateway(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	t.Run("no route is UNIMPLEMENTED", func(t *testing.T) {
		// The routes serve /grpc.testing.TestService/ only.
		cc, err := grpc.NewClient(g.Addr("plain").String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		err = cc.Invoke(ctx, "/other.Service/Call", &testgrpc.Empty{}, &testgrpc.Empty{})
		if st := status.Convert(err); st.Code() != codes.Unimplemented || st.Message() != "no_route" {
			t.Errorf("status %v %q, want Unimplemented no_route", st.Code(), st.Message())
		}
	})
	t.Run("unreachable upstream is UNAVAILABLE", func(t *testing.T) {
		c := grpcClient(t, g, "plain", "down.test")
		for range 3 { // the first is a failed connect, the next find no endpoint left
			_, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{})
			if st := status.Convert(err); st.Code() != codes.Unavailable {
				t.Errorf("status %v %q, want Unavailable", st.Code(), st.Message())
			}
		}
	})
	t.Run("rate limit is RESOURCE_EXHAUSTED", func(t *testing.T) {
		c := grpcClient(t, g, "tls", "limited.test")
		if _, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil {
			t.Fatalf("first call (within the burst): %v", err)
		}
		_, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{})
		if st := status.Convert(err); st.Code() != codes.ResourceExhausted || st.Message() != "rate_limited" {
			t.Errorf("status %v %q, want ResourceExhausted rate_limited", st.Code(), st.Message())
		}
	})
	t.Run("grpc-timeout is enforced by penstock", func(t *testing.T) {
		// The upstream ignores its deadline and the raw client has none of
		// its own: only penstock can end the call, with DEADLINE_EXCEEDED.
		frame := grpcFrame(t, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("stall")}})
		req, _ := http.NewRequest("POST", baseURL(g, "plain")+"/grpc.testing.TestService/UnaryCall", strings.NewReader(string(frame)))
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("Te", "trailers")
		req.Header.Set("Grpc-Timeout", "200m")
		resp, err := h2cClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Grpc-Status") != "4" || resp.Header.Get("Grpc-Message") != "upstream_timeout" {
			t.Errorf("status %d, grpc-status %q, grpc-message %q; want a trailers-only 200 with 4 and upstream_timeout",
				resp.StatusCode, resp.Header.Get("Grpc-Status"), resp.Header.Get("Grpc-Message"))
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/grpc" {
			t.Errorf("content-type %q", ct)
		}
	})
	t.Run("grpc-timeout passing mid-stream ends it with DEADLINE_EXCEEDED", func(t *testing.T) {
		// One message arrives, then the upstream stalls: the status comes
		// in the trailers after it, not as a reset stream.
		frame := grpcFrame(t, &testgrpc.StreamingOutputCallRequest{
			ResponseParameters: []*testgrpc.ResponseParameters{{Size: 10}},
			Payload:            &testgrpc.Payload{Body: []byte("stall")},
		})
		req, _ := http.NewRequest("POST", baseURL(g, "plain")+"/grpc.testing.TestService/StreamingOutputCall", bytes.NewReader(frame))
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("Te", "trailers")
		req.Header.Set("Grpc-Timeout", "300m")
		resp, err := h2cClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("body: %v (a reset stream instead of trailers?)", err)
		}
		if len(body) != 5+2+2+10 { // prefix, response{payload{body}}
			t.Errorf("body %d bytes, want the one message (19)", len(body))
		}
		if got := resp.Trailer.Get("Grpc-Status"); got != "4" {
			t.Errorf("trailer grpc-status %q (message %q), want 4", got, resp.Trailer.Get("Grpc-Message"))
		}
	})
	t.Run("client deadline arrives as DEADLINE_EXCEEDED", func(t *testing.T) {
		c := grpcClient(t, g, "plain", "any.test")
		dctx, dcancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer dcancel()
		_, err := c.UnaryCall(dctx, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("stall")}})
		if st := status.Convert(err); st.Code() != codes.DeadlineExceeded {
			t.Errorf("status %v %q, want DeadlineExceeded", st.Code(), st.Message())
		}
	})
}

// grpcFrame is one length-prefixed, uncompressed gRPC message.
func grpcFrame(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte{0, byte(len(b) >> 24), byte(len(b) >> 16), byte(len(b) >> 8), byte(len(b))}, b...)
}

// TestGRPCWeb sends gRPC-Web calls, as a browser's client library frames
// them, over HTTP/1.1 to a route with grpc_web: true in front of a real
// grpc-go server: binary and base64 text mode, a success whose trailers
// arrive as the body's trailer frame and an error status.
func TestGRPCWeb(t *testing.T) {
	g := grpcGateway(t)
	for _, mode := range []struct {
		name, contentType string
		text              bool
	}{
		{"binary", "application/grpc-web+proto", false},
		{"text", "application/grpc-web-text", true},
	} {
		call := func(t *testing.T, req *testgrpc.SimpleRequest) (*http.Response, []webFrame) {
			t.Helper()
			body := grpcFrame(t, req)
			if mode.text {
				body = []byte(base64.StdEncoding.EncodeToString(body))
			}
			hreq, _ := http.NewRequest("POST", baseURL(g, "plain")+"/grpc.testing.TestService/UnaryCall", bytes.NewReader(body))
			hreq.Host = "web.test"
			hreq.Header.Set("Content-Type", mode.contentType)
			hreq.Header.Set("X-Grpc-Web", "1")
			resp, err := client.Do(hreq)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var r io.Reader = resp.Body
			if mode.text {
				var d grpccall.TextDecoder
				d.Reset(resp.Body)
				r = &d
			}
			raw, err := io.ReadAll(r)
			if err != nil {
				t.Fatalf("reading the body: %v", err)
			}
			var frames []webFrame
			for len(raw) > 0 {
				flag, payload, rest, err := grpccall.ParseFrame(raw)
				if err != nil {
					t.Fatalf("body frames: %v", err)
				}
				frames = append(frames, webFrame{flag, payload})
				raw = rest
			}
			return resp, frames
		}
		t.Run(mode.name, func(t *testing.T) {
			t.Run("ok: message, then the trailer frame", func(t *testing.T) {
				resp, frames := call(t, &testgrpc.SimpleRequest{ResponseSize: 300})
				wantCT := "application/grpc-web+proto"
				if mode.text {
					wantCT = "application/grpc-web-text+proto"
				}
				if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != wantCT {
					t.Fatalf("status %d, content-type %q; want 200 and %s", resp.StatusCode, resp.Header.Get("Content-Type"), wantCT)
				}
				if len(frames) != 2 || frames[0].flag != 0 || frames[1].flag != grpccall.FlagTrailer {
					t.Fatalf("frames %v, want a message and a trailer frame", frames)
				}
				var m testgrpc.SimpleResponse
				if err := proto.Unmarshal(frames[0].payload, &m); err != nil || len(m.GetPayload().GetBody()) != 300 {
					t.Errorf("message: %v, %d payload bytes; want 300", err, len(m.GetPayload().GetBody()))
				}
				tr := map[string]string{}
				if err := grpccall.ParseTrailers(frames[1].payload, func(k, v string) { tr[k] = v }); err != nil {
					t.Fatal(err)
				}
				if tr["grpc-status"] != "0" || tr["x-trail"] != "t1" {
					t.Errorf("trailer frame %v, want grpc-status 0 and x-trail t1", tr)
				}
				if resp.Header.Get("X-Head") != "h1" {
					t.Errorf("header metadata x-head = %q", resp.Header.Get("X-Head"))
				}
			})
			t.Run("error status", func(t *testing.T) {
				resp, frames := call(t, &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.NotFound), Message: "no such model"}})
				// grpc-go answers an error before any message trailers-only:
				// the status is in the header; otherwise in the trailer frame.
				got := map[string]string{"grpc-status": resp.Header.Get("Grpc-Status"), "grpc-message": resp.Header.Get("Grpc-Message")}
				for _, f := range frames {
					if f.flag == grpccall.FlagTrailer {
						grpccall.ParseTrailers(f.payload, func(k, v string) { got[k] = v })
					}
				}
				if got["grpc-status"] != "5" || got["grpc-message"] != "no such model" {
					t.Errorf("status %v, want grpc-status 5, grpc-message %q", got, "no such model")
				}
			})
		})
	}
}

type webFrame struct {
	flag    byte
	payload []byte
}

// TestGRPCMetricsAndAccessLog checks that gRPC calls are counted by route
// and grpc-status, the upstream's and penstock's own, and that their
// access log lines name the service, the method and the status.
func TestGRPCMetricsAndAccessLog(t *testing.T) {
	up := startGRPCUpstream(t, nil)
	o := startObserved(t, lines(`listeners: [{name: plain, address: "127.0.0.1:0", protocols: [h1, h2c]}]
upstreams: [{name: h2c, protocol: h2c, endpoints: [{address: %s}]}]
routes: [{name: svc, match: {path: "/grpc.testing.TestService/*rest"}, upstream: h2c}]
`, up))
	c := grpcClient(t, o.g, "plain", "any.test")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for range 2 {
		if _, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	c.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.FailedPrecondition), Message: "no"}})
	cc, err := grpc.NewClient(o.g.Addr("plain").String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	cc.Invoke(ctx, "/other.Service/Call", &testgrpc.Empty{}, &testgrpc.Empty{})
	client.Get(baseURL(o.g, "plain") + "/grpc.testing.TestService/NotGRPC") // plain HTTP: not counted

	for _, tc := range []struct {
		labels string
		want   float64
	}{
		{"grpc_status=0,route=svc", 2},
		{"grpc_status=9,route=svc", 1},
		{"grpc_status=12,route=none", 1},
	} {
		if got := exactSeriesValue(t, o.reg, "penstock_grpc_requests_total", tc.labels); got != tc.want {
			t.Errorf("penstock_grpc_requests_total{%s} = %v, want %v", tc.labels, got, tc.want)
		}
	}
	ls := o.lines(t)
	if len(ls) != 5 {
		t.Fatalf("%d access log lines, want 5", len(ls))
	}
	want := []map[string]any{
		{"grpc_service": "grpc.testing.TestService", "grpc_method": "UnaryCall", "grpc_status": "0"},
		{"grpc_service": "grpc.testing.TestService", "grpc_method": "UnaryCall", "grpc_status": "0"},
		{"grpc_service": "grpc.testing.TestService", "grpc_method": "UnaryCall", "grpc_status": "9"},
		{"grpc_service": "other.Service", "grpc_method": "Call", "grpc_status": "12", "error_kind": "no_route"},
		{"grpc_service": nil, "grpc_method": nil, "grpc_status": nil},
	}
	for i, w := range want {
		for k, v := range w {
			if ls[i][k] != v {
				t.Errorf("line %d: %s = %v, want %v", i, k, ls[i][k], v)
			}
		}
	}
}
