package probe

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkExporterVsBlackbox scrapes /probe (an HTTPS probe of a loopback
// server) through penstock probe serve and through blackbox_exporter, each
// its own process with the same blackbox.yml, at the same concurrency, and
// reports probes per second and CPU per probe of each exporter process.
// bench/probe.sh sets PENSTOCK_BIN to a built penstock.
func BenchmarkExporterVsBlackbox(b *testing.B) {
	skipUnderRace(b)
	bin := os.Getenv("PENSTOCK_BIN")
	if bin == "" {
		b.Skip("set PENSTOCK_BIN to a penstock binary (bench/probe.sh does)")
	}
	bb, err := exec.LookPath("prometheus-blackbox-exporter")
	if err != nil {
		b.Skip("prometheus-blackbox-exporter not installed")
	}
	n := benchInFlight(b)
	conc := 64
	srv := startBenchServer(b, "http", 50, 4)
	cfg := filepath.Join(b.TempDir(), "blackbox.yml")
	os.WriteFile(cfg, []byte("modules:\n  http_2xx:\n    prober: http\n    timeout: 10s\n    http:\n      preferred_ip_protocol: ip4\n      tls_config: {insecure_skip_verify: true}\n"), 0o600)
	// Go 1.26 offers the hybrid post-quantum group X25519MLKEM768 first;
	// blackbox_exporter 0.23 (Go 1.19) knows only X25519. The same
	// key exchange on both sides is measured too.
	cfgX := filepath.Join(b.TempDir(), "blackbox-x25519.yml")
	os.WriteFile(cfgX, []byte("modules:\n  http_2xx:\n    prober: http\n    timeout: 10s\n    http:\n      preferred_ip_protocol: ip4\n      tls_config: {insecure_skip_verify: true, curve_preferences: [X25519]}\n"), 0o600)
	for b.Loop() {
		for _, peer := range []struct {
			name string
			args func(addr string) []string
			bin  string
		}{
			{"penstock", func(addr string) []string { return []string{"probe", "serve", "-config", cfg, "-listen", addr} }, bin},
			{"penstock-x25519", func(addr string) []string { return []string{"probe", "serve", "-config", cfgX, "-listen", addr} }, bin},
			{"blackbox_exporter", func(addr string) []string {
				return []string{"--config.file=" + cfg, "--web.listen-address=" + addr, "--log.level=error"}
			}, bb},
		} {
			addr := freeAddr(b)
			cmd := exec.Command(peer.bin, peer.args(addr)...)
			cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			waitFor(b, peer.name+" to listen", 30*time.Second, func() bool {
				c, err := net.Dial("tcp", addr)
				if err == nil {
					c.Close()
				}
				return err == nil
			})
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc}}
			cpu0 := procCPU(cmd.Process.Pid)
			start := time.Now()
			var next, failed atomic.Int64
			var wg sync.WaitGroup
			for range conc {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := next.Add(1) - 1
						if i >= int64(n) {
							return
						}
						target := "https://" + srv.addrs[int(i)%len(srv.addrs)] + "/"
						resp, err := client.Get("http://" + addr + "/probe?module=http_2xx&target=" + url.QueryEscape(target))
						if err != nil {
							failed.Add(1)
							continue
						}
						body, _ := io.ReadAll(resp.Body)
						resp.Body.Close()
						if !strings.Contains(string(body), "\nprobe_success 1\n") {
							failed.Add(1)
						}
					}
				}()
			}
			wg.Wait()
			took := time.Since(start)
			cpu := procCPU(cmd.Process.Pid) - cpu0
			cmd.Process.Kill()
			cmd.Wait()
			client.CloseIdleConnections()
			if failed.Load() > 0 {
				b.Fatalf("%s: %d of %d probes failed", peer.name, failed.Load(), n)
			}
			b.ReportMetric(float64(n)/took.Seconds(), peer.name+"-probes/s")
			b.ReportMetric(float64(cpu.Microseconds())/float64(n), peer.name+"-cpu-µs/probe")
		}
	}
}

func freeAddr(tb testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// procCPU is a process's user and system CPU time, from /proc.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name (which may hold spaces) start at ")".
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
}
