package ratelimit

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// testRedis is the package's one redis-server (scripts/test installs the
// Debian package redis-server), started by TestMain on a free loopback
// port; nil when redis-server is not installed, and the tests that need it
// skip.
var testRedis *RedisProcess

// RedisProcess is a redis-server the tests started.
type RedisProcess struct {
	Addr string
	Cmd  *exec.Cmd
}

// StartSharedRedis starts the package's redis-server when the machine has
// one (TestMain, in the external test package, calls it).
func StartSharedRedis() error {
	path, err := exec.LookPath("redis-server")
	if err != nil {
		return nil
	}
	r, err := startRedis(path)
	if err != nil {
		return err
	}
	testRedis = r
	return nil
}

// StopSharedRedis ends the package's redis-server, if it runs.
func StopSharedRedis() {
	if testRedis != nil {
		testRedis.Cmd.Process.Signal(os.Kill)
		testRedis.Cmd.Wait()
	}
}

func startRedis(path string) (*RedisProcess, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(path, "--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--save", "", "--appendonly", "no",
		"--daemonize", "no", "--loglevel", "warning")
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	r := &RedisProcess{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Cmd: cmd}
	c := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer c.Close()
	for deadline := time.Now().Add(10 * time.Second); ; {
		if err := c.Ping(context.Background()).Err(); err == nil {
			return r, nil
		} else if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			return nil, fmt.Errorf("redis-server on %s did not answer: %v", r.Addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func needRedis(t testing.TB) string {
	t.Helper()
	if testRedis == nil {
		t.Skip("redis-server is not installed (scripts/test installs it)")
	}
	return testRedis.Addr
}

var prefixes atomic.Int64

// newGlobal makes a global limit on the test Redis with keys of its own.
func newGlobal(t testing.TB, addr string, p Params, o GlobalOptions) *Global {
	t.Helper()
	c := NewRedisClient(addr, time.Second)
	t.Cleanup(func() { c.Close() })
	o.Client = c
	if o.Timeout == 0 {
		o.Timeout = time.Second // generous: these tests are about counting
	}
	o.Prefix = fmt.Sprintf("test:%d:%d:", os.Getpid(), prefixes.Add(1))
	g, err := NewGlobal(p, o)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// TestGlobalSharesOneBudget checks that two Globals on the same Redis and
// prefix count into one budget, for each algorithm.
func TestGlobalSharesOneBudget(t *testing.T) {
	addr := needRedis(t)
	tests := []struct {
		name string
		p    Params
	}{
		{"sliding window", Params{Algorithm: SlidingWindow, Count: 10, Window: time.Hour}},
		{"token bucket", Params{Algorithm: TokenBucket, Rate: 10.0 / 3600, Burst: 10}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newGlobal(t, addr, tt.p, GlobalOptions{})
			// A second gateway: same Redis, same prefix.
			b, err := NewGlobal(tt.p, a.o)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			admitted := 0
			for i := range 15 {
				g := a
				if i%2 == 1 {
					g = b
				}
				d, src := g.Take(ctx, "k", 1, time.Now().UnixNano())
				if src != FromRedis {
					t.Fatalf("take %d fell back", i)
				}
				if d.Allowed {
					admitted++
				} else if d.RetryAfter <= 0 {
					t.Errorf("take %d: refused with Retry-After %d", i, d.RetryAfter)
				}
			}
			if admitted != 10 {
				t.Errorf("admitted %d of 15, want 10", admitted)
			}
			if d, _ := a.Take(ctx, "other", 10, time.Now().UnixNano()); !d.Allowed || d.Remaining != 0 {
				t.Errorf("another key: %+v", d)
			}
			if d, _ := a.Take(ctx, "third", 11, time.Now().UnixNano()); d.Allowed {
				t.Error("a cost above the limit passed")
			}
		})
	}
}

// TestGlobalFallback checks each on_failure policy against a Redis that
// does not answer, and that after one failure Redis is skipped for the
// backoff instead of costing every request the timeout.
func TestGlobalFallback(t *testing.T) {
	// A listener that accepts and never answers: a Redis that hangs.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	p := Params{Algorithm: SlidingWindow, Count: 9, Window: time.Hour}
	tests := []struct {
		name     string
		policy   OnFailure
		admitted int // of 5 takes of cost 1
	}{
		{"local share", FallbackLocal, 3},
		{"open", FallbackOpen, 5},
		{"closed", FallbackClosed, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewRedisClient(ln.Addr().String(), 5*time.Millisecond)
			defer c.Close()
			g, err := NewGlobal(p, GlobalOptions{Client: c, Timeout: 5 * time.Millisecond, Replicas: 3, OnFailure: tt.policy, Backoff: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			admitted := 0
			for i := range 5 {
				start := time.Now()
				d, src := g.Take(context.Background(), "k", 1, start.UnixNano())
				if src != FromFallback {
					t.Fatalf("take %d: decided by Redis", i)
				}
				if d.Allowed {
					admitted++
				}
				if i > 0 && time.Since(start) > time.Millisecond*50 {
					// Skipped Redis: no wait at all (50 ms is slack for a
					// busy machine, far below a timeout each time).
					t.Errorf("take %d waited %v after Redis was known to fail", i, time.Since(start))
				}
			}
			if admitted != tt.admitted {
				t.Errorf("admitted %d, want %d", admitted, tt.admitted)
			}
		})
	}
}

// BenchmarkGlobalDecision is one decision by Redis on loopback, the latency
// a global limit adds to a request; it reports the P50 and P99.
func BenchmarkGlobalDecision(b *testing.B) {
	addr := needRedis(b)
	for _, p := range []Params{
		{Algorithm: SlidingWindow, Count: 1 << 40, Window: time.Minute},
		{Algorithm: TokenBucket, Rate: 1e6, Burst: 1 << 30},
	} {
		name := map[Algorithm]string{TokenBucket: "token_bucket", SlidingWindow: "sliding_window"}[p.Algorithm]
		b.Run(name, func(b *testing.B) {
			g := newGlobal(b, addr, p, GlobalOptions{})
			ctx := context.Background()
			var lat []time.Duration
			b.ReportAllocs()
			for b.Loop() {
				start := time.Now()
				if _, src := g.Take(ctx, "bench", 1, start.UnixNano()); src != FromRedis {
					b.Fatal("fell back")
				}
				lat = append(lat, time.Since(start))
			}
			ReportPercentiles(b, lat)
		})
	}
}
