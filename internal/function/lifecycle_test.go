package function_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/function"
)

// An idle instance stops after idle_timeout (scale to zero); the next
// request starts a new one, a second cold start.
func TestIdleScaleToZero(t *testing.T) {
	fc := lambdaConfig("idle")
	fc.IdleTimeout = config.Duration(200 * time.Millisecond)
	fx := serve(t, fc)
	if status, _, body := fx.get(t, "/hello"); status != 200 {
		t.Fatalf("status %d (%s)", status, body)
	}
	waitFor(t, "the idle instance to stop", func() bool { return len(fx.fn.Status().Instances) == 0 })
	if status, _, body := fx.get(t, "/hello"); status != 200 {
		t.Fatalf("status %d (%s)", status, body)
	}
	if got := fx.coldStarts(); got != 2 {
		t.Errorf("cold starts = %v, want 2", got)
	}
}

// min_instances are started without a request and kept when idle.
func TestMinInstancesKeptWarm(t *testing.T) {
	fc := lambdaConfig("warm")
	fc.MinInstances = 2
	fc.IdleTimeout = config.Duration(50 * time.Millisecond)
	fx := serve(t, fc)
	waitFor(t, "two idle instances", func() bool {
		st := fx.fn.Status()
		idle := 0
		for _, in := range st.Instances {
			if in.State == "idle" {
				idle++
			}
		}
		return idle == 2
	})
	time.Sleep(300 * time.Millisecond) // well past idle_timeout
	if n := len(fx.fn.Status().Instances); n != 2 {
		t.Errorf("%d instances after idle_timeout, want min_instances (2)", n)
	}
	gauge := function.InstancesForTest(fx.m).WithLabelValues("warm", "idle")
	if got := testutil.ToFloat64(gauge); got != 2 {
		t.Errorf("penstock_function_instances{state=idle} = %v, want 2", got)
	}
	if status, _, body := fx.get(t, "/hello"); status != 200 {
		t.Fatalf("status %d (%s)", status, body)
	}
	if got := fx.coldStarts(); got != 2 {
		t.Errorf("cold starts = %v, want 2 (the request found a warm instance)", got)
	}
}

// A request that waits longer than queue_timeout gets 503 with
// Retry-After.
func TestQueueTimeout(t *testing.T) {
	fc := lambdaConfig("slow")
	fc.MaxInstances, fc.QueueTimeout = 1, config.Duration(200*time.Millisecond)
	fx := serve(t, fc)
	if status, _, _ := fx.get(t, "/hello"); status != 200 {
		t.Fatal("warm-up failed")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := http.Get(fx.srv.URL + "/sleep?ms=3000")
		if err == nil {
			resp.Body.Close()
		}
	}()
	waitFor(t, "the slow invocation", func() bool {
		st := fx.fn.Status()
		return len(st.Instances) == 1 && st.Instances[0].InFlight == 1
	})
	status, h, body := fx.get(t, "/hello")
	if status != 503 || h.Get("Retry-After") == "" {
		t.Fatalf("status %d, Retry-After %q, want 503 with Retry-After (%s)", status, h.Get("Retry-After"), body)
	}
	contains(t, "body", body, `"error":"function_queue_timeout"`)
	<-done
}

// A request body over max_event_bytes gets 413 without an invocation.
func TestEventTooLarge(t *testing.T) {
	fc := lambdaConfig("small")
	fc.MaxEventBytes = 1024
	fx := serve(t, fc)
	resp, err := http.Post(fx.srv.URL+"/hello", "text/plain", strings.NewReader(strings.Repeat("a", 2048)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Fatalf("status %d, want 413", resp.StatusCode)
	}
	if got := fx.coldStarts(); got != 0 {
		t.Errorf("cold starts = %v, want 0", got)
	}
}

// The memory cap applies, through a cgroup v2 where penstock may create
// one and RLIMIT_DATA otherwise, and the admin status says which.
func TestMemoryLimitApplied(t *testing.T) {
	fc := lambdaConfig("capped")
	fc.Memory = 256 << 20
	fx := serve(t, fc)
	status, _, body := fx.get(t, "/hello")
	if status != 200 {
		t.Fatalf("status %d (%s)", status, body)
	}
	st := fx.fn.Status()
	if len(st.Instances) != 1 {
		t.Fatalf("instances %+v", st.Instances)
	}
	in := st.Instances[0]
	t.Logf("limits: %s (%s)", st.Limits, in.Limits)
	switch st.Limits {
	case "rlimit":
		limits, err := os.ReadFile("/proc/" + strconv.Itoa(in.PID) + "/limits")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(limits), "Max data size             268435456") {
			t.Errorf("RLIMIT_DATA not applied:\n%s", limits)
		}
		contains(t, "instance limits", in.Limits, "RLIMIT_DATA=268435456")
	case "cgroup_v2":
		contains(t, "instance limits", in.Limits, "memory.max=268435456")
	default:
		t.Fatalf("limits %q, want rlimit or cgroup_v2", st.Limits)
	}
	contains(t, "log", fx.log.String(), `"msg":"function limits"`)
}

func httpConfig(name, listen string) config.Function {
	return config.Function{Name: name, Command: []string{httpFn}, Mode: config.FunctionModeHTTP,
		HTTP: config.FunctionHTTP{Listen: listen, HealthPath: "/healthz"}}
}

