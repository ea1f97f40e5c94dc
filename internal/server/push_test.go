package server_test

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestServerPushWithNghttp checks HTTP/2 server push on the wire with
// nghttp, a client that still accepts push: PUSH_PROMISE frames for the
// route's early_hints targets when push is enabled, bounded by
// max_resources, none when it is off, and a pushed response over max_bytes
// is reset rather than sent whole. The main response completes in every
// case.
// mainEnded matches the DATA frame that ends nghttp's first stream.
var mainEnded = regexp.MustCompile(`recv DATA frame <length=\d+, flags=0x01, stream_id=13>`)

func TestServerPushWithNghttp(t *testing.T) {
	nghttp, err := exec.LookPath("nghttp")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("nghttp is required (scripts/test installs nghttp2-client)")
		}
		t.Skip("nghttp not installed (scripts/test installs nghttp2-client)")
	}
	up := newAssetUpstream(t) // 8 KiB assets
	tests := []struct {
		name         string
		push         string
		args         []string
		wantPromises int
		wantResets   int
	}{
		{"off by default", "", nil, 0, 0},
		{"enabled pushes every target", "push: {enabled: true}", nil, 2, 0},
		{"max_resources bounds the promises", "push: {enabled: true, max_resources: 1}", nil, 1, 0},
		{"a pushed response over max_bytes is reset", "push: {enabled: true, max_bytes: 4KiB}", nil, 2, 2},
		// The bound travels in a request field; on a request that was not
		// pushed it must do nothing.
		{"a client cannot impose the push bound", "", []string{"-H", "penstock-push-max-bytes: 10"}, 0, 0},
		{"a client that disables push gets none", "push: {enabled: true}", []string{"--no-push"}, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := startGateway(t, lines(`listeners: [{name: tls, address: "127.0.0.1:0", tls: {self_signed: true}}]
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes:
  - name: predict
    match: {path: "/v1/models/:model/predict"}
    upstream: up
    early_hints:
      - "</v1/models/:model/assets/model_config.json?cc=max-age%%3D60>; rel=preload; as=fetch"
      - "</v1/models/:model/assets/tokenizer.bin?cc=max-age%%3D60>; rel=preload; as=fetch"
    %s
  - name: assets
    match: {path: "/v1/models/:model/assets/:file", methods: [GET, HEAD]}
    upstream: up
`, up.addr, tt.push))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, nghttp, append([]string{"-nv", "-y", baseURL(g, "tls") + "/v1/models/resnet50/predict"}, tt.args...)...).CombinedOutput()
			if err != nil {
				t.Fatalf("nghttp: %v\n%s", err, out)
			}
			text := string(out)
			if os.Getenv("PUSHDEBUG") != "" {
				t.Log(text)
			}
			if got := strings.Count(text, "recv PUSH_PROMISE frame"); got != tt.wantPromises {
				t.Errorf("%d PUSH_PROMISE frames, want %d\n%s", got, tt.wantPromises, text)
			}
			if got := strings.Count(text, "recv RST_STREAM frame"); got != tt.wantResets {
				t.Errorf("%d RST_STREAM frames, want %d\n%s", got, tt.wantResets, text)
			}
			// The main response (stream 13, nghttp's first request) ends
			// normally: its whole body, then END_STREAM.
			if !strings.Contains(text, "recv (stream_id=13) :status: 200") ||
				!mainEnded.MatchString(text) {
				t.Errorf("the main response did not complete\n%s", text)
			}
		})
	}
}
