package front

import (
	"net/netip"
	"testing"

	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/listener"
)

// TestRoutablePath specifies which request targets reach the router: paths
// an upstream could read differently from the router are refused.
func TestRoutablePath(t *testing.T) {
	tests := []struct {
		name string
		path string
		want bool
	}{
		{"root", "/", true},
		{"plain path", "/v1/models/resnet50/predict", true},
		{"dots inside a segment", "/v1/model..v2/a.b", true},
		{"three dots", "/a/.../b", true},
		{"empty", "", false},
		{"no leading slash", "v1/models", false},
		{"asterisk form", "*", false},
		{"dot-dot segment", "/static/../submit", false},
		{"dot segment", "/static/./x", false},
		{"trailing dot-dot", "/static/..", false},
		{"percent-encoded dot-dot", "/static/%2e%2E/submit", false},
		{"half-encoded dot-dot", "/static/.%2e/submit", false},
		{"NUL byte", "/a\x00b", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := routablePath(tc.path); got != tc.want {
				t.Errorf("routablePath(%q) = %v, want %v", tc.path, got, tc.want)
			}
		})
	}
}

func TestForwardedClient(t *testing.T) {
	trusted, err := listener.ParseTrusted([]string{"10.0.0.0/8", "192.0.2.1"})
	if err != nil {
		t.Fatal(err)
	}
	peer := netip.MustParseAddr("10.0.0.1")
	tests := []struct {
		name string
		xff  []string
		want string
	}{
		{"no header: the peer", nil, "10.0.0.1"},
		{"one address", []string{"198.51.100.1"}, "198.51.100.1"},
		{"the last address the trusted proxy appended", []string{"203.0.113.9, 198.51.100.1"}, "198.51.100.1"},
		{"the last of several fields", []string{"203.0.113.9", "198.51.100.2"}, "198.51.100.2"},
		{"trusted proxies on the right are skipped", []string{"203.0.113.9, 198.51.100.3, 10.1.2.3, 192.0.2.1"}, "198.51.100.3"},
		{"every address trusted: the leftmost", []string{"10.9.9.9, 10.1.2.3"}, "10.9.9.9"},
		{"garbage is skipped", []string{"198.51.100.4, unknown"}, "198.51.100.4"},
		{"only garbage: the peer", []string{"unknown, _hidden"}, "10.0.0.1"},
		{"an IPv4-mapped address is the IPv4 one", []string{"::ffff:198.51.100.5"}, "198.51.100.5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h exchange.Header
			for _, v := range tt.xff {
				h.Add("X-Forwarded-For", v)
			}
			if got := forwardedClient(trusted, &h, peer); got != netip.MustParseAddr(tt.want) {
				t.Errorf("client %s, want %s", got, tt.want)
			}
		})
	}
}
