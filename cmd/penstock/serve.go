package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"syscall"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/demo"
	"github.com/penstock-dev/penstock/internal/gateway"
)

func runServe(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", "serve [-c FILE]", stderr)
	file := fs.String("c", "", "configuration `file` (YAML); without it, serve the built-in demo")
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

	if *file == "" {
		backend, addr, err := demo.StartBackend(demo.BackendAddress)
		if err != nil {
			return err
		}
		defer backend.Close()
		log.Info("demo backend listening", "address", addr.String())
	}

	g, err := gateway.New(cfg, log)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := g.Start(ctx); err != nil {
		return err
	}
	if *file == "" {
		admin := ""
		if a := g.Addr("admin"); a != nil {
			admin = a.String()
		}
		fmt.Fprint(stdout, demo.Banner(g.Addr("http").String(), g.Addr("https").String(), admin))
	}

	select {
	case <-ctx.Done():
	case err := <-g.Err():
		log.Error("listener failed; shutting down", "error", err)
	}
	stop()
	log.Info("shutting down: draining in-flight requests", "drain_timeout", cfg.Shutdown.DrainTimeout.D().String())
	if err := g.Shutdown(context.Background()); err != nil {
		log.Warn("drain timeout reached; remaining connections closed", "error", err)
	}
	log.Info("stopped")
	return nil
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
