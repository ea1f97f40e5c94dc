package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/penstock-dev/penstock/internal/probe"
	"github.com/penstock-dev/penstock/internal/reload"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const probeUsage = `Usage: penstock probe <once|serve|run|controller|agent> [flags]

  penstock probe once [-config blackbox.yml] [-module M] TARGET...
        probe each target once and print the results as JSON lines
  penstock probe serve [-config blackbox.yml] [-listen 127.0.0.1:9115]
        blackbox_exporter mode: /probe?target=…&module=…, /metrics
  penstock probe run -targets FILE [-config blackbox.yml] [-rate N] …
        probe a target list once or every -interval, JSON lines out
  penstock probe controller -targets FILE [-config blackbox.yml] [-token T] …
        shard a target list over agents, gather their results
  penstock probe agent -controller ADDR [-token T] [-vantage NAME]
        connect to a controller, probe the shards it leases

Without -config the built-in modules are used (http_2xx, http3_2xx,
tcp_connect, tls_connect, dns_udp, icmp, grpc_plain). See docs/probe.md.
`

func runProbe(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, probeUsage)
		if len(args) == 0 {
			return errUsage
		}
		return nil
	}
	switch args[0] {
	case "once":
		return runProbeOnce(args[1:], stdout, stderr)
	case "serve":
		return runProbeServe(args[1:], stdout, stderr)
	case "run":
		return runProbeRun(args[1:], stdout, stderr)
	case "controller":
		return runProbeController(args[1:], stdout, stderr)
	case "agent":
		return runProbeAgent(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "penstock probe: unknown mode %q\n\n%s", args[0], probeUsage)
	return errUsage
}

// loadProbeModules reads the modules file, or the built-in modules.
func loadProbeModules(path string) (*probe.Modules, error) {
	if path == "" {
		return probe.DefaultModules(), nil
	}
	return probe.LoadModulesFile(path)
}

