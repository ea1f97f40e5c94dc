package proxy

import (
	"bufio"
	"bytes"
	"net/http"
	"slices"
	"strings"
	"testing"
)

func TestWriteSwitchingProtocols(t *testing.T) {
	tests := []struct {
		name      string
		header    http.Header
		requestID string
		want      http.Header
	}{
		{
			name: "upstream's fields relayed, Connection and Upgrade rewritten once, request id added",
			header: http.Header{
				"Connection":           {"Upgrade, keep-alive"},
				"Upgrade":              {"websocket"},
				"Sec-Websocket-Accept": {"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="},
			},
			requestID: "rid-1",
			want: http.Header{
				"Connection":           {"Upgrade"},
				"Upgrade":              {"websocket"},
				"Sec-Websocket-Accept": {"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="},
				"X-Request-Id":         {"rid-1"},
			},
		},
		{
			name: "upstream's own request id wins",
			header: http.Header{
				"Connection":   {"Upgrade"},
				"Upgrade":      {"websocket"},
				"X-Request-Id": {"from-upstream"},
			},
			requestID: "rid-1",
			want: http.Header{
				"Connection":   {"Upgrade"},
				"Upgrade":      {"websocket"},
				"X-Request-Id": {"from-upstream"},
			},
		},
		{
			name:   "no request id",
			header: http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}},
			want:   http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := writeSwitchingProtocols(bufio.NewWriter(&out), tt.header, tt.requestID); err != nil {
				t.Fatalf("writeSwitchingProtocols: %v", err)
			}
			raw := out.String()
			if !strings.HasPrefix(raw, "HTTP/1.1 101 Switching Protocols\r\n") || !strings.HasSuffix(raw, "\r\n\r\n") {
				t.Fatalf("not a 101 response head: %q", raw)
			}
			// Read it back the way a client would.
			got, err := http.ReadResponse(bufio.NewReader(strings.NewReader(raw)), nil)
			if err != nil {
				t.Fatalf("client cannot parse the response: %v", err)
			}
			if got.StatusCode != 101 {
				t.Errorf("status = %d, want 101", got.StatusCode)
			}
			for name, want := range tt.want {
				if !slices.Equal(got.Header[name], want) {
					t.Errorf("%s = %q, want %q", name, got.Header[name], want)
				}
			}
			if len(got.Header) != len(tt.want) {
				t.Errorf("response has fields %q, want exactly %q", got.Header, tt.want)
			}
		})
	}
}
