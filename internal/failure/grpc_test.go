package failure

import (
	"testing"

	"github.com/penstock-dev/penstock/internal/grpccall"
)

// TestFailGRPC checks that a failure of a gRPC call is answered
// trailers-only: status 200, the call's content type, the mapped
// grpc-status and the failure kind as grpc-message, and no body; the
// access log and metrics still see the failure kind.
func TestFailGRPC(t *testing.T) {
	tests := []struct {
		name        string
		contentType string
		code        Code
		wantStatus  string
		wantCT      string
	}{
		{"no route", "application/grpc", NoRoute, "12", "application/grpc"},
		{"no healthy endpoint", "application/grpc+proto", NoHealthyEndpoint, "14", "application/grpc"},
		{"connect failure", "application/grpc", UpstreamConnect, "14", "application/grpc"},
		{"circuit open", "application/grpc", CircuitOpen, "14", "application/grpc"},
		{"timeout", "application/grpc", UpstreamTimeout, "4", "application/grpc"},
		{"queue deadline", "application/grpc", DeadlineExpired, "4", "application/grpc"},
		{"rate limit", "application/grpc", RateLimited, "8", "application/grpc"},
		{"concurrency limit", "application/grpc", ConcurrencyLimited, "8", "application/grpc"},
		{"body limit", "application/grpc", BodyTooLarge, "8", "application/grpc"},
		{"bad response", "application/grpc", UpstreamProtocol, "13", "application/grpc"},
		{"gRPC-Web", "application/grpc-web+proto", RateLimited, "8", "application/grpc-web+proto"},
		{"gRPC-Web text", "application/grpc-web-text", NoRoute, "12", "application/grpc-web-text+proto"},
		{"unknown kind", "application/grpc", Code("something_new"), "2", "application/grpc"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x, rec := newExchange(t, "POST")
			x.Req.Header.Add("Content-Type", tc.contentType)
			Fail(x, tc.code)
			if len(rec.Statuses) != 1 || rec.Statuses[0] != 200 || len(rec.Body) != 0 {
				t.Fatalf("statuses %v, body %q; want one 200 and no body", rec.Statuses, rec.Body)
			}
			for name, want := range map[string]string{"Grpc-Status": tc.wantStatus, "Grpc-Message": string(tc.code), "Content-Type": tc.wantCT} {
				if got := headerValues(&rec.Hdr, name); len(got) != 1 || got[0] != want {
					t.Errorf("%s = %q, want %q", name, got, want)
				}
			}
			if code, ok := x.State.GRPCStatus(); !ok || grpccall.StatusString(code) != tc.wantStatus {
				t.Errorf("recorded grpc status %d %v, want %s", code, ok, tc.wantStatus)
			}
			if x.State.ErrorKind != string(tc.code) || x.State.Status != 200 {
				t.Errorf("state: error kind %q, status %d", x.State.ErrorKind, x.State.Status)
			}
		})
	}
	t.Run("a GET is never a gRPC call", func(t *testing.T) {
		x, rec := newExchange(t, "GET")
		x.Req.Header.Add("Content-Type", "application/grpc")
		Fail(x, NoRoute)
		if rec.Statuses[0] != 404 {
			t.Errorf("status %d, want 404", rec.Statuses[0])
		}
	})
}
