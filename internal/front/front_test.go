package front

import "testing"

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
