// Command loadgen is a small open-loop, constant-rate HTTP/1.1 load generator
// for penstock's proxy benchmarks. It is used for every proxy compared, so
// that the proxies are measured by the same tool in the same way.
//
// Requests are scheduled at fixed intended send times (start + i/rate),
// independently of how fast responses come back. Each request's latency is
// measured from its intended send time, not from when a connection became
// free to send it, so a stalled server is charged for the requests that queued
// behind the stall (no coordinated omission). Latencies go into an HDR
// histogram.
//
// A fixed pool of keep-alive connections (-connections) carries the load; a
// connection sends its next request only after reading the previous response
// (no pipelining). A request that finds no free connection waits, and that
// wait counts in its latency. Requests that start more than -late after their
// intended time are counted as late starts: many of them mean the pool, the
// generator or the machine could not keep up with the rate, and the
// percentiles then describe an overloaded system.
//
// The run is bounded: the warm-up, then the measured duration, then at most
// -timeout (plus a margin) for the last responses; a watchdog ends the process
// should anything still hang. Only loopback targets are accepted.
//
// Output: one JSON object on one line on stdout, and a human summary on
// stderr.
//
// Usage:
//
//	loadgen -url http://127.0.0.1:8080/ -rate 2000 -duration 15s -connections 50 -warmup 3s
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram range in microseconds: 1µs to 60s, 3 significant digits.
const (
	histMinMicros = 1
	histMaxMicros = 60_000_000
	histSigFigs   = 3
)

// minTick is the shortest scheduler tick; at higher rates each tick sends
// several requests.
const minTick = 20 * time.Microsecond

type options struct {
	url         string
	rate        int
	duration    time.Duration
	warmup      time.Duration
	connections int
	timeout     time.Duration
	late        time.Duration
}

// result is the JSON line printed on stdout. Latencies are in microseconds and
// cover the measured phase only (not the warm-up).
type result struct {
	URL             string  `json:"url"`
	TargetRate      int     `json:"target_rate"`
	DurationSeconds float64 `json:"duration_s"`
	WarmupSeconds   float64 `json:"warmup_s"`
	Connections     int     `json:"connections"`
	Requests        int64   `json:"requests"`
	OK              int64   `json:"ok"`
	Errors          int64   `json:"errors"`
	Unfinished      int64   `json:"unfinished"`
	LateStarts      int64   `json:"late_starts"`
	LateThresholdUS int64   `json:"late_threshold_us"`
	AchievedRate    float64 `json:"achieved_rate"`
	P50US           int64   `json:"p50_us"`
	P90US           int64   `json:"p90_us"`
	P99US           int64   `json:"p99_us"`
	P999US          int64   `json:"p999_us"`
	MaxUS           int64   `json:"max_us"`
	MeanUS          float64 `json:"mean_us"`
	// StartLag is how long requests waited between their intended time and
	// the moment a connection began to send them (scheduler wake-up plus
	// waiting for a free connection). It is part of every latency above; a
	// large lag points at the generator or the pool rather than the server.
	StartLagP50US int64 `json:"start_lag_p50_us"`
	StartLagP99US int64 `json:"start_lag_p99_us"`
	// TotalSent counts every request that finished (with a response or an
	// error), warm-up included, and TotalOK those that succeeded; they let a
	// caller divide a server's CPU time over the whole run.
	TotalSent int64 `json:"total_sent"`
	TotalOK   int64 `json:"total_ok"`
	// FirstError is the text of the first error seen, if any.
	FirstError string `json:"first_error,omitempty"`
}

func main() {
	var o options
	flag.StringVar(&o.url, "url", "", "target URL, http://HOST:PORT/PATH on a loopback address (required)")
	flag.IntVar(&o.rate, "rate", 1000, "requests per second, constant (open loop)")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured duration, after the warm-up")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "warm-up at the same rate, not measured")
	flag.IntVar(&o.connections, "connections", 50, "keep-alive connections in the pool")
	flag.DurationVar(&o.timeout, "timeout", 5*time.Second, "per-request timeout (dial, write and read)")
	flag.DurationVar(&o.late, "late", time.Millisecond, "a request that starts more than this after its intended time is a late start")
	flag.Parse()

	if err := run(o); err != nil {
		fmt.Fprintf(os.Stderr, "loadgen: %v\n", err)
		os.Exit(1)
	}
}