// In http mode the instance is an HTTP server that penstock health-checks
// and proxies to, on a unix socket or a loopback port; streamed responses
// pass through; a crash gets 502 and a hang past the deadline 504, and
// the next request is served by a fresh instance.
func TestHTTPMode(t *testing.T) {
	for _, listen := range []string{config.FunctionListenUnix, config.FunctionListenTCP} {
		t.Run(listen, func(t *testing.T) {
			fc := httpConfig("web-"+listen, listen)
			fc.Timeout = config.Duration(2 * time.Second)
			fx := serve(t, fc)
			status, h, body := fx.get(t, "/hello")
			if status != 200 || h.Get("X-Fn") != "http" {
				t.Fatalf("status %d, header %v (%s)", status, h, body)
			}
			contains(t, "body", body, "deadline=1")
			first := pid(t, body)

			resp, err := http.Get(fx.srv.URL + "/stream")
			if err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(resp.Body)
			for i := range 5 {
				line, err := br.ReadString('\n')
				if err != nil || line != "chunk "+strconv.Itoa(i)+"\n" {
					t.Fatalf("line %d = %q, %v", i, line, err)
				}
			}
			resp.Body.Close()

			status, _, body = fx.get(t, "/crash")
			if status != 502 {
				t.Fatalf("crash: status %d (%s)", status, body)
			}
			contains(t, "crash body", body, `"error":"function_crashed"`)
			status, _, body = fx.get(t, "/hello")
			if status != 200 || pid(t, body) == first {
				t.Fatalf("after the crash: status %d, %s (first pid %s)", status, body, first)
			}
			second := pid(t, body)

			status, _, body = fx.get(t, "/hang")
			if status != 504 {
				t.Fatalf("hang: status %d (%s)", status, body)
			}
			contains(t, "hang body", body, `"error":"function_timeout"`)
			status, _, body = fx.get(t, "/hello")
			if status != 200 || pid(t, body) == second {
				t.Fatalf("after the timeout: status %d, %s (previous pid %s)", status, body, second)
			}
			waitFor(t, "the crash's log line", func() bool {
				return strings.Contains(fx.log.String(), "http function crashing on purpose")
			})
		})
	}
}

// With max_concurrency 2 one aws-lambda-go instance (told
// AWS_LAMBDA_MAX_CONCURRENCY) serves two invocations at once.
func TestLambdaConcurrencyPerInstance(t *testing.T) {
	fc := lambdaConfig("pair")
	fc.MaxInstances, fc.MaxConcurrency = 1, 2
	fx := serve(t, fc)
	if status, _, _ := fx.get(t, "/hello"); status != 200 {
		t.Fatal("warm-up failed")
	}
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			resp, err := http.Get(fx.srv.URL + "/sleep?ms=1000")
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
		})
	}
	waitFor(t, "two invocations in flight on one instance", func() bool {
		st := fx.fn.Status()
		return len(st.Instances) == 1 && st.Instances[0].InFlight == 2
	})
	wg.Wait()
	if got := fx.coldStarts(); got != 1 {
		t.Errorf("cold starts = %v, want 1", got)
	}
}

// Close lets the invocation in flight finish, refuses new requests with
// 503, and stops the instances.
func TestCloseDrains(t *testing.T) {
	fx := serve(t, lambdaConfig("drain"))
	if status, _, _ := fx.get(t, "/hello"); status != 200 {
		t.Fatal("warm-up failed")
	}
	done := make(chan int, 1)
	go func() {
		resp, err := http.Get(fx.srv.URL + "/sleep?ms=500")
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	waitFor(t, "the invocation in flight", func() bool {
		st := fx.fn.Status()
		return len(st.Instances) == 1 && st.Instances[0].InFlight == 1
	})
	closed := make(chan struct{})
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		fx.fn.Close(ctx)
		close(closed)
	}()
	waitFor(t, "the function to refuse new requests", func() bool {
		status, _, body := fx.get(t, "/hello")
		return status == 503 && strings.Contains(body, `"error":"shutting_down"`)
	})
	if status := <-done; status != 200 {
		t.Errorf("the invocation in flight got %d, want 200", status)
	}
	<-closed
	if n := len(fx.fn.Status().Instances); n != 0 {
		t.Errorf("%d instances after Close", n)
	}
}

// In http mode a body of unknown length over max_event_bytes gets 413 and
// the instance keeps serving.
func TestHTTPModeBodyTooLarge(t *testing.T) {
	fc := httpConfig("web-small", config.FunctionListenUnix)
	fc.MaxEventBytes = 1024
	fx := serve(t, fc)
	_, _, body := fx.get(t, "/hello")
	first := pid(t, body)
	pr, pw := io.Pipe()
	go func() {
		pw.Write(bytes.Repeat([]byte("a"), 4096))
		pw.Close()
	}()
	resp, err := http.Post(fx.srv.URL+"/hello", "text/plain", pr) // chunked: length unknown
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Fatalf("status %d, want 413", resp.StatusCode)
	}
	if _, _, body := fx.get(t, "/hello"); pid(t, body) != first {
		t.Errorf("the instance was replaced after a client's oversized body")
	}
}
