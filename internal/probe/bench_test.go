package probe

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The scale measurements (issue 18, acceptance 3). The servers run in a
// child process (this test binary, re-run with PENSTOCK_PROBE_SERVER set),
// so the memory and CPU measured here are the prober's alone. bench/probe.sh
// runs them at 10,000 and 18,000 probes in flight.

func TestMain(m *testing.M) {
	if mode := os.Getenv("PENSTOCK_PROBE_SERVER"); mode != "" {
		serveForBench(mode, strings.Fields(os.Getenv("PENSTOCK_PROBE_ADDRS")))
		return
	}
	os.Exit(m.Run())
}

// serveForBench serves TLS on each address: "http" answers every request
// with 200, "stall" completes the handshake and then holds the connection
// without a word. It prints the bound addresses, then a line per second
// with the handshakes completed, and exits when its standard input closes.
func serveForBench(mode string, addrs []string) {
	cert := selfSigned()
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	var handshakes, open atomic.Int64
	var bound []string
	for _, a := range addrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		bound = append(bound, ln.Addr().String())
		switch mode {
		case "http":
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }),
				TLSConfig: cfg, ConnState: func(c net.Conn, s http.ConnState) {
					if s == http.StateActive {
						handshakes.Add(1)
					}
				}, ErrorLog: nil}
			srv.ErrorLog = nil
			go srv.ServeTLS(ln, "", "")
		case "stall":
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					open.Add(1)
					go func() {
						defer open.Add(-1)
						tc := tls.Server(c, cfg)
						if tc.Handshake() == nil {
							handshakes.Add(1)
						}
						io.Copy(io.Discard, tc)
						tc.Close()
					}()
				}
			}()
		}
	}
	fmt.Println("addrs", strings.Join(bound, " "))
	go func() {
		for {
			time.Sleep(100 * time.Millisecond)
			fmt.Println("handshakes", handshakes.Load())
			fmt.Println("open", open.Load())
		}
	}()
	io.Copy(io.Discard, os.Stdin)
}

func selfSigned() tls.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"bench"}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// benchServer is the child process.
type benchServer struct {
	cmd        *exec.Cmd
	stdin      io.WriteCloser
	addrs      []string
	handshakes atomic.Int64
	open       atomic.Int64
}

// startBenchServer starts the child serving mode on ports listeners spread
// over nAddr loopback addresses 127.0.1.1, 127.0.1.2, …
func startBenchServer(tb testing.TB, mode string, nAddr, portsPer int) *benchServer {
	tb.Helper()
	var addrs []string
	for i := 1; i <= nAddr; i++ {
		for range portsPer {
			addrs = append(addrs, fmt.Sprintf("127.0.%d.%d:0", 1+i/250, 1+i%250))
		}
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "PENSTOCK_PROBE_SERVER="+mode, "PENSTOCK_PROBE_ADDRS="+strings.Join(addrs, " "))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	s := &benchServer{cmd: cmd, stdin: stdin}
	tb.Cleanup(func() { stdin.Close(); cmd.Wait() })
	sc := bufio.NewScanner(stdout)
	ready := make(chan struct{})
	go func() {
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			switch {
			case len(f) > 0 && f[0] == "addrs":
				s.addrs = f[1:]
				close(ready)
			case len(f) == 2 && f[0] == "handshakes":
				n, _ := strconv.ParseInt(f[1], 10, 64)
				s.handshakes.Store(n)
			case len(f) == 2 && f[0] == "open":
				n, _ := strconv.ParseInt(f[1], 10, 64)
				s.open.Store(n)
			case len(f) > 0 && f[0] == "error":
				fmt.Fprintln(os.Stderr, sc.Text())
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		tb.Fatal("bench server did not start")
	}
	return s
}

func benchInFlight(tb testing.TB) int {
	if v, err := strconv.Atoi(os.Getenv("PENSTOCK_PROBE_INFLIGHT")); err == nil && v > 0 {
		return v
	}
	return 1000
}

// memNow is the process's resident set size, Go heap and stacks in use, and
// live heap objects, after a collection. Heap in use counts whole spans:
// objects that outlive their neighbours (a probe's, among its handshake's
// garbage) keep the span in use; live counts the objects alone.
func memNow() (rss, heap, stack, live uint64) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b, _ := os.ReadFile("/proc/self/statm")
	f := strings.Fields(string(b))
	if len(f) > 1 {
		pages, _ := strconv.ParseUint(f[1], 10, 64)
		rss = pages * uint64(os.Getpagesize())
	}
	return rss, ms.HeapInuse, ms.StackInuse, ms.HeapAlloc
}

