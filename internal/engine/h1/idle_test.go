package h1_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/engine/h1"
	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/listener"
)

// BenchmarkIdleConnections measures what an idle keep-alive connection
// costs the server: N clients (IDLE_CONNS, default 1000; use 10000 for the
// figures in bench/README.md) each send one request, read the answer
// and stay connected. The clients run in a child process so that only the
// server's memory is counted: the Go heap and goroutine stacks in use
// (HeapInuse+StackInuse) before and after, divided by N, reported as
// heap+stack-B/conn; the process's resident set likewise as rss-B/conn.
// Each iteration is one full measurement; run with -benchtime=1x.
func BenchmarkIdleConnections(b *testing.B) {
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("IDLE_CONNS")); err == nil && v > 0 {
		n = v
	}
	raiseFileLimit(b, n+200)
	cert, _, err := listener.SelfSigned("127.0.0.1")
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range engines {
		for _, transport := range []string{"plain", "tls"} {
			b.Run("engine="+e.name+"/transport="+transport, func(b *testing.B) {
				for b.Loop() {
					heap, rss := measureIdle(b, e.new, transport == "tls", cert, n)
					b.ReportMetric(heap, "heap+stack-B/conn")
					b.ReportMetric(rss, "rss-B/conn")
				}
			})
		}
	}
}

func measureIdle(b *testing.B, newEngine func(h1.Options, exchange.Handler) engine, useTLS bool, cert tls.Certificate, n int) (heapPerConn, rssPerConn float64) {
	o := benchOptions()
	o.IdleTimeout = 10 * time.Minute
	if useTLS {
		o.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := newEngine(o, okHandler)
	go srv.Serve(ln)
	defer func() {
		srv.Shutdown(b.Context())
		ln.Close()
	}()
	// One request first, so pools and the poller exist before the
	// baseline.
	warm(b, ln.Addr().String(), useTLS)

	before, rssBefore := memInUse()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), fmt.Sprintf("H1_IDLE_CLIENT=%s,%d,%v", ln.Addr(), n, useTLS))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		stdin.Close()
		cmd.Wait()
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		b.Fatalf("client process: %q %v", line, err)
	}
	// Let the server finish with the last answers and park the
	// connections.
	time.Sleep(500 * time.Millisecond)
	after, rssAfter := memInUse()
	return float64(int64(after)-int64(before)) / float64(n), float64(int64(rssAfter)-int64(rssBefore)) / float64(n)
}

func warm(b *testing.B, addr string, useTLS bool) {
	c, err := dialClient(addr, useTLS)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if err := clientRoundTrip(c, make([]byte, 4096)); err != nil {
		b.Fatal(err)
	}
}

// memInUse returns the heap and stacks in use after a full collection, and
// the resident set size.
func memInUse() (inUse, rss uint64) {
	runtime.GC()
	// Return what earlier measurements freed, so the resident set
	// reflects what is in use now.
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 1 {
			pages, _ := strconv.ParseUint(f[1], 10, 64)
			rss = pages * uint64(os.Getpagesize())
		}
	}
	return ms.HeapInuse + ms.StackInuse, rss
}

// TestMain runs this test binary as the client side of
// BenchmarkIdleConnections when the benchmark starts it with H1_IDLE_CLIENT
// set, and as the tests otherwise.
func TestMain(m *testing.M) {
	if spec := os.Getenv("H1_IDLE_CLIENT"); spec != "" {
		if err := idleClient(spec); err != nil {
			fmt.Fprintln(os.Stderr, "idle client:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// idleClient opens the connections spec asks for ("address,count,tls"),
// sends one request on each, prints "ready" and holds them until its stdin
// closes.
func idleClient(spec string) error {
	parts := strings.Split(spec, ",")
	if len(parts) != 3 {
		return fmt.Errorf("H1_IDLE_CLIENT=%q: want address,count,tls", spec)
	}
	n, err := strconv.Atoi(parts[1])
	if err != nil {
		return err
	}
	useTLS := parts[2] == "true"
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < uint64(n+100) {
		lim.Cur = min(lim.Max, uint64(n+100))
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	conns := make([]net.Conn, 0, n)
	buf := make([]byte, 4096)
	for range n {
		c, err := dialClient(parts[0], useTLS)
		if err != nil {
			return err
		}
		if err := clientRoundTrip(c, buf); err != nil {
			return err
		}
		conns = append(conns, c)
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		c.Close()
	}
	return nil
}

func dialClient(addr string, useTLS bool) (net.Conn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil || !useTLS {
		return c, err
	}
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err := tc.Handshake(); err != nil {
		c.Close()
		return nil, err
	}
	return tc, nil
}

func clientRoundTrip(c net.Conn, buf []byte) error {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write(benchRequest); err != nil {
		return err
	}
	n := 0
	for {
		m, err := c.Read(buf[n:])
		if err != nil {
			return err
		}
		n += m
		if bytes.HasSuffix(buf[:n], okBody) && bytes.Contains(buf[:n], []byte("\r\n\r\n")) {
			return nil
		}
	}
}

// raiseFileLimit lifts the soft descriptor limit towards the hard one.
func raiseFileLimit(tb testing.TB, want int) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		tb.Fatal(err)
	}
	if lim.Cur >= uint64(want) {
		return
	}
	lim.Cur = min(lim.Max, uint64(want))
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur < uint64(want) {
		tb.Skipf("need %d file descriptors, hard limit is %d", want, lim.Max)
	}
}