func runProbeOnce(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("probe once", "probe once [-config FILE] [-module NAME] TARGET...", stderr)
	config := fs.String("config", "", "modules file in blackbox_exporter's format (default: the built-in modules)")
	module := fs.String("module", "", "module to probe with (default: http_2xx for a URL, tcp_connect otherwise)")
	insecure := fs.Bool("insecure", false, "accept any certificate (the facts are still reported: issuer, expiry, …)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "penstock probe once: no target")
		fs.Usage()
		return errUsage
	}
	mods, err := loadProbeModules(*config)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	p := &probe.Prober{Sessions: tls.NewLRUClientSessionCache(64)}
	enc := json.NewEncoder(stdout)
	failed := 0
	for _, target := range fs.Args() {
		name := *module
		if name == "" {
			name = probe.GuessModule(target)
		}
		m, ok := mods.Modules[name]
		if !ok {
			return fmt.Errorf("unknown module %q", name)
		}
		if *insecure {
			m = m.Insecure()
		}
		r := p.Probe(ctx, target, name, m)
		enc.Encode(r)
		if !r.Success {
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d probes failed", failed, fs.NArg())
	}
	return nil
}

func runProbeServe(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("probe serve", "probe serve [-config FILE] [-listen ADDR]", stderr)
	config := fs.String("config", "", "modules file in blackbox_exporter's format, reloaded on change and on SIGHUP (default: the built-in modules)")
	listen := fs.String("listen", "127.0.0.1:9115", "address to serve /probe and /metrics on")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	mods, err := loadProbeModules(*config)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	exp := probe.NewExporter(mods, reg)
	exp.Prober.Sessions = tls.NewLRUClientSessionCache(1024)
	load := func() {
		m, err := loadProbeModules(*config)
		if err != nil {
			log.Error("modules not reloaded", "error", err)
			return
		}
		exp.SetModules(m)
		log.Info("modules reloaded", "modules", len(m.Modules))
	}
	if *config != "" {
		w, err := reload.WatchFiles([]string{*config}, 100*time.Millisecond, 0, log, load)
		if err != nil {
			return err
		}
		defer w.Close()
	}
	mux := http.NewServeMux()
	mux.Handle("/probe", exp)
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/-/healthy", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "Healthy") })
	mux.HandleFunc("/-/reload", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		load()
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintf(w, "penstock probe: /probe?target=…&module=… (blackbox_exporter compatible), /metrics, /-/healthy, /-/reload\n")
	})
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				load()
			}
		}
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	log.Info("probe exporter listening", "address", ln.Addr().String(), "modules", len(mods.Modules))
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func runProbeRun(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("probe run", "probe run -targets FILE [flags]", stderr)
	targets := fs.String("targets", "", "target list: one TARGET [MODULE] per line; URLs, host:port, CIDR ranges (required)")
	config := fs.String("config", "", "modules file in blackbox_exporter's format (default: the built-in modules)")
	module := fs.String("module", "tcp_connect", "module for lines that name none")
	out := fs.String("out", "-", "where the JSON lines go: a file, - for standard output, or empty for none")
	rate := fs.Float64("rate", 0, "global pace, probe starts per second (0: as fast as -concurrency allows)")
	burst := fs.Int64("burst", 0, "how far the pace may catch up after falling behind, in probes (default: one second's worth)")
	concurrency := fs.Int("concurrency", 1000, "most probes in flight")
	perDest := fs.Int("per-destination", 0, "most probes per destination in any -per-window (0: no limit)")
	perWindow := fs.Duration("per-window", time.Second, "the per-destination window")
	perPrefix := fs.Bool("per-prefix", false, "limit per IPv4 /24 (IPv6 /64) rather than per address")
	backoff := fs.Duration("backoff", 0, "hold a destination back this long after a refused, reset or timed-out probe, doubling up to 64x until one succeeds (0: off)")
	interval := fs.Duration("interval", 0, "start a pass every interval (0: one pass and exit)")
	cycles := fs.Int("cycles", 0, "stop after this many passes (0: until interrupted)")
	metrics := fs.String("metrics", "", "serve the aggregates as Prometheus metrics on this address (e.g. 127.0.0.1:9116)")
	progress := fs.Bool("progress", isTerminal(os.Stderr), "print a progress line on standard error (default: when it is a terminal)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *targets == "" {
		fmt.Fprintln(stderr, "penstock probe run: -targets is required")
		fs.Usage()
		return errUsage
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	mods, err := loadProbeModules(*config)
	if err != nil {
		return err
	}
	tg, err := probe.LoadTargetsFile(*targets, *module, mods)
	if err != nil {
		return err
	}
	w, closeOut, err := openOutput(*out, stdout)
	if err != nil {
		return err
	}
	defer closeOut()
	reg := prometheus.NewRegistry()
	s, err := probe.NewScanner(probe.ScanConfig{
		Concurrency: *concurrency, Rate: *rate, Burst: *burst, PerDestination: *perDest, PerWindow: *perWindow,
		PerPrefix: *perPrefix, Backoff: *backoff, Interval: *interval, Cycles: *cycles,
	}, &probe.Prober{Sessions: tls.NewLRUClientSessionCache(4096)}, w, reg)
	if err != nil {
		return err
	}
	s.SetTargets(tg, mods)
	stopWatch, err := s.Watch(*targets, *config, *module, log)
	if err != nil {
		return err
	}
	defer stopWatch()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if *metrics != "" {
		ln, err := net.Listen("tcp", *metrics)
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		defer srv.Close()
	}
	pctx, pstop := context.WithCancel(ctx)
	if *progress {
		go s.Progress(pctx, stderr, time.Second)
	}
	start := time.Now()
	err = s.Run(ctx)
	pstop()
	st := s.Stats()
	fmt.Fprintf(stderr, "penstock probe run: %d probes in %v, %d failed\n", st.Done, time.Since(start).Round(time.Millisecond), st.Failed)
	return err
}

// isTerminal reports whether f is a character device (a terminal).
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// openOutput opens the -out of a probe command: none for "", stdout for
// "-", else a file created at path (close it with the returned func).
func openOutput(path string, stdout io.Writer) (io.Writer, func(), error) {
	switch path {
	case "":
		return nil, func() {}, nil
	case "-":
		return stdout, func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, nil, err
	}
	return f, func() { f.Close() }, nil
}
