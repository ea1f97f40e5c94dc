package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/penstock-dev/penstock/internal/admin"
	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/dashboard"
	"github.com/penstock-dev/penstock/internal/listener"
	"github.com/penstock-dev/penstock/internal/pgproxy"
	"github.com/penstock-dev/penstock/internal/reload"
	"github.com/penstock-dev/penstock/internal/rollout"
	"github.com/penstock-dev/penstock/internal/snapshot"
	"github.com/penstock-dev/penstock/internal/upgrade"
)

// RunOptions are what `penstock serve` passes to Run.
type RunOptions struct {
	// File is the configuration file, re-read on every reload. Empty means
	// Config is served, without reloads or binary upgrades (the demo).
	File string
	// Config is served when File is empty.
	Config []byte
	// Source, when set, is where the configuration comes from instead of
	// File or Config (penstock serve --config-source): read at start,
	// followed while serving, each change applied like a file reload.
	Source ConfigSource
	// Rollouts, when set, shares the rollouts with the fleet
	// (fleet.Rollouts, beside an etcd Source); when it is a
	// prometheus.Collector its metrics are exported.
	Rollouts rollout.Sharing
	// Args are the serve command's arguments, given again to the new
	// process of a binary upgrade.
	Args []string
	// PIDFile, when set, receives the process id once serving.
	PIDFile string
	// Executable is the binary a binary upgrade starts.
	Executable string
	// UpgradeTimeout bounds how long a binary upgrade waits for the new
	// process to be ready.
	UpgradeTimeout time.Duration
	// Version is penstock's version, recorded on traces.
	Version string
	// Log receives penstock's own log, formatted as logging.format says.
	Log io.Writer
	// Serving, when set, is called once every listener serves, with the
	// admin listener's address (nil without one) and penstock's log.
	Serving func(s *Server, admin net.Addr, log *slog.Logger)
}

// process is one run of penstock serve: the server, the admin API beside
// it, and how signals reach them.
type process struct {
	o        RunOptions
	log      *slog.Logger
	srv      *Server
	reg      *prometheus.Registry
	runtime  *prometheus.Registry
	adminLn  net.Listener
	adminSrv *admin.Server
	admin    *listener.Socket
	// dash is the admin API's live page; its sampler runs while it is open.
	dash *dashboard.Dashboard
	// reload re-reads the file and applies it; nil without a file.
	reload func() error
	// pg is the PostgreSQL proxy, when the config has a postgres section.
	pg atomic.Pointer[pgproxy.Proxy]
	// sourceDone is closed when the configuration source has stopped.
	sourceDone chan struct{}
}

// Run serves until SIGINT or SIGTERM, a listener's failure, or a binary
// upgrade (SIGUSR2) that handed the sockets to a new process; then it drains
// and returns. SIGHUP reloads the configuration file (so do its changes,
// when watched, and the admin API), or reads the configuration source
// again; SIGUSR1 reopens the access log.
func Run(o RunOptions) error {
	if o.Source != nil {
		defer o.Source.Close()
	}
	cfg, err := o.load()
	if err != nil {
		return err
	}
	p := &process{o: o, log: NewLogger(cfg.Logging, o.Log)}
	// Signals are caught before anything serves: a SIGUSR2 or SIGHUP sent
	// as soon as the port answers must find its handler, not the default
	// action (which for both is to terminate the process).
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(sigs)
	inherited, reportReady, err := upgrade.Inherited()
	if err != nil {
		return err
	}
	if cfg.Admin != nil {
		p.adminLn = inherited[cfg.Admin.Address]
		delete(inherited, cfg.Admin.Address)
	}
	p.reg = prometheus.NewRegistry()
	// The Go runtime's and the process's metrics sit in a registry of
	// their own, exported beside the gateway's: the dashboard samples only
	// the gateway's, once a second, and need not read /proc each time.
	p.runtime = prometheus.NewRegistry()
	p.runtime.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if o.Rollouts != nil {
		if c, ok := o.Rollouts.(prometheus.Collector); ok {
			p.reg.MustRegister(c)
		}
		if l, ok := o.Rollouts.(interface{ SetLogger(*slog.Logger) }); ok {
			l.SetLogger(p.log)
		}
	}
	if p.srv, err = New(cfg, Options{Logger: p.log, Registerer: p.reg, Inherited: inherited, Version: o.Version, Rollouts: o.Rollouts}); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := p.srv.Start(ctx); err != nil {
		return err
	}
	if err := p.startPostgres(ctx, cfg); err != nil {
		p.srv.Shutdown(context.Background())
		return err
	}
	p.watch(ctx, cfg)
	if err := p.startAdmin(ctx, cfg.Admin); err != nil {
		cancel()
		p.stopSource()
		p.srv.Shutdown(context.Background())
		return err
	}
	p.writePID()
	reportReady()
	upgrade.NotifyReady()
	if o.Serving != nil {
		o.Serving(p.srv, p.adminAddr(), p.log)
	}
	upgraded := p.wait(sigs)
	cancel()
	p.stopSource()
	p.shutdown(upgraded)
	return nil
}

