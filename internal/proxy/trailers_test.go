package proxy

import (
	"testing"
	"time"
)

func TestTrailerAllowed(t *testing.T) {
	for name, want := range map[string]bool{
		"Grpc-Status": true, "grpc-message": true, "X-Checksum": true, "Server-Timing": true,
		"Content-Length": false, "content-type": false, "Transfer-Encoding": false, "Host": false,
		"Trailer": false, "Connection": false, "Authorization": false, "Set-Cookie": false,
	} {
		if got := trailerAllowed(name); got != want {
			t.Errorf("trailerAllowed(%q) = %v, want %v", name, got, want)
		}
	}
}

// TestAppendTimeout checks the grpc-timeout penstock sends upstream: at
// most 8 digits, the finest unit that fits, never rounded down to less
// time than is left.
func TestAppendTimeout(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "0n"},
		{1500 * time.Microsecond, "1500000n"},
		{99*time.Millisecond + 1, "99000001n"},
		{199*time.Millisecond + 1, "199001u"},
		{1999*time.Millisecond + 1, "1999001u"},
		{99 * time.Second, "99000000u"},
		{100 * time.Second, "100000m"},
		{1<<63 - 1, "2562048H"},
	}
	for _, tc := range tests {
		if got := string(appendTimeout(nil, tc.d)); got != tc.want {
			t.Errorf("appendTimeout(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}
