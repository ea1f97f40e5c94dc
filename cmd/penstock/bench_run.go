package main

import (
	"bufio"
	"bytes"
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
	"github.com/penstock-dev/penstock/internal/loadtest/runlog"
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

Interleaved A/B (--vs URL_B): the arms alternate in short slices (A B B A
A B B A ...), each slice a run of its own, so that both see the same
machine; two runs one after the other on a shared machine differ by more
than chance. Compare the two logs with 'penstock bench compare', which
resamples whole slices.

Examples:
  penstock bench run --rate 2000 --duration 30s --out a.hlog http://127.0.0.1:8080/
  penstock bench run --rate 500 --duration 20s --out a.hlog --vs http://127.0.0.1:8081/ --out-b b.hlog http://127.0.0.1:8080/
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
	vs := fs.String("vs", "", "interleaved A/B: the B target (the URLs given are A); the arms alternate in --slice slices, A B B A A B ...")
	slice := fs.Duration("slice", time.Second, "with --vs: length of one slice (a whole number of seconds); --duration is each arm's total")
	outB := fs.String("out-b", "", "with --vs: write B's run log here (--out is A's)")

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

	if *vs != "" {
		return runInterleaved(o, *vs, *slice, *out, *outB, stdout, stderr)
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

// runInterleaved measures the URLs of o (arm A) and urlB (arm B) in
// alternating slices and writes each arm's slices joined into one run log.
func runInterleaved(o loadtest.Options, urlB string, slice time.Duration, outA, outB string, stdout, stderr io.Writer) error {
	total := o.Duration
	if total == 0 {
		total = 10 * time.Second
	}
	if slice < time.Second || slice%time.Second != 0 {
		return fmt.Errorf("--slice %v: want a whole number of seconds (the run log's interval)", slice)
	}
	n := int(total / slice)
	if n < 4 {
		return fmt.Errorf("--duration %v with --slice %v gives %d slices per arm; want at least 4 (the comparison permutes slices)", total, slice, n)
	}
	if o.Requests > 0 || o.Concurrency > 0 || o.Handshakes > 0 {
		return errors.New("--vs works with open-loop runs (--rate or --profile), not --requests, --concurrency or --handshakes")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	arms := [2]struct {
		name, out string
		urls      []string
		logs      []*runlog.Log
		requests  int64
		errors    int64
	}{{name: "A", out: outA, urls: o.URLs}, {name: "B", out: outB, urls: []string{urlB}}}
	for i := range 2 * n {
		arm := &arms[(i+1)/2%2] // A B B A A B B A: a linear drift hits both arms alike
		so := o
		so.URLs, so.Duration, so.Interval, so.OnInterval = arm.urls, slice, time.Second, nil
		var buf bytes.Buffer
		so.Log = &buf
		res, err := loadtest.Run(ctx, so)
		if err != nil {
			return fmt.Errorf("arm %s, slice %d: %w", arm.name, len(arm.logs)+1, err)
		}
		l, err := runlog.Read(&buf)
		if err != nil {
			return fmt.Errorf("arm %s, slice %d: %w", arm.name, len(arm.logs)+1, err)
		}
		arm.logs = append(arm.logs, l)
		arm.requests += res.Requests
		arm.errors += res.ErrorsAll
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	for _, arm := range arms {
		joined := runlog.Concat(arm.logs, slice, time.Second)
		joined.Meta["arm"] = arm.name
		h := joined.Merged(runlog.Total)
		if h == nil {
			return fmt.Errorf("arm %s: no latencies recorded", arm.name)
		}
		fmt.Fprintf(stdout, "%s %s: %d requests, %d errors, P50 %s, P99 %s, P99.9 %s, max %s\n", arm.name, strings.Join(arm.urls, " "),
			arm.requests, arm.errors, formatMicros(float64(h.ValueAtQuantile(50)), false), formatMicros(float64(h.ValueAtQuantile(99)), false),
			formatMicros(float64(h.ValueAtQuantile(99.9)), false), formatMicros(float64(h.Max()), false))
		if arm.out == "" {
			continue
		}
		var buf bytes.Buffer
		if err := runlog.WriteLog(&buf, joined); err != nil {
			return err
		}
		if err := os.WriteFile(arm.out, buf.Bytes(), 0o644); err != nil {
			return err
		}
	}
	if outA != "" && outB != "" {
		fmt.Fprintf(stdout, "compare with: penstock bench compare %s %s\n", outA, outB)
	}
	return nil
}
