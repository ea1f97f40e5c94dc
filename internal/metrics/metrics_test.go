package metrics

import (
	"crypto/tls"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/penstock-dev/penstock/internal/config"
)

func newMetrics(t testing.TB, cfg config.Metrics) (*Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	return New(cfg, reg), reg
}

// findMetric gathers reg and returns the sample of family name whose labels
// are exactly labels, or nil.
func findMetric(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; !ok || v != lp.GetValue() {
					continue metrics
				}
			}
			return m
		}
	}
	return nil
}

func histogram(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) (count uint64, sum float64) {
	t.Helper()
	m := findMetric(t, reg, name, labels)
	if m == nil {
		t.Fatalf("%s%v: no such series", name, labels)
	}
	return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
}

func TestRouteDoneCountsByMethodAndStatusClass(t *testing.T) {
	m, reg := newMetrics(t, config.Metrics{})
	r := m.Route("chat", "")
	for range 7 {
		r.Start()
		r.Done("GET", 200, 10*time.Millisecond, 0, 1000, nil, false)
	}
	for range 3 {
		r.Start()
		r.Done("POST", 503, 2*time.Second, 4096, 50, nil, false)
	}
	r.Start()
	r.Done("BREW", 418, time.Millisecond, 0, 0, nil, false)

	tests := []struct {
		name         string
		method       string
		class        string
		count        uint64
		durationSum  float64
		reqBytesSum  float64
		respBytesSum float64
	}{
		{"7 GETs 200", "GET", "2xx", 7, 0.07, 0, 7000},
		{"3 POSTs 503", "POST", "5xx", 3, 6, 3 * 4096, 150},
		{"unknown method is _OTHER", "_OTHER", "4xx", 1, 0.001, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			labels := map[string]string{"route": "chat", "method": tt.method, "status_class": tt.class}
			for _, h := range []struct {
				name string
				sum  float64
			}{
				{"penstock_http_server_request_duration_seconds", tt.durationSum},
				{"penstock_http_server_request_body_size_bytes", tt.reqBytesSum},
				{"penstock_http_server_response_body_size_bytes", tt.respBytesSum},
			} {
				count, sum := histogram(t, reg, h.name, labels)
				if count != tt.count {
					t.Errorf("%s count = %d, want %d", h.name, count, tt.count)
				}
				if diff := sum - h.sum; diff > 1e-9 || diff < -1e-9 {
					t.Errorf("%s sum = %g, want %g", h.name, sum, h.sum)
				}
			}
		})
	}

	// Only the combinations served exist: 3 series per histogram.
	if n := testutil.CollectAndCount(m.reqDuration); n != 3 {
		t.Errorf("duration series = %d, want 3", n)
	}
	if got := findMetric(t, reg, "penstock_http_server_request_duration_seconds",
		map[string]string{"route": "chat", "method": "BREW", "status_class": "4xx"}); got != nil {
		t.Errorf("unknown method got its own series")
	}
}

func TestStatusClass(t *testing.T) {
	tests := []struct {
		name   string
		status int
		want   string
	}{
		{"informational", 101, "1xx"},
		{"ok", 200, "2xx"},
		{"redirect", 308, "3xx"},
		{"client error", 404, "4xx"},
		{"server error", 599, "5xx"},
		{"zero is invalid: server error", 0, "5xx"},
		{"above 599 is invalid: server error", 600, "5xx"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := statusClasses[statusClassIndex(tt.status)]; got != tt.want {
				t.Errorf("status %d: class %q, want %q", tt.status, got, tt.want)
			}
		})
	}
}

func TestMethodLabel(t *testing.T) {
	tests := []struct{ method, want string }{
		{"GET", "GET"}, {"HEAD", "HEAD"}, {"POST", "POST"}, {"PUT", "PUT"},
		{"DELETE", "DELETE"}, {"PATCH", "PATCH"}, {"OPTIONS", "OPTIONS"},
		{"CONNECT", "_OTHER"}, {"get", "_OTHER"}, {"", "_OTHER"},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			if got := methods[methodIndex(tt.method)]; got != tt.want {
				t.Errorf("method %q: label %q, want %q", tt.method, got, tt.want)
			}
		})
	}
}

func TestActiveRequestsGoUpAndDown(t *testing.T) {
	m, _ := newMetrics(t, config.Metrics{})
	r := m.Route("chat", "")
	active := m.active.WithLabelValues("chat")
	for range 3 {
		r.Start()
	}
	if got := testutil.ToFloat64(active); got != 3 {
		t.Fatalf("active after 3 Start = %g, want 3", got)
	}
	for range 3 {
		r.Done("GET", 200, time.Millisecond, 0, 0, nil, false)
	}
	if got := testutil.ToFloat64(active); got != 0 {
		t.Fatalf("active after 3 Done = %g, want 0", got)
	}
}