func run(o options) error {
	switch {
	case o.url == "":
		return errors.New("-url is required")
	case o.rate <= 0:
		return errors.New("-rate must be positive")
	case o.duration <= 0:
		return errors.New("-duration must be positive")
	case o.warmup < 0:
		return errors.New("-warmup must not be negative")
	case o.connections <= 0:
		return errors.New("-connections must be positive")
	case o.timeout <= 0:
		return errors.New("-timeout must be positive")
	}
	target, err := newTarget(o.url)
	if err != nil {
		return err
	}

	// Watchdog: whatever happens (a stalled server, a starved machine), the
	// process ends a bounded time after the planned end of the run.
	hardLimit := o.warmup + o.duration + o.timeout + 30*time.Second
	time.AfterFunc(hardLimit, func() {
		fmt.Fprintf(os.Stderr, "loadgen: still running after %s, giving up\n", hardLimit)
		os.Exit(2)
	})

	interval := time.Second / time.Duration(o.rate)
	if interval <= 0 {
		return errors.New("-rate is too high")
	}
	total := int64((o.warmup + o.duration) / interval)

	// The queue holds the intended send time of every scheduled request not
	// yet taken by a connection. It is large enough that the scheduler never
	// blocks on a stalled server for a long time; if it does block, the
	// intended times stay exact, so latencies remain correct.
	queueLen := min(total, 1<<20)
	queue := make(chan time.Time, queueLen)

	period := max(interval, minTick)
	tick, err := newTicker(period)
	if err != nil {
		return err
	}
	start := time.Now().Add(period)
	measureFrom := start.Add(o.warmup)
	end := measureFrom.Add(o.duration)

	workers := make([]*worker, o.connections)
	var wg sync.WaitGroup
	for i := range workers {
		w := &worker{
			target:      target,
			opts:        &o,
			measureFrom: measureFrom,
			hist:        hdrhistogram.New(histMinMicros, histMaxMicros, histSigFigs),
			lag:         hdrhistogram.New(histMinMicros, histMaxMicros, histSigFigs),
		}
		workers[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.loop(queue)
		}()
	}

	// Scheduler: on every tick, enqueue each request whose intended time
	// has come. A late wake-up sends the overdue requests at once, each
	// keeping its own intended time, so the schedule error shows in the
	// latencies instead of being hidden.
	var scheduled, measured int64
	for scheduled < total {
		if _, err := tick.wait(); err != nil {
			tick.stop()
			return err
		}
		now := time.Now()
		for scheduled < total {
			t := start.Add(time.Duration(scheduled) * interval)
			if t.After(now) {
				break
			}
			queue <- t
			scheduled++
			if !t.Before(measureFrom) {
				measured++
			}
		}
	}
	tick.stop()
	close(queue)

	// Bounded drain: the last requests get at most one timeout (plus a
	// margin) to finish. Workers still busy after that are abandoned and
	// their requests counted as unfinished.
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	drainDeadline := time.NewTimer(o.timeout + 2*time.Second)
	select {
	case <-done:
		drainDeadline.Stop()
	case <-drainDeadline.C:
	}

	res := result{
		URL:             o.url,
		TargetRate:      o.rate,
		DurationSeconds: o.duration.Seconds(),
		WarmupSeconds:   o.warmup.Seconds(),
		Connections:     o.connections,
		LateThresholdUS: o.late.Microseconds(),
	}
	hist := hdrhistogram.New(histMinMicros, histMaxMicros, histSigFigs)
	lag := hdrhistogram.New(histMinMicros, histMaxMicros, histSigFigs)
	var lastDone time.Time
	for _, w := range workers {
		w.mu.Lock()
		hist.Merge(w.hist)
		lag.Merge(w.lag)
		res.OK += w.ok
		res.Errors += w.errors
		res.LateStarts += w.late
		res.TotalSent += w.totalSent
		res.TotalOK += w.totalOK
		if w.lastDone.After(lastDone) {
			lastDone = w.lastDone
		}
		if res.FirstError == "" && w.firstErr != nil {
			res.FirstError = w.firstErr.Error()
		}
		w.mu.Unlock()
	}
	res.Requests = res.OK + res.Errors
	res.Unfinished = max(measured-res.Requests, 0)
	window := end.Sub(measureFrom)
	if d := lastDone.Sub(measureFrom); d > window {
		window = d
	}
	res.AchievedRate = float64(res.OK) / window.Seconds()
	res.P50US = hist.ValueAtQuantile(50)
	res.P90US = hist.ValueAtQuantile(90)
	res.P99US = hist.ValueAtQuantile(99)
	res.P999US = hist.ValueAtQuantile(99.9)
	res.MaxUS = hist.Max()
	res.MeanUS = hist.Mean()
	res.StartLagP50US = lag.ValueAtQuantile(50)
	res.StartLagP99US = lag.ValueAtQuantile(99)

	line, err := json.Marshal(res)
	if err != nil {
		return err
	}
	fmt.Println(string(line))
	printHuman(os.Stderr, &res)
	return nil
}

