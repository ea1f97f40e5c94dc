// Package admin is penstock's operator API, on its own listener
// (127.0.0.1:9901 by default): health and readiness, the effective
// configuration with secrets redacted, reloads, upstream state, Prometheus
// metrics and live profiling.
//
// On a loopback address read-only endpoints are open and mutating and debug
// endpoints require the bearer token from the config's admin block. Off
// loopback (which the config allows only with a token) every endpoint but
// /healthz, /readyz and the dashboard page's files (which hold no data)
// requires it: the configuration and the metrics are not for anyone on the
// network.
package admin

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.yaml.in/yaml/v3"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/snapshot"
	"github.com/penstock-dev/penstock/internal/upstream"
)

// Gateway is what the admin API reads of the running gateway
// (*server.Server).
type Gateway interface {
	// Ready reports whether it serves: started and not draining.
	Ready() bool
	// Snapshot is the configuration requests are served from.
	Snapshot() *snapshot.Snapshot
	// Generation counts the configurations loaded.
	Generation() uint64
}

// Options wire the admin API to the rest of the process.
type Options struct {
	// Gateway is the running gateway. Required.
	Gateway Gateway
	// Token is the bearer token for mutating and debug endpoints; empty
	// means those endpoints answer 401.
	Token string
	// TokenForReads makes the read-only endpoints (/config, /upstreams,
	// /metrics) require the token too; /healthz and /readyz stay open.
	// Serve sets it when its listener is not on a loopback address.
	TokenForReads bool
	// Reload re-reads the configuration source and applies it; nil disables
	// POST /config/reload (501).
	Reload func() error
	// Gatherer is scraped by GET /metrics. Nil means none.
	Gatherer prometheus.Gatherer
	// Logger receives one line per mutating call. Nil means slog.Default().
	Logger *slog.Logger
	// Postgres returns the PostgreSQL proxy's pools and clients for GET
	// /postgres (nil: no proxy, 404). Nil means none.
	Postgres func() any
	// ConfigSource returns the configuration source's state for GET
	// /config/source (nil: the configuration is a file, 404). Nil means
	// none.
	ConfigSource func() any
	// ConfigNodes lists the fleet's nodes and the revision each serves,
	// read from the configuration source, for GET /config/source/nodes.
	// Nil means none (404).
	ConfigNodes func(ctx context.Context) (any, error)
	// Dashboard is the live page (internal/dashboard). Its Page (GET
	// /dashboard and /dashboard/assets/) holds no data and is open, so a
	// browser can load it and ask for the token; its Data (GET
	// /dashboard/state and /dashboard/events) follows the rule of the
	// read-only endpoints. Nil means no dashboard (404).
	Dashboard Dashboard
}

// Dashboard is the live page's two halves (*dashboard.Dashboard).
type Dashboard interface {
	Page() http.Handler
	Data() http.Handler
}

// Server is the running admin API.
type Server struct {
	srv           *http.Server
	tokenForReads bool
}

// Handler returns the admin API's routes.
func Handler(o Options) http.Handler {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	a := &api{o: o, log: log}
	read := func(h http.Handler) http.Handler { return h }
	if o.TokenForReads {
		read = a.auth
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", a.healthz)
	mux.HandleFunc("GET /readyz", a.readyz)
	mux.Handle("GET /config", read(http.HandlerFunc(a.config)))
	mux.Handle("GET /upstreams", read(http.HandlerFunc(a.upstreams)))
	mux.Handle("GET /limits", read(http.HandlerFunc(a.limits)))
	mux.Handle("GET /rollouts", read(http.HandlerFunc(a.rollouts)))
	mux.Handle("GET /rollouts/{name}", read(http.HandlerFunc(a.rollout)))
	mux.Handle("POST /rollouts/{name}/{action}", a.auth(http.HandlerFunc(a.rolloutAction)))
	mux.Handle("GET /mirrors", read(http.HandlerFunc(a.mirrors)))
	mux.Handle("GET /functions", read(http.HandlerFunc(a.functions)))
	mux.Handle("GET /postgres", read(http.HandlerFunc(a.postgres)))
	mux.Handle("POST /config/reload", a.auth(http.HandlerFunc(a.reload)))
	if d := o.Dashboard; d != nil {
		page, data := d.Page(), read(d.Data())
		mux.Handle("GET /dashboard", page)
		mux.Handle("GET /dashboard/assets/", page)
		mux.Handle("GET /dashboard/state", data)
		mux.Handle("GET /dashboard/events", data)
	}
	mux.Handle("GET /config/source", read(http.HandlerFunc(a.configSource)))
	mux.Handle("GET /config/source/nodes", read(http.HandlerFunc(a.configNodes)))
	if o.Gatherer != nil {
		mux.Handle("GET /metrics", read(promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{EnableOpenMetrics: true})))
	}
	mux.Handle("/debug/pprof/", a.auth(http.HandlerFunc(pprof.Index)))
	mux.Handle("/debug/pprof/cmdline", a.auth(http.HandlerFunc(pprof.Cmdline)))
	mux.Handle("/debug/pprof/profile", a.auth(http.HandlerFunc(pprof.Profile)))
	mux.Handle("/debug/pprof/symbol", a.auth(http.HandlerFunc(pprof.Symbol)))
	mux.Handle("/debug/pprof/trace", a.auth(http.HandlerFunc(pprof.Trace)))
	return mux
}

