package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/penstock-dev/penstock/internal/probe"
	"github.com/penstock-dev/penstock/internal/probe/fleet"
)

// tokenFromEnv reads the shared secret from the environment when the flag
// names none: a secret on the command line is visible to every user of
// the machine (ps).
func tokenFromEnv(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	return os.Getenv("PENSTOCK_PROBE_TOKEN")
}

func runProbeController(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("probe controller", "probe controller -targets FILE [flags]", stderr)
	targets := fs.String("targets", "", "target list, as for probe run; watched (required)")
	config := fs.String("config", "", "modules file in blackbox_exporter's format, pushed to the agents; watched (default: the built-in modules)")
	module := fs.String("module", "tcp_connect", "module for lines that name none")
	listen := fs.String("listen", "127.0.0.1:9117", "address for the agents (gRPC, result streams) and the API (/agents, /results, /metrics)")
	token := fs.String("token", "", "secret the agents must present (default: $PENSTOCK_PROBE_TOKEN; empty: none)")
	shards := fs.Int("shards", 64, "shards per cycle")
	lease := fs.Duration("lease-timeout", 10*time.Second, "a shard whose agent is not heard of for this long goes to another")
	interval := fs.Duration("interval", time.Minute, "start a cycle every interval")
	cycles := fs.Int("cycles", 0, "stop after this many cycles (0: until interrupted)")
	everyVantage := fs.Bool("every-vantage", false, "probe every target from every vantage point in each cycle (default: once per cycle, by any agent)")
	out := fs.String("out", "-", "where the results go as JSON lines: a file, - for standard output, or empty for none")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *targets == "" {
		fmt.Fprintln(stderr, "penstock probe controller: -targets is required")
		fs.Usage()
		return errUsage
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	w, closeOut, err := openOutput(*out, stdout)
	if err != nil {
		return err
	}
	defer closeOut()
	secret := tokenFromEnv(*token)
	if secret == "" {
		log.Warn("no -token: any client that reaches the controller can register as an agent")
	}
	c, err := fleet.NewController(fleet.ControllerConfig{
		TargetsFile: *targets, ModulesFile: *config, DefaultModule: *module, Token: secret,
		Shards: *shards, LeaseTimeout: *lease, Interval: *interval, Cycles: *cycles, Out: w, Log: log,
		EveryVantage: *everyVantage,
	})
	if err != nil {
		return err
	}
	stopWatch, err := c.WatchFiles()
	if err != nil {
		return err
	}
	defer stopWatch()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := c.Server()
	go srv.Serve(ln)
	defer srv.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log.Info("probe controller listening", "address", ln.Addr().String())
	return c.Run(ctx)
}

func runProbeAgent(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("probe agent", "probe agent -controller ADDR [flags]", stderr)
	controller := fs.String("controller", "", "the controller's address, host:port (required)")
	token := fs.String("token", "", "the controller's secret (default: $PENSTOCK_PROBE_TOKEN)")
	vantage := fs.String("vantage", "", "name of this agent's point of view, the label vantage of its results (default: the host name)")
	concurrency := fs.Int("concurrency", 1000, "most probes in flight")
	maxShards := fs.Int("shards", 2, "shards held at once")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *controller == "" {
		fmt.Fprintln(stderr, "penstock probe agent: -controller is required")
		fs.Usage()
		return errUsage
	}
	if *vantage == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("vantage: %w", err)
		}
		*vantage = h
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	a, err := fleet.NewAgent(fleet.AgentConfig{
		Controller: *controller, Token: tokenFromEnv(*token), Vantage: *vantage, Concurrency: *concurrency, MaxShards: *maxShards,
		Prober: &probe.Prober{Sessions: tls.NewLRUClientSessionCache(4096)}, Log: log,
	})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := a.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
