package probe

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// needTool finds a program the tests drive; scripts/test installs it, so
// CI fails without it and a developer's run skips.
func needTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required (scripts/test installs it)", name)
		}
		t.Skipf("%s not installed (scripts/test installs it)", name)
	}
	return path
}

// compatServers starts one server of each kind and returns the modules
// file and the (module, target) pairs to probe, passing and failing.
func compatServers(t *testing.T) (string, [][2]string) {
	pk := newPKI(t)
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "all good") })
	mux.HandleFunc("/down", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", 503) })
	plain := startTCPServer(t, mux)
	good := startHTTPS(t, mux, pk.good(t), nil)
	expired := startHTTPS(t, mux, pk.cert(t, []string{"127.0.0.1"}, time.Now().Add(-72*time.Hour), time.Now().Add(-24*time.Hour), false), nil)
	echoAddr := startTCP(t, echo)
	dnsAddr := startDNS(t)
	grpcAddr := startGRPC(t, nil)
	closed := closedPort(t)
	yml := fmt.Sprintf(`modules:
  http_2xx:
    prober: http
    timeout: 3s
    http:
      preferred_ip_protocol: ip4
      tls_config:
        ca_file: %[1]s
  http_body:
    prober: http
    timeout: 3s
    http:
      valid_status_codes: [200]
      fail_if_body_not_matches_regexp: ["good"]
  tcp_echo:
    prober: tcp
    timeout: 2s
    tcp:
      query_response:
        - send: "PING"
        - expect: "^PING$"
  tcp_tls:
    prober: tcp
    timeout: 2s
    tcp:
      tls: true
      tls_config: {ca_file: %[1]s}
  dns_a:
    prober: dns
    timeout: 2s
    dns:
      query_name: probe.test
      query_type: A
      validate_answer_rrs:
        fail_if_none_matches_regexp: ['192\.0\.2\.10']
  dns_tcp:
    prober: dns
    timeout: 2s
    dns: {query_name: probe.test, query_type: SOA, transport_protocol: tcp}
  grpc:
    prober: grpc
    timeout: 2s
    grpc: {service: ok, preferred_ip_protocol: ip4}
  icmp:
    prober: icmp
    timeout: 2s
    icmp: {preferred_ip_protocol: ip4}
`, pk.caFile)
	file := filepath.Join(t.TempDir(), "blackbox.yml")
	if err := os.WriteFile(file, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	return file, [][2]string{
		{"http_2xx", plain + "/ok"}, {"http_2xx", plain + "/down"}, {"http_2xx", good.URL + "/ok"},
		{"http_2xx", expired.URL + "/ok"}, {"http_2xx", "http://" + closed + "/"},
		{"http_body", plain + "/ok"}, {"http_body", plain + "/down"},
		{"tcp_echo", echoAddr}, {"tcp_echo", closed}, {"tcp_tls", strings.TrimPrefix(good.URL, "https://")},
		{"tcp_tls", strings.TrimPrefix(expired.URL, "https://")},
		{"dns_a", dnsAddr}, {"dns_tcp", dnsAddr}, {"grpc", grpcAddr}, {"grpc", closed},
		{"icmp", "127.0.0.1"},
	}
}

// TestCompatibleWithBlackboxExporter probes the same targets with the same
// blackbox.yml through penstock's exporter and through blackbox_exporter
// (Debian's prometheus-blackbox-exporter, started here): probe_success
// agrees, and every metric blackbox_exporter gives, penstock gives with
// the same labels (issue 18, acceptance 2).
func TestCompatibleWithBlackboxExporter(t *testing.T) {
	bin := needTool(t, "prometheus-blackbox-exporter")
	file, pairs := compatServers(t)
	mods, err := LoadModulesFile(file)
	if err != nil {
		t.Fatal(err)
	}
	ours := httptest.NewServer(NewExporter(mods, nil))
	defer ours.Close()
	theirs := startBlackbox(t, bin, file)

	passed := 0
	for _, p := range pairs {
		t.Run(p[0]+" "+p[1], func(t *testing.T) {
			a := scrape(t, ours.URL, p[0], p[1])
			b := scrape(t, theirs, p[0], p[1])
			if sa, sb := value(a, "probe_success"), value(b, "probe_success"); sa != sb {
				t.Fatalf("probe_success: penstock %v, blackbox_exporter %v", sa, sb)
			}
			if len(b) < 5 {
				t.Fatalf("blackbox_exporter gave only %d metrics", len(b))
			}
			if value(a, "probe_success") == 1 {
				passed++
			}
			for name, fb := range b {
				fa, ok := a[name]
				if !ok {
					t.Errorf("penstock lacks %s", name)
					continue
				}
				if la, lb := labelSets(fa), labelSets(fb); la != lb {
					t.Errorf("%s: labels %s, blackbox_exporter %s", name, la, lb)
				}
			}
		})
	}
	// Both kinds of answer were compared: the passing and the failing.
	if passed < 8 || passed > len(pairs)-5 {
		t.Errorf("%d of %d probes passed; the set should hold both", passed, len(pairs))
	}
}

// TestExporterPassesPromtool lints every module's scrape with promtool.
func TestExporterPassesPromtool(t *testing.T) {
	promtool := needTool(t, "promtool")
	file, pairs := compatServers(t)
	mods, err := LoadModulesFile(file)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(NewExporter(mods, nil))
	defer srv.Close()
	for _, p := range pairs {
		resp, err := http.Get(srv.URL + "/probe?module=" + p[0] + "&target=" + url.QueryEscape(p[1]))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = strings.NewReader(string(body))
		out, err := cmd.CombinedOutput()
		if err != nil || len(strings.TrimSpace(string(out))) > 0 {
			t.Errorf("%s %s: promtool check metrics: %v\n%s", p[0], p[1], err, out)
		}
	}
}

func TestExporterRequests(t *testing.T) {
	srv := httptest.NewServer(NewExporter(modules(t, "modules:\n  tcp:\n    prober: tcp\n"), nil))
	defer srv.Close()
	for _, c := range []struct {
		name, query string
		status      int
		body        string
	}{
		{"no target", "module=tcp", 400, "Target parameter is missing"},
		{"unknown module", "module=nope&target=127.0.0.1:1", 400, `Unknown module "nope"`},
		{"probe", "module=tcp&target=" + closedPort(t), 200, `penstock_probe_failure_info{reason="connect_refused"} 1`},
		{"debug", "module=tcp&debug=true&target=" + closedPort(t), 200, `"reason": "connect_refused"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, err := http.Get(srv.URL + "/probe?" + c.query)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.status || !strings.Contains(string(body), c.body) {
				t.Fatalf("status %d body %q, want %d with %q", resp.StatusCode, body, c.status, c.body)
			}
		})
	}
}

func startBlackbox(t *testing.T, bin, file string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "--config.file="+file, "--web.listen-address="+addr)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	base := "http://" + addr
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(base + "/-/healthy")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return base
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("blackbox_exporter did not start on %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func scrape(t *testing.T, base, module, target string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(base + "/probe?module=" + module + "&target=" + url.QueryEscape(target))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s: status %d: %s", base, resp.StatusCode, b)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

func value(fams map[string]*dto.MetricFamily, name string) float64 {
	f, ok := fams[name]
	if !ok || len(f.Metric) == 0 {
		return -1
	}
	return f.Metric[0].GetGauge().GetValue()
}

// labelSets spells a family's label names, one set per series, sorted.
func labelSets(f *dto.MetricFamily) string {
	var sets []string
	for _, m := range f.Metric {
		var names []string
		for _, l := range m.Label {
			names = append(names, l.GetName())
		}
		sort.Strings(names)
		sets = append(sets, strings.Join(names, ","))
	}
	sort.Strings(sets)
	return fmt.Sprint(sets)
}

// penstock's additions appear under their own names: the negotiated ALPN,
// cipher and key-exchange group, resumption, and the QUIC facts of an
// HTTP/3 probe.
func TestExporterAdditions(t *testing.T) {
	pk := newPKI(t)
	h2 := startHTTPS(t, http.NotFoundHandler(), pk.good(t), nil)
	h3 := startH3(t, http.NotFoundHandler(), pk.good(t))
	mods := modules(t, fmt.Sprintf("modules:\n  h2:\n    prober: http\n    http: {valid_status_codes: [404], tls_config: {ca_file: %[1]s}}\n  h3:\n    prober: http\n    http: {enable_http3: true, valid_status_codes: [404], tls_config: {ca_file: %[1]s}}\n", pk.caFile))
	srv := httptest.NewServer(NewExporter(mods, nil))
	defer srv.Close()
	for _, c := range []struct {
		module, target string
		want           []string
	}{
		{"h2", h2.URL + "/", []string{`penstock_probe_tls_info{alpn="h2",cipher="TLS_AES_128_GCM_SHA256",group="X25519MLKEM768"} 1`, "penstock_probe_tls_resumed 0", "probe_http_version 2", "probe_success 1"}},
		{"h3", h3, []string{`penstock_probe_tls_info{alpn="h3",`, "penstock_probe_quic_handshake_rtt_seconds", "penstock_probe_quic_packets_lost ", "probe_http_version 3", "probe_success 1"}},
	} {
		t.Run(c.module, func(t *testing.T) {
			resp, err := http.Get(srv.URL + "/probe?module=" + c.module + "&target=" + url.QueryEscape(c.target))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			for _, w := range c.want {
				if !strings.Contains(string(body), w) {
					t.Errorf("scrape lacks %q:\n%s", w, body)
				}
			}
		})
	}
}
