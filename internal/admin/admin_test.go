package admin_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/penstock-dev/penstock/internal/admin"
	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/server"
	"github.com/penstock-dev/penstock/internal/snapshot"
)

const (
	secret       = "s3cr3t-token-value"
	headerSecret = "k3y-in-a-header-matcher"
)

// newAdmin serves the admin API of a started gateway whose config holds an
// inline token, with reload wired to next (the config text a reload reads).
func newAdmin(t *testing.T, token string, next *string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(admin.Handler(adminOptions(t, token, next)))
	t.Cleanup(srv.Close)
	return srv
}

// adminOptions wires the admin API to a started gateway, as newAdmin
// describes.
func adminOptions(t *testing.T, token string, next *string) admin.Options {
	t.Helper()
	text := `listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams: [{name: up, endpoints: [{address: "127.0.0.1:9"}, {address: "unix:/run/x.sock"}]}]
routes:
  - {name: r, match: {path: /}, upstream: up}
  - {name: internal, match: {path: /internal, headers: {X-Internal-Key: ` + headerSecret + `}}, upstream: up}
admin: {token: ` + secret + `}
`
	cfg, err := config.Parse([]byte(text), "admin.yaml")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	g, err := server.New(cfg, server.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Shutdown(context.Background()) })
	reload := func() error {
		return g.ReloadFrom(func() (*config.Config, error) {
			return config.Check([]byte(*next), "next.yaml", snapshot.CheckRoutes)
		})
	}
	return admin.Options{Gateway: g, Token: token, Reload: reload, Gatherer: reg,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// call sends a request with "Authorization: Bearer token" unless token is
// empty; a token with a space in it is sent as the whole header value.
func call(t *testing.T, method, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	switch {
	case strings.Contains(token, " "):
		req.Header.Set("Authorization", token)
	case token != "":
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestAdminAuthorization checks which endpoints need the bearer token.
func TestAdminAuthorization(t *testing.T) {
	valid := `listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams: [{name: up, endpoints: [{address: "127.0.0.1:9"}]}]
routes: [{name: r2, match: {path: /v2}, upstream: up}]
admin: {token: ` + secret + `}
`
	srv := newAdmin(t, secret, &valid)
	tests := []struct {
		name   string
		method string
		path   string
		token  string
		status int
	}{
		{"healthz is open", "GET", "/healthz", "", 200},
		{"readyz is open", "GET", "/readyz", "", 200},
		{"config is open (redacted)", "GET", "/config", "", 200},
		{"upstreams is open", "GET", "/upstreams", "", 200},
		{"limits is open", "GET", "/limits", "", 200},
		{"metrics is open", "GET", "/metrics", "", 200},
		{"reload without token", "POST", "/config/reload", "", 401},
		{"reload with wrong token", "POST", "/config/reload", "nope", 401},
		{"reload with token", "POST", "/config/reload", secret, 200},
		{"reload by GET is not a reload", "GET", "/config/reload", secret, 405},
		{"pprof without token", "GET", "/debug/pprof/", "", 401},
		{"pprof heap without token", "GET", "/debug/pprof/heap", "", 401},
		{"pprof with token", "GET", "/debug/pprof/", secret, 200},
		{"cmdline with token", "GET", "/debug/pprof/cmdline", secret, 200},
		{"scheme in lowercase", "GET", "/debug/pprof/", "bearer " + secret, 200},
		{"scheme in uppercase", "GET", "/debug/pprof/", "BEARER " + secret, 200},
		{"spaces around the token", "GET", "/debug/pprof/", "Bearer   " + secret + " ", 200},
		{"another scheme", "GET", "/debug/pprof/", "Basic " + secret, 401},
		{"scheme without token", "GET", "/debug/pprof/", "Bearer ", 401},
		{"token as a prefix of the right one", "GET", "/debug/pprof/", "Bearer " + secret[:5] + " x", 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body := call(t, tc.method, srv.URL+tc.path, tc.token)
			if status != tc.status {
				t.Errorf("status %d, want %d: %s", status, tc.status, body)
			}
		})
	}
}

// TestAdminOffLoopbackNeedsTokenForReads serves the admin API on a real
// loopback socket that reports a non-loopback address, as a listener on a
// public interface would: everything but health and readiness then needs
// the token.
func TestAdminOffLoopbackNeedsTokenForReads(t *testing.T) {
	next := ""
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	public := &addrListener{Listener: ln, addr: &net.TCPAddr{IP: net.ParseIP("192.0.2.10"), Port: 9901}}
	srv := admin.Serve(public, adminOptions(t, secret, &next))
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	if got := srv.TokenRequiredFor(); got != "every endpoint but /healthz, /readyz and the dashboard page's files" {
		t.Errorf("TokenRequiredFor = %q", got)
	}
	base := "http://" + ln.Addr().String()
	tests := []struct {
		name   string
		path   string
		token  string
		status int
	}{
		{"healthz is open", "/healthz", "", 200},
		{"readyz is open", "/readyz", "", 200},
		{"config needs the token", "/config", "", 401},
		{"upstreams needs the token", "/upstreams", "", 401},
		{"metrics needs the token", "/metrics", "", 401},
		{"config with a wrong token", "/config", "nope", 401},
		{"config with the token", "/config", secret, 200},
		{"upstreams with the token", "/upstreams", secret, 200},
		{"limits needs the token", "/limits", "", 401},
		{"limits with the token", "/limits", secret, 200},
		{"metrics with the token", "/metrics", secret, 200},
		{"pprof still needs it", "/debug/pprof/", "", 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body := call(t, "GET", base+tc.path, tc.token)
			if status != tc.status {
				t.Errorf("status %d, want %d: %s", status, tc.status, body)
			}
		})
	}
}

// addrListener is a listener that reports addr as its address.
type addrListener struct {
	net.Listener
	addr net.Addr
}

func (l *addrListener) Addr() net.Addr { return l.addr }

func TestLoopback(t *testing.T) {
	tests := []struct {
		addr string
		want bool
	}{
		{"127.0.0.1:9901", true},
		{"127.0.0.2:9901", true},
		{"[::1]:9901", true},
		{"0.0.0.0:9901", false},
		{"[::]:9901", false},
		{"192.0.2.10:9901", false},
		{"[2001:db8::1]:9901", false},
	}
	for _, tc := range tests {
		t.Run(tc.addr, func(t *testing.T) {
			a, err := net.ResolveTCPAddr("tcp", tc.addr)
			if err != nil {
				t.Fatal(err)
			}
			if got := admin.Loopback(a); got != tc.want {
				t.Errorf("Loopback(%s) = %v, want %v", tc.addr, got, tc.want)
			}
		})
	}
}

// TestAdminWithoutTokenRefusesMutations checks that with no token
// configured the mutating endpoints stay closed.
func TestAdminWithoutTokenRefusesMutations(t *testing.T) {
	next := ""
	srv := newAdmin(t, "", &next)
	for _, path := range []string{"/config/reload", "/debug/pprof/"} {
		method := "GET"
		if path == "/config/reload" {
			method = "POST"
		}
		status, body := call(t, method, srv.URL+path, "anything")
		if status != 401 || !strings.Contains(body, "token_file") {
			t.Errorf("%s: status %d body %s; want 401 naming how to configure a token", path, status, body)
		}
	}
}

// TestAdminConfigNeverShowsSecrets checks GET /config redacts the token and
// the values of header matchers.
func TestAdminConfigNeverShowsSecrets(t *testing.T) {
	next := ""
	srv := newAdmin(t, secret, &next)
	status, body := call(t, "GET", srv.URL+"/config", "")
	if status != 200 {
		t.Fatalf("status %d", status)
	}
	if strings.Contains(body, secret) {
		t.Fatalf("/config shows the token:\n%s", body)
	}
	if strings.Contains(body, headerSecret) || !strings.Contains(body, "X-Internal-Key: "+config.Redacted) {
		t.Fatalf("/config does not redact the header matcher's value:\n%s", body)
	}
	if !strings.Contains(body, config.Redacted) || !strings.Contains(body, "name: main") {
		t.Errorf("/config is not the effective config with the token redacted:\n%s", body)
	}
	if !strings.Contains(body, "drain_timeout: 30s") {
		t.Errorf("/config lacks defaults:\n%s", body)
	}
}

// TestAdminReload checks that a reload through the API applies a valid
// config and reports every error of an invalid one.
func TestAdminReload(t *testing.T) {
	next := `listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams: [{name: up, endpoints: [{address: "127.0.0.1:9"}]}]
routes:
  - {name: a, match: {path: "/x/:id"}, upstream: up}
  - {name: b, match: {path: "/x/:name"}, upstream: nope}
admin: {token: ` + secret + `}
`
	srv := newAdmin(t, secret, &next)
	status, body := call(t, "POST", srv.URL+"/config/reload", secret)
	if status != 422 {
		t.Fatalf("invalid reload: status %d: %s", status, body)
	}
	var res struct{ Errors []string }
	json.Unmarshal([]byte(body), &res)
	// Every problem is listed, each with its field and line.
	if len(res.Errors) != 2 || !strings.Contains(res.Errors[0], "routes[1].upstream (line 5)") ||
		!strings.Contains(res.Errors[1], `routes[1].match (line 5): routes "a" and "b" conflict`) {
		t.Errorf("errors %q", res.Errors)
	}
	_, metrics := call(t, "GET", srv.URL+"/metrics", "")
	if !strings.Contains(metrics, `penstock_config_reloads_total{result="failure"} 1`) {
		t.Errorf("failure not counted:\n%s", grep(metrics, "penstock_config"))
	}

	next = strings.Replace(next, "upstream: nope", "upstream: up", 1)
	next = strings.Replace(next, `/x/:name`, `/y/:name`, 1)
	status, body = call(t, "POST", srv.URL+"/config/reload", secret)
	if status != 200 || !strings.Contains(body, `"generation": 2`) {
		t.Fatalf("valid reload: status %d: %s", status, body)
	}
	_, metrics = call(t, "GET", srv.URL+"/metrics", "")
	for _, want := range []string{
		`penstock_config_reloads_total{result="success"} 1`,
		`penstock_config_generation 2`,
		`penstock_config_last_reload_success_timestamp_seconds `,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q:\n%s", want, grep(metrics, "penstock_config"))
		}
	}
}

