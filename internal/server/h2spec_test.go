package server_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// h2specSummary is h2spec's last line: "145 tests, 145 passed, 0 skipped,
// 0 failed".
var h2specSummary = regexp.MustCompile(`(\d+) tests, (\d+) passed, (\d+) skipped, (\d+) failed`)

// h2specTests is the number of test cases of h2spec 2.2.1 (its "http2",
// "hpack" and "generic" sections).
const h2specTests = 145

// TestH2Spec runs h2spec (github.com/summerwind/h2spec, the HTTP/2
// conformance suite) against a TLS listener (ALPN h2) and a plain one (h2c
// with prior knowledge): every one of its 145 cases must pass on both. The
// plain listener serves h2c only: where it serves HTTP/1.1 too, h2spec's
// invalid preface ("INVALID CONNECTION PREFACE") is an HTTP/1.1 request
// line, rightly answered 400 before the close h2spec waits for.
// scripts/test installs h2spec from the Go module proxy.
func TestH2Spec(t *testing.T) {
	bin := os.Getenv("H2SPEC")
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("h2spec"); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatal("h2spec is required (scripts/test installs it: go install github.com/summerwind/h2spec/cmd/h2spec@v2.2.1+incompatible)")
			}
			t.Skip("h2spec not installed (go install github.com/summerwind/h2spec/cmd/h2spec@v2.2.1+incompatible)")
		}
	}
	up := newRecorder(t, "spec")
	g := startGateway(t, lines(`listeners:
  - {name: tls, address: "127.0.0.1:0", protocols: [h1, h2], tls: {self_signed: true}}
  - {name: plain, address: "127.0.0.1:0", protocols: [h2c]}
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes: [{name: all, match: {path_prefix: /}, upstream: up}]
`, up.addr()))
	for _, tc := range []struct {
		listener string
		args     []string
	}{
		{"tls", []string{"-t", "-k"}},
		{"plain", nil},
	} {
		t.Run(tc.listener, func(t *testing.T) {
			t.Parallel()
			addr := g.Addr(tc.listener)
			_, port, _ := net.SplitHostPort(addr.String())
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			args := append([]string{"-h", "127.0.0.1", "-p", port, "-o", strconv.Itoa(2 * slowdown)}, tc.args...)
			out, _ := exec.CommandContext(ctx, bin, args...).CombinedOutput()
			m := h2specSummary.FindSubmatch(out)
			if m == nil {
				t.Fatalf("no h2spec summary in its output:\n%s", out)
			}
			total, _ := strconv.Atoi(string(m[1]))
			passed, _ := strconv.Atoi(string(m[2]))
			t.Logf("h2spec on %s: %s", tc.listener, m[0])
			if total != h2specTests || passed != h2specTests {
				t.Errorf("h2spec on %s: %s, want %d of %d passed\n%s", tc.listener, m[0], h2specTests, h2specTests, out)
			}
		})
	}
}