// Serve starts the admin API on ln. Off a loopback address it requires the
// token on the read-only endpoints too (Options.TokenForReads).
func Serve(ln net.Listener, o Options) *Server {
	if !Loopback(ln.Addr()) {
		o.TokenForReads = true
	}
	srv := &http.Server{
		Handler:           Handler(o),
		ReadHeaderTimeout: 5 * time.Second,
		// Profiles run for up to the requested seconds; no write timeout.
		IdleTimeout: 60 * time.Second,
	}
	go srv.Serve(ln)
	return &Server{srv: srv, tokenForReads: o.TokenForReads}
}

// TokenRequiredFor says which endpoints need the token, for the log line
// that announces the admin API.
func (s *Server) TokenRequiredFor() string {
	if s.tokenForReads {
		return "every endpoint but /healthz, /readyz and the dashboard page's files"
	}
	return "POST /config/reload, POST /rollouts/NAME/ACTION, /debug/pprof/"
}

// Loopback reports whether addr is a TCP address on a loopback interface
// (127.0.0.0/8, ::1); an unspecified address (0.0.0.0, ::) is not.
func Loopback(addr net.Addr) bool {
	a, ok := addr.(*net.TCPAddr)
	return ok && a.IP.IsLoopback()
}

// Shutdown stops the admin API, waiting for calls in progress until ctx.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }

type api struct {
	o   Options
	log *slog.Logger
}

// auth admits requests carrying "Authorization: Bearer <token>" (RFC 6750
// section 2.1; the scheme is case-insensitive, RFC 9110 section 11.1).
func (a *api) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.o.Token == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="penstock-admin"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{
				"error": "this endpoint needs a bearer token, and none is configured: set admin.token_file or admin.token_env",
			})
			return
		}
		scheme, got, _ := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
		if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(a.o.Token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="penstock-admin", error="invalid_token"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "missing or wrong bearer token"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (a *api) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("ok\n"))
}

func (a *api) readyz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !a.o.Gateway.Ready() {
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte("not ready\n"))
		return
	}
	w.Write([]byte("ready\n"))
}

// config shows the effective configuration (defaults filled in) as YAML,
// with secrets redacted.
func (a *api) config(w http.ResponseWriter, _ *http.Request) {
	cfg := a.o.Gateway.Snapshot().EffectiveConfig().Redact()
	out, err := yaml.Marshal(cfg)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	w.Header().Set("Content-Type", "application/yaml")
	w.Header().Set("X-Config-Generation", jsonNumber(a.o.Gateway.Generation()))
	w.Write(out)
}

func (a *api) reload(w http.ResponseWriter, r *http.Request) {
	if a.o.Reload == nil {
		writeJSON(w, http.StatusNotImplemented, map[string]string{"error": "this process has no configuration file to reload (demo mode)"})
		return
	}
	err := a.o.Reload()
	if err != nil {
		a.log.Warn("admin: reload refused", "remote", r.RemoteAddr, "error", err)
		body := map[string]any{"error": "reload refused; the previous configuration keeps serving"}
		var errs config.Errors
		if errors.As(err, &errs) {
			lines := make([]string, len(errs))
			for i, e := range errs {
				lines[i] = e.Error()
			}
			body["errors"] = lines
		} else {
			body["errors"] = []string{err.Error()}
		}
		writeJSON(w, http.StatusUnprocessableEntity, body)
		return
	}
	a.log.Info("admin: reload applied", "remote", r.RemoteAddr, "generation", a.o.Gateway.Generation())
	writeJSON(w, http.StatusOK, map[string]any{"generation": a.o.Gateway.Generation()})
}

// upstreamState is one pool in GET /upstreams.
type upstreamState struct {
	Name      string           `json:"name"`
	Balancing string           `json:"balancing"`
	Protocol  string           `json:"protocol"`
	Endpoints []upstream.State `json:"endpoints"`
	// Breaker is the pool's own circuit breaker, when it has one.
	Breaker *upstream.BreakerView `json:"circuit_breaker,omitempty"`
}

func (a *api) upstreams(w http.ResponseWriter, _ *http.Request) {
	s := a.o.Gateway.Snapshot()
	out := make([]upstreamState, 0, len(s.Pools))
	for _, p := range s.Pools {
		us := upstreamState{Name: p.Name, Balancing: p.Config.Balancing, Protocol: p.Config.Protocol,
			Breaker: p.Protection(time.Now().UnixNano())}
		for _, e := range p.Endpoints {
			us.Endpoints = append(us.Endpoints, e.State())
		}
		out = append(out, us)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	writeJSON(w, http.StatusOK, map[string]any{"upstreams": out})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func jsonNumber(n uint64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
