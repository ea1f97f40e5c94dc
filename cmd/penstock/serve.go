package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/penstock-dev/penstock/internal/admin"
	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/demo"
	"github.com/penstock-dev/penstock/internal/gateway"
	"github.com/penstock-dev/penstock/internal/listener"
	"github.com/penstock-dev/penstock/internal/reload"
	"github.com/penstock-dev/penstock/internal/upgrade"
)

func runServe(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", "serve [-c FILE] [-pid-file FILE]", stderr)
	file := fs.String("c", "", "configuration `file` (YAML); without it, serve the built-in demo")
	pidFile := fs.String("pid-file", "", "write the process id to this `file` (rewritten by a binary upgrade)")
	upgradeTimeout := fs.Duration("upgrade-timeout", time.Minute, "how long a binary upgrade waits for the new process to be ready")
	if err := parseFlags(fs, args); err != nil {
		return err
	}

	var cfg *config.Config
	var err error
	if *file == "" {
		cfg, err = config.Parse(demo.Config, "demo.yaml")
	} else {
		cfg, err = config.Load(*file, gateway.CheckRoutes)
	}
	if err != nil {
		return err
	}
	cfg.SetDefaults()
	log := newLogger(cfg.Logging, stderr)

	inherited, reportReady, err := upgrade.Inherited()
	if err != nil {
		return err
	}
	var adminLn net.Listener
	if cfg.Admin != nil {
		if ln, ok := inherited[cfg.Admin.Address]; ok {
			adminLn = ln
			delete(inherited, cfg.Admin.Address)
		}
	}

	if *file == "" {
		backend, addr, err := demo.StartBackend(demo.BackendAddress)
		if err != nil {
			return err
		}
		defer backend.Close()
		log.Info("demo backend listening", "address", addr.String())
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	g, err := gateway.New(cfg, gateway.Options{Logger: log, Registerer: reg, Inherited: inherited, Version: versionString()})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := g.Start(ctx); err != nil {
		return err
	}

	// applyReload re-reads the file; every trigger (file watch, SIGHUP, the
	// admin API) goes through it, and the gateway serialises the swaps.
	var applyReload func() error
	if *file != "" {
		applyReload = func() error {
			err := g.ReloadFrom(func() (*config.Config, error) { return config.Load(*file, gateway.CheckRoutes) })
			if err != nil {
				var errs config.Errors
				if errors.As(err, &errs) {
					for _, e := range errs {
						log.Error("reload rejected; previous configuration keeps serving", "error", e.Error(), "field", e.Path, "line", e.Line)
					}
				} else {
					log.Error("reload rejected; previous configuration keeps serving", "error", err)
				}
			}
			return err
		}
		if cfg.Reload.WatchEnabled() {
			if err := reload.Watch(ctx, *file, cfg.Reload.Debounce.D(), log, func() { applyReload() }); err != nil {
				log.Warn("config file not watched; reload with SIGHUP or the admin API", "error", err)
			}
		}
	}

	var adminSock *listener.Socket
	var adminSrv *admin.Server
	if cfg.Admin != nil {
		token, err := cfg.Admin.ResolveToken()
		if err != nil {
			return err
		}
		if adminLn == nil {
			if adminLn, err = listener.Listen(ctx, cfg.Admin.Address); err != nil {
				g.Shutdown(context.Background())
				return fmt.Errorf("admin: %w", err)
			}
		}
		adminSock = listener.NewSocket(adminLn)
		adminSrv = admin.Serve(adminSock.NewView(), admin.Options{Gateway: g, Token: token, Reload: applyReload, Gatherer: reg, Logger: log})
		log.Info("admin listening", "address", adminSock.Addr().String(), "token_required_for", "POST /config/reload, /debug/pprof/")
	}

	if *pidFile != "" {
		if err := os.WriteFile(*pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			log.Warn("cannot write pid file", "path", *pidFile, "error", err)
		}
	}
	reportReady()
	upgrade.NotifyReady()
	if *file == "" {
		adminAddr := ""
		if adminSock != nil {
			adminAddr = adminSock.Addr().String()
		}
		fmt.Fprint(stdout, demo.Banner(g.Addr("http").String(), g.Addr("https").String(), adminAddr))
	}

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(sigs)
	upgraded := false
loop:
	for {
		select {
		case sig := <-sigs:
			switch sig {
			case syscall.SIGHUP:
				if applyReload == nil {
					log.Warn("SIGHUP ignored: the demo has no configuration file to reload")
					continue
				}
				log.Info("SIGHUP: reloading configuration")
				applyReload()
			case syscall.SIGUSR1:
				if err := g.ReopenLogs(); err != nil {
					log.Error("SIGUSR1: cannot reopen the access log", "error", err)
				} else {
					log.Info("SIGUSR1: access log reopened")
				}
			case syscall.SIGUSR2:
				if *file == "" {
					log.Warn("SIGUSR2 ignored: binary upgrade needs a configuration file (-c)")
					continue
				}
				if handOver(g, adminSock, args, *upgradeTimeout, log) {
					upgraded = true
					break loop
				}
			default:
				log.Info("signal received; shutting down", "signal", sig.String())
				break loop
			}
		case err := <-g.Err():
			log.Error("listener failed; shutting down", "error", err)
			break loop
		}
	}
	cancel()
	log.Info("shutting down: draining in-flight requests", "drain_timeout", cfg.Shutdown.DrainTimeout.D().String())
	if adminSrv != nil {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		adminSrv.Shutdown(sctx)
		scancel()
		if !upgraded {
			adminSock.Close()
		}
	}
	if err := g.Shutdown(context.Background()); err != nil {
		log.Warn("drain timeout reached; remaining connections closed", "error", err)
	}
	log.Info("stopped")
	return nil
}

// handOver starts a new penstock process on this one's sockets. It reports
// true when the new process is serving and this one has stopped accepting
// (the caller then drains and exits), false when the upgrade failed and this
// process keeps serving.
func handOver(g *gateway.Gateway, adminSock *listener.Socket, args []string, timeout time.Duration, log *slog.Logger) bool {
	sockets := map[string]upgrade.Socket{}
	for addr, s := range g.Sockets() {
		sockets[addr] = s
	}
	if adminSock != nil {
		sockets[g.Snapshot().Config.Admin.Address] = adminSock
	}
	exe := executable()
	log.Info("SIGUSR2: starting new process for binary upgrade", "executable", exe)
	proc, err := upgrade.Start(exe, append([]string{"serve"}, args...), sockets, timeout)
	if err != nil {
		log.Error("binary upgrade failed; this process keeps serving", "error", err)
		return false
	}
	log.Info("new process is serving; this one stops accepting and drains", "new_pid", proc.Pid)
	g.StopAccepting()
	if adminSock != nil {
		adminSock.Detach()
	}

	return true
}

// exePath is the binary as invoked, resolved when the process started, so
// that an upgrade runs whatever file is at that path now (a newer binary
// installed over the old one), not the old inode os.Executable would name.
var exePath = func() string {
	p, err := exec.LookPath(os.Args[0])
	if err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs
		}
	}
	return ""
}()

func executable() string {
	if exePath != "" {
		return exePath
	}
	p, _ := os.Executable()
	return p
}

func newLogger(l config.Logging, w io.Writer) *slog.Logger {
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
