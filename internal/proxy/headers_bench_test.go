package proxy

import (
	"testing"

	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/tracecontext"
)

// BenchmarkOutgoingHeader builds the upstream request header of a typical
// API call, trace headers included, into a warm header: 0 allocs/op is the
// goal (the native HTTP/1.1 path then allocates nothing for the header).
func BenchmarkOutgoingHeader(b *testing.B) {
	tests := []struct {
		name    string
		trusted bool
		fields  []field
	}{
		{name: "untrusted client", fields: []field{
			{"Accept", "application/json"}, {"User-Agent", "curl/8.5"}, {"Content-Type", "application/json"},
			{"Authorization", "Bearer abc"}, {"X-Request-Id", "0b410d6da1b7b084d5d32e3de1d4a5af"},
			{"Connection", "keep-alive"}, {"X-Forwarded-For", "10.0.0.1"},
		}},
		{name: "trusted proxy", trusted: true, fields: []field{
			{"Accept", "application/json"}, {"X-Forwarded-For", "203.0.113.7"}, {"Forwarded", "for=203.0.113.7;proto=https"},
			{"X-Forwarded-Proto", "https"},
		}},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			x := clientExchange(b, exchange.HTTP11, "192.0.2.10:50000", "api.example.com", tt.fields...)
			x.State.Trace = tracecontext.Context{}
			var out exchange.Header
			b.ReportAllocs()
			for b.Loop() {
				outgoingHeader(x, &out, tt.trusted, "")
				setTraceHeaders(&out, &x.State.Trace, [8]byte{1, 2, 3, 4, 5, 6, 7, 8})
			}
		})
	}
}