func TestRouteHandlesAreCached(t *testing.T) {
	t.Run("same name, host ignored without per_host", func(t *testing.T) {
		m, _ := newMetrics(t, config.Metrics{})
		a := m.Route("chat", "a.example.com")
		if b := m.Route("chat", "b.example.com"); a != b {
			t.Errorf("Route(chat) returned two handles")
		}
		if c := m.Route("embed", ""); a == c {
			t.Errorf("two routes share a handle")
		}
	})
	t.Run("per_host: one handle per host pattern", func(t *testing.T) {
		m, reg := newMetrics(t, config.Metrics{PerHost: true})
		a := m.Route("chat", "a.example.com")
		if b := m.Route("chat", "a.example.com"); a != b {
			t.Errorf("Route(chat, a.example.com) returned two handles")
		}
		b := m.Route("chat", "b.example.com")
		if a == b {
			t.Fatalf("two host patterns share a handle")
		}
		a.Start()
		a.Done("GET", 200, time.Millisecond, 0, 0, nil, false)
		m.Route("chat", "").Start()
		m.Route("chat", "").Done("GET", 200, time.Millisecond, 0, 0, nil, false)
		for _, host := range []string{"a.example.com", "*"} {
			labels := map[string]string{"route": "chat", "host": host, "method": "GET", "status_class": "2xx"}
			if count, _ := histogram(t, reg, "penstock_http_server_request_duration_seconds", labels); count != 1 {
				t.Errorf("host %q: count %d, want 1", host, count)
			}
		}
	})
	t.Run("concurrent first use", func(t *testing.T) {
		m, reg := newMetrics(t, config.Metrics{})
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				r := m.Route("chat", "")
				r.Start()
				r.Done("PUT", 201, time.Millisecond, 1, 1, nil, false)
			})
		}
		wg.Wait()
		labels := map[string]string{"route": "chat", "method": "PUT", "status_class": "2xx"}
		if count, _ := histogram(t, reg, "penstock_http_server_request_duration_seconds", labels); count != 8 {
			t.Errorf("count %d, want 8", count)
		}
	})
}

func TestUnmatchedRouteIsNone(t *testing.T) {
	m, reg := newMetrics(t, config.Metrics{})
	r := m.Route("", "")
	r.Start()
	r.Done("GET", 404, time.Millisecond, 0, 9, nil, false)
	r.TraceContextMissing()
	labels := map[string]string{"route": "none", "method": "GET", "status_class": "4xx"}
	if count, _ := histogram(t, reg, "penstock_http_server_request_duration_seconds", labels); count != 1 {
		t.Errorf("count %d, want 1", count)
	}
	if got := testutil.ToFloat64(m.traceMissing.WithLabelValues("none")); got != 1 {
		t.Errorf("trace_context_missing{route=none} = %g, want 1", got)
	}
}

func TestTraceContextMissing(t *testing.T) {
	m, _ := newMetrics(t, config.Metrics{})
	r := m.Route("chat", "")
	if got := testutil.ToFloat64(m.traceMissing.WithLabelValues("chat")); got != 0 {
		t.Fatalf("before: %g, want 0 (series exists from Route on)", got)
	}
	r.TraceContextMissing()
	r.TraceContextMissing()
	if got := testutil.ToFloat64(m.traceMissing.WithLabelValues("chat")); got != 2 {
		t.Errorf("after 2: %g, want 2", got)
	}
}

func scrapeOpenMetrics(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL, nil)
	req.Header.Set("Accept", "application/openmetrics-text")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/openmetrics-text") {
		t.Fatalf("Content-Type %q, want OpenMetrics", ct)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