// TestAdminUpstreams checks the endpoint state listing.
func TestAdminUpstreams(t *testing.T) {
	next := ""
	srv := newAdmin(t, secret, &next)
	_, body := call(t, "GET", srv.URL+"/upstreams", "")
	var res struct {
		Upstreams []struct {
			Name      string
			Balancing string
			Endpoints []struct {
				Address string
				Healthy bool
			}
		}
	}
	if err := json.Unmarshal([]byte(body), &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Upstreams) != 1 || res.Upstreams[0].Name != "up" || res.Upstreams[0].Balancing != "round_robin" ||
		len(res.Upstreams[0].Endpoints) != 2 || !res.Upstreams[0].Endpoints[0].Healthy ||
		res.Upstreams[0].Endpoints[1].Address != "unix:/run/x.sock" {
		t.Errorf("unexpected /upstreams: %s", body)
	}
}

// TestAdminAddressNeedsTokenOffLoopback checks the config refuses a public
// admin address without a token.
func TestAdminAddressNeedsTokenOffLoopback(t *testing.T) {
	base := `listeners: [{name: main, address: "127.0.0.1:8080"}]
upstreams: [{name: up, endpoints: [{address: "127.0.0.1:9"}]}]
routes: [{name: r, match: {path: /}, upstream: up}]
`
	tests := []struct {
		name  string
		admin string
		want  string
	}{
		{"public without token", `admin: {address: "0.0.0.0:9901"}`, "admin.address (line 4): admin API on non-loopback address"},
		{"all interfaces without token", `admin: {address: ":9901"}`, "admin.address (line 4): admin API on non-loopback address"},
		{"public with token", `admin: {address: "0.0.0.0:9901", token: x}`, ""},
		{"loopback without token", `admin: {address: "127.0.0.1:9901"}`, ""},
		{"ipv6 loopback without token", `admin: {address: "[::1]:9901"}`, ""},
		{"token file missing", `admin: {address: "127.0.0.1:9901", token_file: /nonexistent/token}`, "admin.token_file (line 4): cannot read token file"},
		{"token env unset", `admin: {token_env: PENSTOCK_TEST_UNSET_TOKEN}`, "admin.token_env (line 4): environment variable PENSTOCK_TEST_UNSET_TOKEN is unset"},
		{"two token sources", `admin: {token: a, token_env: HOME}`, "set at most one of token, token_file and token_env"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Check([]byte(base+tc.admin+"\n"), "c.yaml")
			if err == nil {
				err = cfg.Validate()
			}
			if tc.want == "" {
				if err != nil {
					t.Errorf("unexpected error: %v", err)
				}
				return
			}
			var errs config.Errors
			if !errors.As(err, &errs) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func grep(text, sub string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
