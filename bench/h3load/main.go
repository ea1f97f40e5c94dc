// Command h3load drives penstock over HTTP/2 or HTTP/3 for the
// bench/h3-vs-h2.sh comparison. It has three modes, each bounded in time:
//
//   - max: closed loop; -concurrency requests in flight at all times, spread
//     over -connections connections, for -duration; reports requests/s.
//   - rate: open loop at a constant -rate for -warmup + -duration, over
//     -connections connections; each request's latency is measured from its
//     intended send time (start + i/rate), so stalls are not hidden
//     (no coordinated omission). Reports P50/P99/P99.9.
//   - idle: opens -connections connections, sends one request on each, then
//     writes "ready" to stdout and holds them idle for -hold before closing;
//     the caller measures the server's memory meanwhile.
//
// Only loopback targets are accepted; the certificate is not verified (the
// benchmark uses a self-signed one). Output: one JSON line on stdout.
//
// Usage:
//
//	h3load -proto h3 -mode rate -url https://127.0.0.1:18443/ -rate 2000 -duration 15s
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

type options struct {
	proto, mode, url      string
	rate, conns, inflight int
	duration, warmup      time.Duration
	hold, timeout         time.Duration
}

type result struct {
	Proto       string  `json:"proto"`
	Mode        string  `json:"mode"`
	Connections int     `json:"connections"`
	Requests    int64   `json:"requests"`
	Errors      int64   `json:"errors"`
	RPS         float64 `json:"rps"`
	P50US       int64   `json:"p50_us,omitempty"`
	P99US       int64   `json:"p99_us,omitempty"`
	P999US      int64   `json:"p999_us,omitempty"`
	FirstError  string  `json:"first_error,omitempty"`
}

func main() {
	var o options
	flag.StringVar(&o.proto, "proto", "h3", "h2 or h3")
	flag.StringVar(&o.mode, "mode", "rate", "max, rate or idle")
	flag.StringVar(&o.url, "url", "", "https://127.0.0.1:PORT/PATH (required, loopback only)")
	flag.IntVar(&o.rate, "rate", 1000, "rate mode: requests per second")
	flag.IntVar(&o.conns, "connections", 10, "connections to open")
	flag.IntVar(&o.inflight, "concurrency", 50, "max mode: requests in flight")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured duration")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "rate mode: unmeasured warm-up at the same rate")
	flag.DurationVar(&o.hold, "hold", 10*time.Second, "idle mode: how long to hold the connections")
	flag.DurationVar(&o.timeout, "timeout", 5*time.Second, "per-request timeout")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintf(os.Stderr, "h3load: %v\n", err)
		os.Exit(1)
	}
}