func TestExemplarOnSampledRequest(t *testing.T) {
	m, reg := newMetrics(t, config.Metrics{})
	sampledID := [16]byte{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	unsampledID := [16]byte{0: 1, 15: 2}
	r := m.Route("chat", "")
	r.Start()
	r.Done("GET", 200, 30*time.Millisecond, 0, 0, &sampledID, true)
	r.Start()
	r.Done("POST", 200, 30*time.Millisecond, 0, 0, &unsampledID, false)

	body := scrapeOpenMetrics(t, reg)
	want := `# {trace_id="` + hex.EncodeToString(sampledID[:]) + `"} 0.03`
	if !strings.Contains(body, want) {
		t.Errorf("scrape lacks exemplar %q:\n%s", want, body)
	}
	if unsampled := hex.EncodeToString(unsampledID[:]); strings.Contains(body, unsampled) {
		t.Errorf("scrape has an exemplar for the unsampled trace %s", unsampled)
	}
}

func TestUpstreamAttempts(t *testing.T) {
	m, reg := newMetrics(t, config.Metrics{})
	u := m.Upstream("llm", "10.0.0.1:8000")
	if m.Upstream("llm", "10.0.0.1:8000") != u {
		t.Errorf("Upstream returned two handles for one endpoint")
	}
	u.Attempt(20*time.Millisecond, "ok")
	u.Attempt(20*time.Millisecond, "ok")
	u.Attempt(time.Second, "timeout")
	u.Attempt(time.Millisecond, "connect_error")
	u.Attempt(time.Millisecond, "truncated")
	u.Attempt(time.Millisecond, "reset by peer") // recorded as error

	tests := []struct {
		outcome string
		want    float64
	}{
		{"ok", 2}, {"timeout", 1}, {"connect_error", 1}, {"truncated", 1}, {"error", 1},
	}
	for _, tt := range tests {
		t.Run(tt.outcome, func(t *testing.T) {
			if got := testutil.ToFloat64(m.upAttempts.WithLabelValues("llm", "10.0.0.1:8000", tt.outcome)); got != tt.want {
				t.Errorf("attempts = %g, want %g", got, tt.want)
			}
			labels := map[string]string{"upstream": "llm", "endpoint": "10.0.0.1:8000", "outcome": tt.outcome}
			if count, _ := histogram(t, reg, "penstock_upstream_request_duration_seconds", labels); float64(count) != tt.want {
				t.Errorf("duration count = %d, want %g", count, tt.want)
			}
		})
	}
	if n := testutil.CollectAndCount(m.upAttempts); n != len(outcomes) {
		t.Errorf("attempt series = %d, want %d (one per outcome)", n, len(outcomes))
	}
}

func TestConnectionsAndHandshakes(t *testing.T) {
	m, _ := newMetrics(t, config.Metrics{})
	m.ConnOpened("public", "HTTP/1.1")
	m.ConnOpened("public", "HTTP/1.1")
	m.ConnOpened("public", "HTTP/2.0")
	m.ConnClosed("public", "HTTP/1.1")
	if got := testutil.ToFloat64(m.connsOpen.WithLabelValues("public", "HTTP/1.1")); got != 1 {
		t.Errorf("HTTP/1.1 open = %g, want 1", got)
	}
	if got := testutil.ToFloat64(m.connsOpen.WithLabelValues("public", "HTTP/2.0")); got != 1 {
		t.Errorf("HTTP/2.0 open = %g, want 1", got)
	}

	m.TLSHandshake("public", tls.VersionTLS13, false)
	m.TLSHandshake("public", tls.VersionTLS13, true)
	m.TLSHandshake("public", tls.VersionTLS13, true)
	m.TLSHandshake("public", tls.VersionTLS12, false)
	tests := []struct {
		version, resumed string
		want             float64
	}{
		{"1.3", "false", 1}, {"1.3", "true", 2}, {"1.2", "false", 1},
	}
	for _, tt := range tests {
		if got := testutil.ToFloat64(m.tlsHandshakes.WithLabelValues("public", tt.version, tt.resumed)); got != tt.want {
			t.Errorf("handshakes{version=%s,resumed=%s} = %g, want %g", tt.version, tt.resumed, got, tt.want)
		}
	}
}

func TestNilRegistererStillCounts(t *testing.T) {
	m := New(config.Metrics{}, nil)
	r := m.Route("chat", "")
	r.Start()
	if got := testutil.ToFloat64(m.active.WithLabelValues("chat")); got != 1 {
		t.Errorf("active = %g, want 1", got)
	}
	r.Done("GET", 200, time.Millisecond, 0, 0, nil, false)
	m.Upstream("llm", "a:1").Attempt(time.Millisecond, "ok")
	m.ConnOpened("l", "h2c")
	m.TLSHandshake("l", tls.VersionTLS13, false)
}

func TestDurationBucketsFromConfig(t *testing.T) {
	buckets := []float64{0.1, 1, 10}
	m, reg := newMetrics(t, config.Metrics{DurationBuckets: buckets})
	m.Route("chat", "").Done("GET", 200, 500*time.Millisecond, 0, 0, nil, false)
	m.Upstream("llm", "a:1").Attempt(500*time.Millisecond, "ok")
	for _, tt := range []struct {
		name   string
		labels map[string]string
	}{
		{"penstock_http_server_request_duration_seconds", map[string]string{"route": "chat", "method": "GET", "status_class": "2xx"}},
		{"penstock_upstream_request_duration_seconds", map[string]string{"upstream": "llm", "endpoint": "a:1", "outcome": "ok"}},
	} {
		mt := findMetric(t, reg, tt.name, tt.labels)
		if mt == nil {
			t.Fatalf("%s: no series", tt.name)
		}
		var got []float64
		for _, b := range mt.GetHistogram().GetBucket() {
			got = append(got, b.GetUpperBound())
		}
		if len(got) != len(buckets) || got[0] != 0.1 || got[1] != 1 || got[2] != 10 {
			t.Errorf("%s buckets = %v, want %v", tt.name, got, buckets)
		}
	}
}
