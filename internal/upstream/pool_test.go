package upstream_test

import (
	"context"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/upstream"
)

// hello answers every request with its name and the request's host.
func hello(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, name+" "+r.Host)
	})
}

// unixServer serves h on a unix socket in a temporary directory and returns
// the socket path.
func unixServer(t *testing.T, h http.Handler) string {
	t.Helper()
	// A short directory: socket paths are limited to about 100 bytes.
	dir, err := os.MkdirTemp("", "pst")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "s.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return path
}

// get sends one request through e's client the way the forwarder does.
func get(t *testing.T, p *upstream.Pool, e *upstream.Endpoint, host string) (string, error) {
	t.Helper()
	var resp upstream.Response
	err := e.Client().RoundTrip(context.Background(), &upstream.Request{Method: "GET", Path: "/", Host: host}, &resp)
	if err != nil {
		return "", err
	}
	defer resp.Close()
	b, err := io.ReadAll(&resp)
	return string(b), err
}

func TestNewPoolOverLoopback(t *testing.T) {
	tcp := httptest.NewServer(hello("tcp"))
	t.Cleanup(tcp.Close)
	sock := unixServer(t, hello("unix"))
	tcpAddr := strings.TrimPrefix(tcp.URL, "http://")

	p, err := upstream.NewPool(&config.Upstream{
		Name:      "models",
		Balancing: "round_robin",
		Endpoints: []config.Endpoint{{Address: tcpAddr, Weight: 3}, {Address: "unix:" + sock}},
	})
	if err != nil {
		t.Fatalf("NewPool: %v", err)
	}
	t.Cleanup(p.Close)

	if p.Name != "models" || p.Scheme != "http" {
		t.Errorf("pool name, scheme = %q, %q; want models, http", p.Name, p.Scheme)
	}
	if p.MaxFails != 1 {
		t.Errorf("MaxFails = %d with passive_health unset, want at least 1", p.MaxFails)
	}
	tests := []struct {
		name       string
		i          int
		address    string
		weight     int
		urlHost    string
		wantAnswer string
	}{
		{name: "tcp endpoint", i: 0, address: tcpAddr, weight: 3, urlHost: tcpAddr, wantAnswer: "tcp api.example.com"},
		{name: "unix endpoint", i: 1, address: "unix:" + sock, weight: 1, urlHost: "localhost", wantAnswer: "unix api.example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := p.Endpoints[tt.i]
			if e.Address != tt.address || e.Weight != tt.weight || e.URLHost() != tt.urlHost {
				t.Errorf("endpoint = %q weight %d url host %q; want %q, %d, %q",
					e.Address, e.Weight, e.URLHost(), tt.address, tt.weight, tt.urlHost)
			}
			got, err := get(t, p, e, "api.example.com")
			if err != nil {
				t.Fatalf("round trip: %v", err)
			}
			if got != tt.wantAnswer {
				t.Errorf("answer = %q, want %q", got, tt.wantAnswer)
			}
		})
	}

	// The pool's balancer is the configured one.
	now := time.Now().UnixNano()
	if a, b := p.Pick(now), p.Pick(now); a != p.Endpoints[0] || b != p.Endpoints[1] {
		t.Errorf("round robin picked %v then %v, want the endpoints in config order", a, b)
	}
}

func TestNewPoolPassiveHealthSettings(t *testing.T) {
	p, err := upstream.NewPool(&config.Upstream{
		Name:          "u",
		Balancing:     "least_request",
		Endpoints:     []config.Endpoint{{Address: "127.0.0.1:1"}},
		PassiveHealth: config.PassiveHealth{MaxFails: 3, FailTimeout: config.Duration(7 * time.Second)},
	})
	if err != nil {
		t.Fatalf("NewPool: %v", err)
	}
	if p.MaxFails != 3 || p.FailTimeout != 7*time.Second {
		t.Errorf("MaxFails, FailTimeout = %d, %v; want 3, 7s", p.MaxFails, p.FailTimeout)
	}
}

func TestNewPoolErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		u    config.Upstream
		want []string // substrings of the error
	}{
		{
			name: "bad endpoint address",
			u:    config.Upstream{Name: "u", Balancing: "round_robin", Endpoints: []config.Endpoint{{Address: "127.0.0.1:1"}, {Address: "no-port"}}},
			want: []string{`upstream "u"`, "endpoints[1]"},
		},
		{
			name: "empty unix path",
			u:    config.Upstream{Name: "u", Balancing: "round_robin", Endpoints: []config.Endpoint{{Address: "unix:"}}},
			want: []string{`upstream "u"`, "endpoints[0]", "unix socket path is empty"},
		},
		{
			name: "unknown policy",
			u:    config.Upstream{Name: "u", Balancing: "fastest", Endpoints: []config.Endpoint{{Address: "127.0.0.1:1"}}},
			want: []string{`upstream "u"`, `"fastest"`},
		},
		{
			name: "missing ca_file",
			u: config.Upstream{Name: "u", Balancing: "round_robin", Endpoints: []config.Endpoint{{Address: "127.0.0.1:1"}},
				TLS: &config.UpstreamTLS{CAFile: filepath.Join(dir, "absent.pem")}},
			want: []string{`upstream "u"`, "tls.ca_file", "absent.pem"},
		},
		{
			name: "ca_file without certificates",
			u: config.Upstream{Name: "u", Balancing: "round_robin", Endpoints: []config.Endpoint{{Address: "127.0.0.1:1"}},
				TLS: &config.UpstreamTLS{CAFile: notPEM}},
			want: []string{`upstream "u"`, "tls.ca_file", "no PEM certificates"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := upstream.NewPool(&tt.u)
			if err == nil {
				p.Close()
				t.Fatal("NewPool succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestNewPoolTLSWithCAFile(t *testing.T) {
	srv := httptest.NewTLSServer(hello("tls"))
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(ca, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(srv.URL, "https://")

	tests := []struct {
		name    string
		tls     config.UpstreamTLS
		wantErr bool
	}{
		// httptest's certificate is issued for 127.0.0.1 and example.com.
		{name: "trusted CA, name from the address", tls: config.UpstreamTLS{CAFile: ca}},
		{name: "trusted CA, server_name in the certificate", tls: config.UpstreamTLS{CAFile: ca, ServerName: "example.com"}},
		{name: "trusted CA, server_name not in the certificate", tls: config.UpstreamTLS{CAFile: ca, ServerName: "other.test"}, wantErr: true},
		{name: "system roots do not know the test CA", tls: config.UpstreamTLS{}, wantErr: true},
		{name: "insecure_skip_verify", tls: config.UpstreamTLS{InsecureSkipVerify: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := upstream.NewPool(&config.Upstream{
				Name: "secure", Balancing: "round_robin",
				Endpoints: []config.Endpoint{{Address: addr}},
				TLS:       &tt.tls,
			})
			if err != nil {
				t.Fatalf("NewPool: %v", err)
			}
			t.Cleanup(p.Close)
			if p.Scheme != "https" {
				t.Errorf("Scheme = %q, want https", p.Scheme)
			}
			got, err := get(t, p, p.Endpoints[0], "example.com")
			if (err != nil) != tt.wantErr {
				t.Fatalf("round trip error = %v, want error %v", err, tt.wantErr)
			}
			if err == nil && got != "tls example.com" {
				t.Errorf("answer = %q, want %q", got, "tls example.com")
			}
		})
	}
}

func TestDialFailureIsAConnectError(t *testing.T) {
	// A port that was just free: nothing listens there.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	p, err := upstream.NewPool(&config.Upstream{Name: "dead", Balancing: "round_robin", Endpoints: []config.Endpoint{{Address: addr}}})
	if err != nil {
		t.Fatalf("NewPool: %v", err)
	}
	t.Cleanup(p.Close)
	_, err = get(t, p, p.Endpoints[0], "example.com")
	var ue *upstream.Error
	if !errors.As(err, &ue) || ue.Kind != upstream.KindConnect {
		t.Fatalf("round trip error = %v (%T), want a KindConnect *upstream.Error", err, err)
	}
	if ue.Endpoint != addr || !strings.Contains(ue.Error(), addr) {
		t.Errorf("Error names %q (%q), want %q", ue.Endpoint, ue.Error(), addr)
	}
}

func TestWithConnectTimeoutZeroKeepsTheContext(t *testing.T) {
	ctx := context.Background()
	if got := upstream.WithConnectTimeout(ctx, 0); got != ctx {
		t.Error("withConnectTimeout(ctx, 0) returned a new context, want ctx itself")
	}
}