// cpuNow is the process's user and system CPU time.
func cpuNow() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func waitFor(tb testing.TB, what string, limit time.Duration, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// BenchmarkInFlightTLS holds N TLS probes in flight at once (handshake
// done, waiting for an answer that never comes) against 50 loopback
// addresses, and reports the memory per in-flight probe; beside it, the
// memory per bare idle TLS client connection (no prober), the TLS state the
// goal excludes.
func BenchmarkInFlightTLS(b *testing.B) {
	skipUnderRace(b)
	n := benchInFlight(b)
	if os.Getenv("PENSTOCK_PROBE_HEAPPROFILE") != "" {
		// Every allocation sampled: the profile then adds up exactly.
		runtime.MemProfileRate = 1
	}
	srv := startBenchServer(b, "stall", 50, 1)
	for b.Loop() {
		// Bare TLS connections: dial, handshake, hold.
		rss0, heap0, stack0, live0 := memNow()
		conns := make([]*tls.Conn, 0, n)
		for i := range n {
			c, err := tls.Dial("tcp", srv.addrs[i%len(srv.addrs)], &tls.Config{InsecureSkipVerify: true})
			if err != nil {
				b.Fatal(err)
			}
			conns = append(conns, c)
		}
		rss1, heap1, stack1, live1 := memNow()
		for _, c := range conns {
			c.Close()
		}
		conns = nil
		bareRSS := float64(rss1-rss0) / float64(n)
		bareHeap := float64(heap1+stack1-heap0-stack0) / float64(n)
		bareLive := float64(live1-live0) / float64(n)
		// The server holds a descriptor per connection: let it close
		// them all before the next n arrive.
		waitFor(b, "bare connections to close", 2*time.Minute, func() bool { return srv.open.Load() == 0 })

		// The same through the scanner.
		var text strings.Builder
		for i := range n {
			fmt.Fprintf(&text, "%s\n", srv.addrs[i%len(srv.addrs)])
		}
		mods := modules(b, "modules:\n  hold:\n    prober: tcp\n    timeout: 10m\n    tcp:\n      tls: true\n      tls_config: {insecure_skip_verify: true}\n      query_response: [{expect: '^never'}]\n")
		tg, err := LoadTargets([]byte(text.String()), "bench", "hold", mods)
		if err != nil {
			b.Fatal(err)
		}
		s, _ := NewScanner(ScanConfig{Concurrency: n}, nil, nil, nil)
		s.SetTargets(tg, mods)
		before := srv.handshakes.Load()
		rss2, heap2, stack2, live2 := memNow()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		start := time.Now()
		go func() { s.Run(ctx); close(done) }()
		waitFor(b, "probes in flight", 5*time.Minute, func() bool { return srv.handshakes.Load()-before >= int64(n) })
		took := time.Since(start)
		time.Sleep(200 * time.Millisecond)
		rss3, heap3, stack3, live3 := memNow()
		if f := os.Getenv("PENSTOCK_PROBE_HEAPPROFILE"); f != "" {
			// What the in-flight probes hold, for go tool pprof
			// -sample_index=inuse_space.
			if out, err := os.Create(f); err == nil {
				pprof.Lookup("heap").WriteTo(out, 0)
				out.Close()
			}
		}
		if got := s.Stats().InFlight; got != int64(n) {
			b.Fatalf("%d in flight, want %d", got, n)
		}
		cancel()
		<-done
		b.ReportMetric(float64(n), "in-flight")
		b.ReportMetric(float64(rss3-rss2)/float64(n), "rss-B/probe")
		b.ReportMetric(float64(heap3+stack3-heap2-stack2)/float64(n), "go-B/probe")
		b.ReportMetric(float64(stack3-stack2)/float64(n), "stack-B/probe")
		b.ReportMetric(bareRSS, "bare-tls-rss-B/conn")
		b.ReportMetric(bareHeap, "bare-tls-go-B/conn")
		b.ReportMetric(float64(live3-live2)/float64(n), "live-B/probe")
		b.ReportMetric(bareLive, "bare-tls-live-B/conn")
		b.ReportMetric(float64(n)/took.Seconds(), "handshakes/s")
	}
}

// BenchmarkHTTPSProbe runs N HTTPS probes (TLS handshake, GET, 200) across
// 50 loopback addresses × 4 ports through the scanner, N/10 in flight, and
// reports probes per second and CPU per probe; BenchmarkBareTLSHandshake
// is the yardstick: a client handshake and close, nothing else, as
// openssl s_client does.
func BenchmarkHTTPSProbe(b *testing.B) {
	skipUnderRace(b)
	n := benchInFlight(b)
	srv := startBenchServer(b, "http", 50, 4)
	var text strings.Builder
	for i := range n {
		fmt.Fprintf(&text, "https://%s/\n", srv.addrs[i%len(srv.addrs)])
	}
	mods := modules(b, "modules:\n  web:\n    prober: http\n    timeout: 30s\n    http:\n      tls_config: {insecure_skip_verify: true}\n")
	tg, err := LoadTargets([]byte(text.String()), "bench", "web", mods)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		s, _ := NewScanner(ScanConfig{Concurrency: max(n/10, 1)}, nil, nil, nil)
		s.SetTargets(tg, mods)
		cpu0, start := cpuNow(), time.Now()
		s.Run(context.Background())
		took, cpu := time.Since(start), cpuNow()-cpu0
		st := s.Stats()
		if st.Failed > 0 {
			b.Fatalf("%d of %d probes failed: %v", st.Failed, st.Done, st.Reasons)
		}
		b.ReportMetric(float64(st.Done)/took.Seconds(), "probes/s")
		b.ReportMetric(float64(cpu.Microseconds())/float64(st.Done), "cpu-µs/probe")
	}
}

func BenchmarkBareTLSHandshake(b *testing.B) {
	skipUnderRace(b)
	n := benchInFlight(b)
	srv := startBenchServer(b, "http", 50, 4)
	for b.Loop() {
		cpu0, start := cpuNow(), time.Now()
		var wg sync.WaitGroup
		sem := make(chan struct{}, max(n/10, 1))
		var failed atomic.Int64
		for i := range n {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				c, err := tls.Dial("tcp", srv.addrs[i%len(srv.addrs)], &tls.Config{InsecureSkipVerify: true})
				if err != nil {
					failed.Add(1)
					return
				}
				c.Close()
			}()
		}
		wg.Wait()
		took, cpu := time.Since(start), cpuNow()-cpu0
		if failed.Load() > 0 {
			b.Fatalf("%d handshakes failed", failed.Load())
		}
		b.ReportMetric(float64(n)/took.Seconds(), "handshakes/s")
		b.ReportMetric(float64(cpu.Microseconds())/float64(n), "cpu-µs/handshake")
	}
}
