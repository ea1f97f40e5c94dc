package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/penstock-dev/penstock/internal/loadtest"
)

const benchRunSynopsis = `bench run [flags] URL [URL...]

Sends HTTP load at the URLs (used in turn, request by request) and prints a
summary; --out writes the run log (an HdrHistogram interval log with one
histogram per phase per second) for 'penstock bench compare' and 'report'.

Modes:
  --rate N                  open loop: N requests/s at fixed intended times,
                            latency measured from each request's intended
                            send time (no coordinated omission); requests
                            that cannot start on time count as late starts
  --profile P               open loop with a varying rate:
                              constant             the --rate all along
                              ramp:FROM-TO         linear over --duration
                              step:R1,R2,R3/10s    each rate for 10s, then the last
                              surge:base=1000,x=5,for=2s,every=10s
                                                   base rate, x times it for 2s every 10s
  --concurrency N           closed loop: N workers, each sending when its
                            previous response is in (with --rate: paced to
                            that total rate); latency from the actual send
  --handshakes N/s          handshake storm: N new TLS (h3: QUIC) connections
                            per second, each closed after its handshake
                            (and one request with --handshake-request)

Examples:
  penstock bench run --rate 2000 --duration 30s --out a.hlog http://127.0.0.1:8080/
  penstock bench run --proto h2 --insecure --streams 10 --rate 5000 https://127.0.0.1:8443/
  penstock bench run --concurrency 50 --duration 10s http://127.0.0.1:8080/
  penstock bench run --proto h3 --insecure --handshakes 200/s --group x25519mlkem768 https://127.0.0.1:8443/

Flags:`

// headerFlags collects repeated -H "Name: value" flags.
type headerFlags struct{ h http.Header }

func (f *headerFlags) String() string { return "" }
func (f *headerFlags) Set(v string) error {
	name, value, ok := strings.Cut(v, ":")
	if !ok || strings.TrimSpace(name) == "" {
		return fmt.Errorf("want \"Name: value\", got %q", v)
	}
	f.h.Add(strings.TrimSpace(name), strings.TrimSpace(value))
	return nil
}

func runBenchRun(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench run", benchRunSynopsis, stderr)
	var o loadtest.Options
	headers := headerFlags{h: http.Header{}}
	fs.StringVar(&o.Proto, "proto", "h1", "protocol: h1 (HTTP/1.1, http or https), h2 (HTTP/2 over TLS), h2c (HTTP/2 cleartext) or h3 (HTTP/3)")
	fs.StringVar(&o.Method, "method", "GET", "request method")
	fs.Var(&headers, "H", "request header \"Name: value\" (repeatable)")
	body := fs.String("body", "", "request body")
	bodyFile := fs.String("body-file", "", "file whose content is the request body")
	fs.Float64Var(&o.Rate, "rate", 0, "open loop: requests per second (with --concurrency: a cap on the closed loop's rate)")
	profile := fs.String("profile", "", "open-loop rate profile: constant, ramp:FROM-TO, step:R1,R2,.../DUR or surge:base=B,x=F,for=DUR,every=DUR")
	fs.IntVar(&o.Concurrency, "concurrency", 0, "closed loop: number of workers")
	handshakes := fs.String("handshakes", "", "handshake storm: new connections per second, e.g. 200/s")
	fs.BoolVar(&o.HandshakeRequest, "handshake-request", false, "handshake storm: send one request on each new connection")
	fs.StringVar(&o.Group, "group", "", "TLS key exchange group: x25519, p256 or x25519mlkem768 (default: Go's preference)")
	fs.IntVar(&o.Connections, "connections", 0, "connections per origin (default 50 open loop, --concurrency closed loop; storm: handshakes in progress at once, default 256)")
	fs.IntVar(&o.Streams, "streams", 1, "requests in flight per HTTP/2 or HTTP/3 connection")
	fs.IntVar(&o.Churn, "churn", 0, "open a new connection every N requests (0: keep connections)")
	fs.BoolVar(&o.Insecure, "insecure", false, "do not verify the server's certificate")
	fs.DurationVar(&o.Timeout, "timeout", 5*time.Second, "per-request timeout (also for connect and handshake)")
	fs.DurationVar(&o.Duration, "duration", 0, "measured duration (default 10s; with --requests, up to 1h)")
	fs.Int64Var(&o.Requests, "requests", 0, "end after this many measured requests (or --duration, whichever comes first)")
	fs.DurationVar(&o.Warmup, "warmup", 0, "warm-up before the measured duration, excluded from the results")
	fs.DurationVar(&o.Late, "late", time.Millisecond, "a request starting more than this after its intended time is a late start")
	out := fs.String("out", "", "write the run log (HdrHistogram interval log) to this file")
	jsonOut := fs.String("json", "", "write the JSON summary to this file (- for stdout, instead of the text)")
	quiet := fs.Bool("quiet", false, "no progress line")

	var urls []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return err
			}
			return errUsage
		}
		if fs.NArg() == 0 {
			break
		}
		urls = append(urls, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(urls) == 0 {
		fmt.Fprintf(stderr, "penstock bench run: no target URL\n\n")
		fs.Usage()
		return errUsage
	}
	o.URLs = urls
	o.Header = headers.h
	o.Version = versionString()
	switch {
	case *body != "" && *bodyFile != "":
		return errors.New("--body and --body-file: use one")
	case *body != "":
		o.Body = []byte(*body)
	case *bodyFile != "":
		b, err := os.ReadFile(*bodyFile)
		if err != nil {
			return err
		}
		o.Body = b
	}
	if *handshakes != "" {
		n, err := strconv.ParseFloat(strings.TrimSuffix(*handshakes, "/s"), 64)
		if err != nil || !(n > 0) {
			return fmt.Errorf("--handshakes %q: want a rate like 200/s", *handshakes)
		}
		o.Handshakes = n
	}
	if *profile != "" {
		d := o.Duration
		if d == 0 {
			d = 10 * time.Second
		}
		p, err := loadtest.ParseProfile(*profile, o.Rate, d)
		if err != nil {
			return err
		}
		o.Profile = p
	}

	var logFile *os.File
	var logBuf *bufio.Writer
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			return err
		}
		logFile = f
		defer logFile.Close()
		logBuf = bufio.NewWriter(f)
		o.Log = logBuf
	}
	doneProgress := func() {}
	if !*quiet && loadtest.IsTerminal(stderr) {
		d := o.Duration
		if d == 0 {
			d = 10 * time.Second
		}
		o.OnInterval, doneProgress = loadtest.ProgressLine(stderr, d)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	res, err := loadtest.Run(ctx, o)
	doneProgress()
	if err != nil {
		return err
	}
	if logBuf != nil {
		if err := logBuf.Flush(); err != nil {
			return err
		}
		if err := logFile.Close(); err != nil {
			return err
		}
	}
	if *jsonOut != "" {
		b, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return err
		}
		b = append(b, '\n')
		if *jsonOut == "-" {
			_, err = stdout.Write(b)
			return err
		}
		if err := os.WriteFile(*jsonOut, b, 0o644); err != nil {
			return err
		}
	}
	return res.WriteText(stdout)
}