func printHuman(w io.Writer, r *result) {
	ms := func(us int64) string { return fmt.Sprintf("%.3f ms", float64(us)/1000) }
	fmt.Fprintf(w, "loadgen: %s at %d req/s for %gs (warm-up %gs), %d connections\n",
		r.URL, r.TargetRate, r.DurationSeconds, r.WarmupSeconds, r.Connections)
	fmt.Fprintf(w, "  achieved   %.1f req/s (%d ok, %d errors, %d unfinished)\n",
		r.AchievedRate, r.OK, r.Errors, r.Unfinished)
	fmt.Fprintf(w, "  late start %d (more than %dµs after the intended time); start lag p50 %s  p99 %s\n",
		r.LateStarts, r.LateThresholdUS, ms(r.StartLagP50US), ms(r.StartLagP99US))
	fmt.Fprintf(w, "  latency    p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  mean %.3f ms\n",
		ms(r.P50US), ms(r.P90US), ms(r.P99US), ms(r.P999US), ms(r.MaxUS), r.MeanUS/1000)
	if r.FirstError != "" {
		fmt.Fprintf(w, "  first error: %s\n", r.FirstError)
	}
}

// target is the parsed URL and the request bytes sent on every request.
type target struct {
	addr    string // host:port to dial
	request []byte // the full HTTP/1.1 GET request
}

func newTarget(raw string) (*target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("-url: %w", err)
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("-url: scheme %q not supported, only http", u.Scheme)
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "80"
	}
	if err := requireLoopback(host); err != nil {
		return nil, err
	}
	path := u.RequestURI()
	if path == "" {
		path = "/"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\n", path)
	fmt.Fprintf(&b, "Host: %s\r\n", u.Host)
	b.WriteString("User-Agent: penstock-bench-loadgen\r\n")
	b.WriteString("Accept: */*\r\n")
	b.WriteString("\r\n")
	return &target{addr: net.JoinHostPort(host, port), request: []byte(b.String())}, nil
}

// requireLoopback refuses any target that is not on this machine's loopback
// interface: the benchmark must never send load elsewhere.
func requireLoopback(host string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return fmt.Errorf("-url: resolving %q: %w", host, err)
	}
	if len(addrs) == 0 {
		return fmt.Errorf("-url: %q has no address", host)
	}
	for _, a := range addrs {
		if !a.Unmap().IsLoopback() {
			return fmt.Errorf("-url: %q resolves to %s, which is not a loopback address; only loopback targets are allowed", host, a)
		}
	}
	return nil
}

// worker owns one keep-alive connection and sends one request at a time.
type worker struct {
	target      *target
	opts        *options
	measureFrom time.Time

	conn net.Conn
	br   *bufio.Reader

	mu        sync.Mutex              // guards the fields below against a read after an abandoned drain
	hist      *hdrhistogram.Histogram // latency from the intended time, µs
	lag       *hdrhistogram.Histogram // start lag, µs
	ok        int64
	errors    int64
	late      int64
	totalSent int64
	totalOK   int64
	lastDone  time.Time
	firstErr  error
}

func (w *worker) loop(queue <-chan time.Time) {
	defer w.closeConn()
	for intended := range queue {
		started := time.Now()
		err := w.do()
		finished := time.Now()

		w.mu.Lock()
		w.totalSent++
		if err == nil {
			w.totalOK++
		}
		if !intended.Before(w.measureFrom) {
			lag := started.Sub(intended)
			if lag > w.opts.late {
				w.late++
			}
			_ = w.lag.RecordValue(clampMicros(lag))
			if err != nil {
				w.errors++
				if w.firstErr == nil {
					w.firstErr = err
				}
			} else {
				w.ok++
				_ = w.hist.RecordValue(clampMicros(finished.Sub(intended)))
			}
			w.lastDone = finished
		}
		w.mu.Unlock()
	}
}

// clampMicros converts d to microseconds within the histograms' range.
func clampMicros(d time.Duration) int64 {
	return min(max(d.Microseconds(), histMinMicros), histMaxMicros)
}

// do sends one request on the worker's connection, dialing if needed, and
// reads the whole response. Any error closes the connection; the next request
// dials a new one.
func (w *worker) do() error {
	if w.conn == nil {
		c, err := net.DialTimeout("tcp", w.target.addr, w.opts.timeout)
		if err != nil {
			return err
		}
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(true)
		}
		w.conn = c
		w.br = bufio.NewReaderSize(c, 16<<10)
	}
	if err := w.conn.SetDeadline(time.Now().Add(w.opts.timeout)); err != nil {
		w.closeConn()
		return err
	}
	if _, err := w.conn.Write(w.target.request); err != nil {
		w.closeConn()
		return err
	}
	resp, err := http.ReadResponse(w.br, nil)
	if err != nil {
		w.closeConn()
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		w.closeConn()
		return err
	}
	if resp.Close {
		w.closeConn()
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("status %s", resp.Status)
	}
	return nil
}

func (w *worker) closeConn() {
	if w.conn != nil {
		_ = w.conn.Close()
		w.conn = nil
		w.br = nil
	}
}