// load reads the configuration to serve, with defaults applied; the
// compiler validates it.
func (o RunOptions) load() (*config.Config, error) {
	var cfg *config.Config
	var err error
	if o.Source != nil {
		cfg, err = o.loadSource()
	} else if o.File == "" {
		cfg, err = config.Parse(o.Config, "demo.yaml")
	} else {
		cfg, err = config.Load(o.File, snapshot.CheckRoutes)
	}
	if err != nil {
		return nil, err
	}
	cfg.SetDefaults()
	return cfg, nil
}

// watch wires every reload trigger (file watch, SIGHUP, the admin API) to
// one function that re-reads the file, or follows the configuration source;
// the server serialises the swaps.
func (p *process) watch(ctx context.Context, cfg *config.Config) {
	if p.o.Source != nil {
		p.followSource(ctx)
		return
	}
	if p.o.File == "" {
		return
	}
	p.reload = func() error { return p.apply(p.o.load) }
	if cfg.Reload.WatchEnabled() {
		if err := reload.Watch(ctx, p.o.File, cfg.Reload.Debounce.D(), p.log, func() { p.reload() }); err != nil {
			p.log.Warn("config file not watched; reload with SIGHUP or the admin API", "error", err)
		}
	}
}

// apply reloads the configuration load returns, through the server (which
// serialises swaps), then the PostgreSQL proxy; a refusal is logged with
// every error's field and line. Every reload trigger and source uses it.
func (p *process) apply(load func() (*config.Config, error)) error {
	var loaded *config.Config
	err := p.srv.ReloadFrom(func() (*config.Config, error) {
		c, err := load()
		loaded = c
		return c, err
	})
	if err == nil {
		p.reloadPostgres(loaded)
	}
	if err != nil {
		var errs config.Errors
		if errors.As(err, &errs) {
			for _, e := range errs {
				p.log.Error("reload rejected; previous configuration keeps serving", "error", e.Error(), "field", e.Path, "line", e.Line)
			}
		} else {
			p.log.Error("reload rejected; previous configuration keeps serving", "error", err)
		}
	}
	return err
}

// startAdmin serves the admin API when the configuration has one, on the
// inherited socket after a binary upgrade.
func (p *process) startAdmin(ctx context.Context, ac *config.Admin) error {
	if ac == nil {
		return nil
	}
	token, err := ac.ResolveToken()
	if err != nil {
		return err
	}
	if p.adminLn == nil {
		if p.adminLn, err = listener.Listen(ctx, ac.Address); err != nil {
			return fmt.Errorf("admin: %w", err)
		}
	}
	p.admin = listener.NewSocket(p.adminLn)
	p.dash = dashboard.New(dashboard.Options{Gateway: p.srv, Gatherer: p.reg, Reloads: p.srv.Reloads, Logger: p.log, Fleet: p.fleetView()})
	p.adminSrv = admin.Serve(p.admin.NewView(), admin.Options{Gateway: p.srv, Token: token, Reload: p.reload,
		Gatherer: prometheus.Gatherers{p.reg, p.runtime}, Logger: p.log, Postgres: p.postgresState, Dashboard: p.dash,
		ConfigSource: p.sourceState, ConfigNodes: p.sourceNodes()})
	p.log.Info("admin listening", "address", p.admin.Addr().String(), "token_required_for", p.adminSrv.TokenRequiredFor())
	return nil
}

