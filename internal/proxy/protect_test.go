package proxy

import (
	"testing"

	"github.com/penstock-dev/penstock/internal/upstream"
)

// A 5xx response is a failure for the breakers and outlier detection, but
// passive health (the outcome table's down) counts only failures to
// connect.
func TestProtectResult(t *testing.T) {
	tests := []struct {
		name     string
		o        outcome
		status   int
		want     upstream.Result
		wantDown bool
	}{
		{"200", outcomeOK, 200, upstream.ResultOK, false},
		{"404 is the client's", outcomeOK, 404, upstream.ResultOK, false},
		{"101 switching protocols", outcomeOK, 101, upstream.ResultOK, false},
		{"500", outcomeOK, 500, upstream.Result5xx, false},
		{"503", outcomeOK, 503, upstream.Result5xx, false},
		{"connect refused", outcomeConnect, 0, upstream.ResultGatewayFailure, true},
		{"connect timeout", outcomeConnectTimeout, 0, upstream.ResultGatewayFailure, true},
		{"response timeout", outcomeTimeout, 0, upstream.ResultGatewayFailure, false},
		{"reset or malformed", outcomeFailed, 0, upstream.ResultGatewayFailure, false},
		{"truncated body", outcomeTruncated, 200, upstream.ResultGatewayFailure, false},
		{"client body", outcomeClientBody, 0, upstream.ResultNone, false},
		{"client gone", outcomeCanceled, 0, upstream.ResultNone, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := protectResult(tt.o, tt.status); got != tt.want {
				t.Errorf("protectResult = %d, want %d", got, tt.want)
			}
			if down := tt.o.rule().down; down != tt.wantDown {
				t.Errorf("passive health down = %v, want %v", down, tt.wantDown)
			}
		})
	}
}
