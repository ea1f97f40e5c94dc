package function_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/engine/stdhttp"
	"github.com/penstock-dev/penstock/internal/function"
)

// The benchmarks report percentiles over a fixed number of samples (not
// b.N): run them with -benchtime=1x, as bench/functions.sh does. With
// PENSTOCK_RIE set to an aws-lambda-rie executable, the Lambda Runtime
// Interface Emulator runs the same function in the same run.

const (
	coldSamples = 40
	warmSamples = 2000
)

// percentiles reports the P50 and P99 of samples in milliseconds.
func percentiles(b *testing.B, samples []time.Duration, prefix string) {
	slices.Sort(samples)
	p := func(q float64) float64 {
		return float64(samples[int(q*float64(len(samples)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(p(0.5), prefix+"p50-ms")
	b.ReportMetric(p(0.99), prefix+"p99-ms")
}

// benchFunction serves fc for a benchmark, logging nothing.
func benchFunction(b *testing.B, fc config.Function) (*function.Function, *httptest.Server) {
	c := config.Config{Functions: []config.Function{fc}}
	c.SetDefaults()
	fn, err := function.New(c.Functions[0], function.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	fn.Start()
	srv := httptest.NewServer(&stdhttp.Adapter{Handler: fn})
	return fn, srv
}

func closeFunction(fn *function.Function, srv *httptest.Server) {
	srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fn.Close(ctx)
}

func mustGet(b *testing.B, c *http.Client, url string) {
	resp, err := c.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
}

func mustPost(b *testing.B, c *http.Client, url, body string) {
	resp, err := c.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Fatalf("POST %s: %d", url, resp.StatusCode)
	}
}

// BenchmarkColdStart: request in to response out on a function with no
// instance (penstock starts the aws-lambda-go process, serves it the
// Runtime API, invokes it), against the same executable's own start time
// (exec to exit, the process doing nothing), and against the Runtime
// Interface Emulator's first invocation (emulator already listening).
func BenchmarkColdStart(b *testing.B) {
	b.Run("penstock", func(b *testing.B) {
		var samples []time.Duration
		for range coldSamples {
			fn, srv := benchFunction(b, lambdaConfig("cold"))
			c := &http.Client{}
			start := time.Now()
			mustGet(b, c, srv.URL+"/hello")
			samples = append(samples, time.Since(start))
			c.CloseIdleConnections()
			closeFunction(fn, srv)
		}
		percentiles(b, samples, "")
	})
	b.Run("process-start", func(b *testing.B) {
		var samples []time.Duration
		for range coldSamples {
			cmd := exec.Command(lambdaFn)
			cmd.Env = []string{"FAIL_INIT=exit-quietly"}
			start := time.Now()
			_ = cmd.Run() // exits at once: no runtime API
			samples = append(samples, time.Since(start))
		}
		percentiles(b, samples, "")
	})
	b.Run("rie", func(b *testing.B) {
		rie := os.Getenv("PENSTOCK_RIE")
		if rie == "" {
			b.Skip("PENSTOCK_RIE is not set (bench/functions.sh builds the emulator)")
		}
		var samples []time.Duration
		for range coldSamples {
			addr, stop := startRIE(b, rie)
			c := &http.Client{}
			start := time.Now()
			mustPost(b, c, "http://"+addr+"/2015-03-31/functions/function/invocations", rieEvent)
			samples = append(samples, time.Since(start))
			c.CloseIdleConnections()
			stop()
		}
		percentiles(b, samples, "")
	})
}

// rieEvent is the event posted to the emulator: a function URL event for
// /hello, the one penstock builds.
var rieEvent = func() string {
	ev, _ := function.Event(&function.Request{Method: "GET", Path: "/hello", Host: "127.0.0.1", Proto: "HTTP/1.1",
		RequestID: "bench", Time: time.Now()})
	return string(ev)
}()

// startRIE starts the emulator with lambdaFn on free loopback ports and
// waits until it accepts connections.
func startRIE(b *testing.B, rie string) (string, func()) {
	free := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}
	addr, api := free(), free()
	cmd := exec.Command(rie, "--runtime-interface-emulator-address", addr, "--runtime-api-address", api, lambdaFn)
	cmd.Env = append(os.Environ(), "LOG_LEVEL=error")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	stop := func() {
		cmd.Process.Kill()
		cmd.Wait()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return addr, stop
		}
		if time.Now().After(deadline) {
			stop()
			b.Fatalf("emulator did not listen: %s", out.String())
		}
		time.Sleep(time.Millisecond)
	}
}

// BenchmarkWarmInvoke: one request at a time to a warm instance. Peers:
// the same kind of handler as a plain HTTP server called directly (what a
// function costs over an upstream), penstock's http mode, and the
// emulator.
func BenchmarkWarmInvoke(b *testing.B) {
	run := func(b *testing.B, do func(c *http.Client)) {
		c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
		defer c.CloseIdleConnections()
		for range 50 {
			do(c)
		}
		samples := make([]time.Duration, 0, warmSamples)
		for range warmSamples {
			start := time.Now()
			do(c)
			samples = append(samples, time.Since(start))
		}
		percentiles(b, samples, "")
	}
	b.Run("penstock-lambda", func(b *testing.B) {
		fn, srv := benchFunction(b, lambdaConfig("warm"))
		defer closeFunction(fn, srv)
		run(b, func(c *http.Client) { mustGet(b, c, srv.URL+"/hello") })
	})
	b.Run("penstock-http-mode", func(b *testing.B) {
		fn, srv := benchFunction(b, httpConfig("warm-http", config.FunctionListenUnix))
		defer closeFunction(fn, srv)
		run(b, func(c *http.Client) { mustGet(b, c, srv.URL+"/hello") })
	})
	b.Run("plain-http-upstream", func(b *testing.B) {
		addr, stop := startHTTPFn(b)
		defer stop()
		run(b, func(c *http.Client) { mustGet(b, c, "http://"+addr+"/hello") })
	})
	b.Run("rie", func(b *testing.B) {
		rie := os.Getenv("PENSTOCK_RIE")
		if rie == "" {
			b.Skip("PENSTOCK_RIE is not set")
		}
		addr, stop := startRIE(b, rie)
		defer stop()
		run(b, func(c *http.Client) {
			mustPost(b, c, "http://"+addr+"/2015-03-31/functions/function/invocations", rieEvent)
		})
	})
}

// startHTTPFn runs the http-mode test function as a plain server on a
// loopback port.
func startHTTPFn(b *testing.B) (string, func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(httpFn)
	cmd.Env = []string{"PENSTOCK_LISTEN=" + addr}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("http function did not listen")
		}
		time.Sleep(time.Millisecond)
	}
	return addr, func() { cmd.Process.Kill(); cmd.Wait() }
}

// BenchmarkThroughput: requests per second with 8 clients against 2 warm
// instances (one per core of a 2-core machine), and the emulator, which
// runs one invocation at a time.
func BenchmarkThroughput(b *testing.B) {
	const clients, perClient = 8, 500
	run := func(b *testing.B, do func(c *http.Client)) {
		c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
		defer c.CloseIdleConnections()
		for range 20 {
			do(c)
		}
		start := time.Now()
		var wg sync.WaitGroup
		for range clients {
			wg.Go(func() {
				for range perClient {
					do(c)
				}
			})
		}
		wg.Wait()
		rps := float64(clients*perClient) / time.Since(start).Seconds()
		b.ReportMetric(rps, "req/s")
	}
	b.Run("penstock-lambda", func(b *testing.B) {
		fc := lambdaConfig("tp")
		fc.MinInstances, fc.MaxInstances = 2, 2
		fn, srv := benchFunction(b, fc)
		defer closeFunction(fn, srv)
		run(b, func(c *http.Client) { mustGet(b, c, srv.URL+"/hello") })
	})
	b.Run("rie", func(b *testing.B) {
		rie := os.Getenv("PENSTOCK_RIE")
		if rie == "" {
			b.Skip("PENSTOCK_RIE is not set")
		}
		addr, stop := startRIE(b, rie)
		defer stop()
		var mu sync.Mutex // the emulator refuses concurrent invocations
		run(b, func(c *http.Client) {
			mu.Lock()
			defer mu.Unlock()
			mustPost(b, c, "http://"+addr+"/2015-03-31/functions/function/invocations", rieEvent)
		})
	})
}