func (p *process) adminAddr() net.Addr {
	if p.admin == nil {
		return nil
	}
	return p.admin.Addr()
}

func (p *process) writePID() {
	if p.o.PIDFile == "" {
		return
	}
	if err := os.WriteFile(p.o.PIDFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		p.log.Warn("cannot write pid file", "path", p.o.PIDFile, "error", err)
	}
}

// wait handles signals until it is time to stop. It reports whether a
// binary upgrade handed the sockets over.
func (p *process) wait(sigs <-chan os.Signal) (upgraded bool) {
	for {
		select {
		case sig := <-sigs:
			switch sig {
			case syscall.SIGHUP:
				if p.reload == nil {
					p.log.Warn("SIGHUP ignored: the demo has no configuration file to reload")
					continue
				}
				p.log.Info("SIGHUP: reloading configuration")
				p.reload()
			case syscall.SIGUSR1:
				if err := p.srv.ReopenLogs(); err != nil {
					p.log.Error("SIGUSR1: cannot reopen the access log", "error", err)
				} else {
					p.log.Info("SIGUSR1: access log reopened")
				}
			case syscall.SIGUSR2:
				if p.o.File == "" && p.o.Source == nil {
					p.log.Warn("SIGUSR2 ignored: binary upgrade needs a configuration file (-c) or source (--config-source)")
					continue
				}
				if p.handOver() {
					return true
				}
			default:
				p.log.Info("signal received; shutting down", "signal", sig.String())
				return false
			}
		case err := <-p.srv.Err():
			p.log.Error("listener failed; shutting down", "error", err)
			return false
		}
	}
}

// handOver starts a new penstock process on this one's sockets. It reports
// true when the new process is serving and this one has stopped accepting
// (the caller then drains and exits), false when the upgrade failed and this
// process keeps serving.
func (p *process) handOver() bool {
	sockets := map[string]upgrade.Socket{}
	for addr, s := range p.srv.Sockets() {
		sockets[addr] = s
	}
	if p.admin != nil {
		sockets[p.srv.Snapshot().Config.Admin.Address] = p.admin
	}
	p.log.Info("SIGUSR2: starting new process for binary upgrade", "executable", p.o.Executable)
	proc, err := upgrade.Start(p.o.Executable, append([]string{"serve"}, p.o.Args...), sockets, p.o.UpgradeTimeout)
	if err != nil {
		p.log.Error("binary upgrade failed; this process keeps serving", "error", err)
		return false
	}
	p.log.Info("new process is serving; this one stops accepting and drains", "new_pid", proc.Pid)
	p.srv.StopAccepting()
	if p.admin != nil {
		p.admin.Detach()
	}
	return true
}

// shutdown drains the admin API and the server. After a binary upgrade the
// sockets are the new process's: they are left open.
func (p *process) shutdown(upgraded bool) {
	p.log.Info("shutting down: draining in-flight requests", "drain_timeout", p.srv.Snapshot().Config.Shutdown.DrainTimeout.D().String())
	if p.adminSrv != nil {
		// Open dashboard streams end first, or the admin API's drain would
		// wait for them.
		p.dash.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		p.adminSrv.Shutdown(ctx)
		cancel()
		if !upgraded {
			p.admin.Close()
		}
	}
	p.stopPostgres()
	if upgraded {
		// The new process serves: event streams and WebSockets may
		// finish here under their own, longer limit.
		p.srv.KeepStreams(p.srv.Snapshot().Config.Shutdown.StreamDrainTimeout.D())
	}
	if err := p.srv.Shutdown(context.Background()); err != nil {
		p.log.Warn("drain timeout reached; remaining connections closed", "error", err)
	}
	p.log.Info("stopped")
}

// NewLogger builds penstock's own log from the logging settings.
func NewLogger(l config.Logging, w io.Writer) *slog.Logger {
	var level slog.Level
	switch l.Level {
	case "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	opts := &slog.HandlerOptions{Level: level}
	if l.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
