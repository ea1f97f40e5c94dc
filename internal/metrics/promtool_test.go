package metrics

import (
	"bytes"
	"crypto/tls"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/penstock-dev/penstock/internal/config"
)

// TestPromtoolCheckMetrics lints a scrape taken after traffic with
// `promtool check metrics`, which checks names, units, types and help text
// against Prometheus' conventions.
func TestPromtoolCheckMetrics(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		const msg = "promtool is required (scripts/test installs it)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}

	for _, perHost := range []bool{false, true} {
		name := "per_host=false"
		if perHost {
			name = "per_host=true"
		}
		t.Run(name, func(t *testing.T) {
			m, reg := newMetrics(t, config.Metrics{PerHost: perHost})
			traceID := [16]byte{0: 0xab, 15: 0xcd}
			r := m.Route("chat", "api.example.com")
			r.Start()
			r.Done("POST", 200, 80*time.Millisecond, 2048, 65536, &traceID, true)
			r.Start()
			r.Done("GET", 404, time.Millisecond, 0, 20, nil, false)
			r.TraceContextMissing()
			none := m.Route("", "")
			none.Start()
			none.Done("PROPFIND", 404, time.Millisecond, 0, 0, nil, false)
			m.Upstream("llm", "10.0.0.1:8000").Attempt(70*time.Millisecond, "ok")
			m.ConnOpened("public", "HTTP/2.0")
			m.TLSHandshake("public", tls.VersionTLS13, false)

			rec := httptest.NewRecorder()
			promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
			scrape := rec.Body.String()
			if !strings.Contains(scrape, "penstock_tls_handshakes_total") {
				t.Fatalf("scrape is missing metrics:\n%s", scrape)
			}

			cmd := exec.Command(promtool, "check", "metrics")
			cmd.Stdin = strings.NewReader(scrape)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Run(); err != nil || out.Len() > 0 {
				t.Errorf("promtool check metrics: %v\n%s\nscrape:\n%s", err, out.String(), scrape)
			}
		})
	}
}