func run(o options) error {
	u, err := url.Parse(o.url)
	if err != nil || u.Scheme != "https" {
		return errors.New("-url must be https://HOST:PORT/PATH")
	}
	if ip := net.ParseIP(u.Hostname()); ip == nil || !ip.IsLoopback() {
		return errors.New("-url must name a loopback address")
	}
	if o.conns <= 0 || o.rate <= 0 || o.inflight <= 0 || o.duration <= 0 {
		return errors.New("-connections, -rate, -concurrency and -duration must be positive")
	}
	limit := o.warmup + o.duration + o.hold + o.timeout + 60*time.Second
	time.AfterFunc(limit, func() {
		fmt.Fprintf(os.Stderr, "h3load: still running after %s, giving up\n", limit)
		os.Exit(2)
	})
	clients, closeAll, err := dial(o)
	if err != nil {
		return err
	}
	defer closeAll()
	res := result{Proto: o.proto, Mode: o.mode, Connections: o.conns}
	switch o.mode {
	case "idle":
		err = idle(o, clients, &res)
	case "max":
		err = closedLoop(o, clients, &res)
	case "rate":
		err = openLoop(o, clients, &res)
	default:
		err = fmt.Errorf("unknown -mode %q", o.mode)
	}
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// dial returns one client per connection. HTTP/3 connections share one UDP
// socket (one quic.Transport), as a browser's would; HTTP/2 ones are one TCP
// connection per client.
func dial(o options) ([]*http.Client, func(), error) {
	tlsConf := &tls.Config{InsecureSkipVerify: true}
	clients := make([]*http.Client, o.conns)
	var closers []func()
	closeAll := func() {
		for _, c := range closers {
			c()
		}
	}
	if o.proto == "h2" {
		for i := range clients {
			var p http.Protocols
			p.SetHTTP2(true)
			tr := &http.Transport{Protocols: &p, TLSClientConfig: tlsConf, MaxConnsPerHost: 1,
				HTTP2: &http.HTTP2Config{MaxConcurrentStreams: 1000}}
			clients[i] = &http.Client{Transport: tr, Timeout: o.timeout}
			closers = append(closers, tr.CloseIdleConnections)
		}
		return clients, closeAll, nil
	}
	if o.proto != "h3" {
		return nil, nil, fmt.Errorf("unknown -proto %q", o.proto)
	}
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	qt := &quic.Transport{Conn: udp}
	closers = append(closers, func() { qt.Close(); udp.Close() })
	qconf := &quic.Config{MaxIdleTimeout: o.hold + o.duration + o.warmup + 30*time.Second, MaxIncomingStreams: 1000}
	for i := range clients {
		tr := &http3.Transport{
			TLSClientConfig: tlsConf,
			QUICConfig:      qconf,
			Dial: func(ctx context.Context, addr string, tc *tls.Config, qc *quic.Config) (*quic.Conn, error) {
				ua, err := net.ResolveUDPAddr("udp", addr)
				if err != nil {
					return nil, err
				}
				return qt.DialEarly(ctx, ua, tc, qc)
			},
		}
		clients[i] = &http.Client{Transport: tr, Timeout: o.timeout}
		closers = append(closers, func() { tr.Close() })
	}
	return clients, closeAll, nil
}

func get(c *http.Client, u string) error {
	resp, err := c.Get(u)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != 200 {
		err = fmt.Errorf("status %d", resp.StatusCode)
	}
	return err
}

func idle(o options, clients []*http.Client, res *result) error {
	for i, c := range clients {
		if err := get(c, o.url); err != nil {
			return fmt.Errorf("connection %d: %w", i, err)
		}
		res.Requests++
	}
	fmt.Fprintln(os.Stderr, "ready")
	fmt.Println("ready")
	time.Sleep(o.hold)
	return nil
}

// counter records outcomes from many goroutines.
type counter struct {
	ok, errs atomic.Int64
	mu       sync.Mutex
	first    string
	hist     *hdrhistogram.Histogram
}

func (c *counter) record(err error, latency time.Duration, measured bool) {
	if err != nil {
		c.errs.Add(1)
		c.mu.Lock()
		if c.first == "" {
			c.first = err.Error()
		}
		c.mu.Unlock()
		return
	}
	c.ok.Add(1)
	if measured && c.hist != nil {
		c.mu.Lock()
		c.hist.RecordValue(max(latency.Microseconds(), 1))
		c.mu.Unlock()
	}
}

func closedLoop(o options, clients []*http.Client, res *result) error {
	var c counter
	end := time.Now().Add(o.duration)
	var wg sync.WaitGroup
	for i := range o.inflight {
		cl := clients[i%len(clients)]
		wg.Go(func() {
			for time.Now().Before(end) {
				c.record(get(cl, o.url), 0, false)
			}
		})
	}
	wg.Wait()
	res.Requests, res.Errors, res.FirstError = c.ok.Load(), c.errs.Load(), c.first
	res.RPS = float64(res.Requests) / o.duration.Seconds()
	return nil
}

func openLoop(o options, clients []*http.Client, res *result) error {
	c := counter{hist: hdrhistogram.New(1, 60_000_000, 3)}
	interval := time.Second / time.Duration(o.rate)
	total := int64((o.warmup + o.duration) / interval)
	start := time.Now().Add(10 * time.Millisecond)
	measureFrom := start.Add(o.warmup)
	var wg sync.WaitGroup
	for i := int64(0); i < total; i++ {
		intended := start.Add(time.Duration(i) * interval)
		if d := time.Until(intended); d > 0 {
			time.Sleep(d)
		}
		cl := clients[i%int64(len(clients))]
		wg.Go(func() {
			err := get(cl, o.url)
			c.record(err, time.Since(intended), !intended.Before(measureFrom))
		})
	}
	wg.Wait()
	res.Requests, res.Errors, res.FirstError = c.ok.Load(), c.errs.Load(), c.first
	res.RPS = float64(c.hist.TotalCount()) / o.duration.Seconds()
	res.P50US = c.hist.ValueAtQuantile(50)
	res.P99US = c.hist.ValueAtQuantile(99)
	res.P999US = c.hist.ValueAtQuantile(99.9)
	return nil
}
