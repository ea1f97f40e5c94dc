package function_test

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
)

// Each fault gets its status, its error code, its log line, and the next
// request is served: by a fresh instance after a fault that leaves the
// instance unusable or untrusted (a flood of output past max_output_bytes
// included, though its client got its 200), by the same one after a
// handled function error.
func TestFaults(t *testing.T) {
	tests := []struct {
		name     string
		path     string
		timeout  time.Duration
		status   int
		code     string
		log      []string // substrings of the log
		outcome  string
		freshPID bool // the next request is served by another process
	}{
		{name: "crash mid-invocation", path: "/crash", status: 502, code: "function_crashed",
			log:     []string{"function instance crashed during an invocation", "about to crash on purpose", "exit status 3"},
			outcome: "crashed", freshPID: true},
		{name: "hang past the deadline", path: "/hang", timeout: 500 * time.Millisecond, status: 504, code: "function_timeout",
			log: []string{`"msg":"function timeout"`, "overran its timeout (500ms)"}, outcome: "timeout", freshPID: true},
		{name: "malformed response", path: "/malformed", status: 502, code: "function_bad_response",
			log: []string{"function returned a malformed response", "statusCode"}, outcome: "bad_response", freshPID: true},
		{name: "function error", path: "/error", status: 502, code: "function_error",
			log: []string{`"msg":"function error"`, "boom"}, outcome: "function_error"},
		{name: "10 MB to stdout", path: "/flood", status: 200,
			log:     []string{"function output suppressed", `"stream":"stdout"`, "function instance recycled after a flood of output"},
			outcome: "ok", freshPID: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fc := lambdaConfig("fault")
			if tc.timeout > 0 {
				fc.Timeout = config.Duration(tc.timeout)
			}
			fx := serve(t, fc)
			_, _, warm := fx.get(t, "/hello")
			before := pid(t, warm)

			counted := fx.counter(tc.outcome)
			status, _, body := fx.get(t, tc.path)
			if status != tc.status {
				t.Fatalf("status %d, want %d (body %s)", status, tc.status, body)
			}
			if tc.code != "" {
				contains(t, "body", body, `"error":"`+tc.code+`"`)
			}
			if got := fx.counter(tc.outcome) - counted; got != 1 {
				t.Errorf("%s invocations went up by %v, want 1", tc.outcome, got)
			}

			status, _, next := fx.get(t, "/hello")
			if status != 200 {
				t.Fatalf("next request: status %d (%s)", status, next)
			}
			if after := pid(t, next); (after != before) != tc.freshPID {
				t.Errorf("next request served by pid %s after pid %s; want a fresh instance: %v", after, before, tc.freshPID)
			}
			if tc.freshPID {
				// The old process is gone.
				n, _ := strconv.Atoi(before)
				waitFor(t, "the old instance to exit", func() bool {
					_, err := os.Stat("/proc/" + strconv.Itoa(n))
					return err != nil
				})
			}
			waitFor(t, "the log lines", func() bool {
				for _, want := range tc.log {
					if !strings.Contains(fx.log.String(), want) {
						return false
					}
				}
				return true
			})
		})
	}
}

// An instance that fails its init (exits before asking for an event, or
// reports to /init/error) answers the request that started it with 502
// function_init_failed and its stderr in the log; the next request starts
// another instance.
func TestInitFailure(t *testing.T) {
	tests := []struct {
		name, mode string
		log        []string
	}{
		{name: "exits", mode: "exit", log: []string{"function instance exited", "cannot start: missing model file", "exit status 1"}},
		{name: "reports to /init/error", mode: "report", log: []string{"function instance exited", "Runtime.InitError: missing model file"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fc := lambdaConfig("broken")
			fc.Env = map[string]string{"FAIL_INIT": tc.mode}
			fx := serve(t, fc)
			for i := range 2 {
				status, _, body := fx.get(t, "/hello")
				if status != 502 {
					t.Fatalf("request %d: status %d (%s)", i, status, body)
				}
				contains(t, "body", body, `"error":"function_init_failed"`)
			}
			if got := fx.coldStarts(); got != 2 {
				t.Errorf("cold starts = %v, want 2 (a fresh instance per request)", got)
			}
			if got := fx.counter("init_failed"); got != 2 {
				t.Errorf("init_failed = %v, want 2", got)
			}
			waitFor(t, "the log lines", func() bool {
				for _, want := range tc.log {
					if !strings.Contains(fx.log.String(), want) {
						return false
					}
				}
				return true
			})
		})
	}
}

// An instance that never asks for its first event is killed at
// init_timeout and the request gets 502.
func TestInitTimeout(t *testing.T) {
	fc := config.Function{Name: "sleeper", Command: []string{"sleep", "30"},
		InitTimeout: config.Duration(300 * time.Millisecond)}
	fx := serve(t, fc)
	status, _, body := fx.get(t, "/")
	if status != 502 {
		t.Fatalf("status %d (%s)", status, body)
	}
	contains(t, "body", body, `"error":"function_init_failed"`)
	waitFor(t, "the log line", func() bool {
		return strings.Contains(fx.log.String(), "did not become ready within init_timeout (300ms)")
	})
}

// A function kept at min_instances that cannot start is restarted with a
// growing delay, not in a loop.
func TestInitFailureBackoff(t *testing.T) {
	fc := lambdaConfig("crashloop")
	fc.Env = map[string]string{"FAIL_INIT": "exit"}
	fc.MinInstances = 1
	fx := serve(t, fc)
	time.Sleep(1500 * time.Millisecond)
	// Without backoff this would be hundreds; with it, starts at about
	// 0, 0.1, 0.3, 0.7 and 1.5 s.
	if got := fx.coldStarts(); got < 2 || got > 8 {
		t.Errorf("%v starts in 1.5 s, want a handful", got)
	}
}
