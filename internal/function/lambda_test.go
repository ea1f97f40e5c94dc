package function_test

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
)

// A function built with aws-lambda-go serves HTTP requests: the event
// carries method, path, query, headers, cookies and body; the response's
// status, headers, cookies and body come back; the runtime saw a request
// id, the function ARN and a deadline in the future.
func TestLambdaFunctionServesHTTP(t *testing.T) {
	fc := lambdaConfig("hello")
	fc.Env = map[string]string{"GREETING": "hi"}
	fx := serve(t, fc)
	req, _ := http.NewRequest("POST", fx.srv.URL+"/hello?x=1&x=2", strings.NewReader(`{"n":1}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "penstock-test")
	req.Header.Set("Cookie", "c1=v1; c2=v2")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d, body %s", resp.StatusCode, body)
	}
	for _, want := range []string{"method=POST", "path=/hello", "query=x=1&x=2", `body={"n":1}`,
		"user-agent=penstock-test", "cookies=c1=v1|c2=v2", "param=hi",
		"arn=arn:aws:lambda:local:000000000000:function:hello", "deadline_ok=true"} {
		contains(t, "body", string(body), want)
	}
	if got := resp.Header.Get("X-Fn"); got != "hello" {
		t.Errorf("X-Fn = %q", got)
	}
	if got := resp.Header.Values("Set-Cookie"); len(got) != 2 || got[0] != "a=1; Path=/" || got[1] != "b=2" {
		t.Errorf("Set-Cookie = %q", got)
	}
	if strings.Contains(string(body), "id= ") {
		t.Errorf("no request id reached the runtime: %s", body)
	}

	// A warm instance serves the next request.
	_, _, again := fx.get(t, "/hello")
	if pid(t, again) != pid(t, string(body)) {
		t.Errorf("second request served by another instance: %s vs %s", again, body)
	}
	if got := fx.coldStarts(); got != 1 {
		t.Errorf("cold starts = %v, want 1", got)
	}
	if got := fx.counter("ok"); got != 2 {
		t.Errorf("ok invocations = %v, want 2", got)
	}
	contains(t, "log", fx.log.String(), `"msg":"function cold start"`)
}

// A binary body travels base64 encoded both ways.
func TestLambdaBinaryBodies(t *testing.T) {
	fx := serve(t, lambdaConfig("bin"))
	in := make([]byte, 256)
	for i := range in {
		in[i] = byte(i)
	}
	resp, err := http.Post(fx.srv.URL+"/binary", "application/octet-stream", bytes.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(out) != 256 {
		t.Fatalf("status %d, %d bytes", resp.StatusCode, len(out))
	}
	for i, b := range out {
		if b != ^byte(i) {
			t.Fatalf("byte %d = %#x, want %#x", i, b, ^byte(i))
		}
	}
}

// A streamed response (events.LambdaFunctionURLStreamingResponse) reaches
// the client with the prelude's status and headers and its chunks as the
// function writes them.
func TestLambdaResponseStreaming(t *testing.T) {
	fx := serve(t, lambdaConfig("stream"))
	resp, err := http.Get(fx.srv.URL + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 201 || resp.Header.Get("X-Streamed") != "yes" || resp.Header.Get("Content-Type") != "text/plain" {
		t.Fatalf("status %d, header %v", resp.StatusCode, resp.Header)
	}
	if resp.ContentLength != -1 {
		t.Errorf("content length %d, want a streamed (chunked) response", resp.ContentLength)
	}
	br := bufio.NewReader(resp.Body)
	for i := range 5 {
		line, err := br.ReadString('\n')
		if err != nil || line != "chunk "+string(rune('0'+i))+"\n" {
			t.Fatalf("line %d = %q, %v", i, line, err)
		}
	}
	if rest, _ := io.ReadAll(br); len(rest) != 0 {
		t.Errorf("trailing bytes %q", rest)
	}
}

// Fifty concurrent requests to a function of at most 4 instances of
// concurrency 1, with room in the queue for all: every request is served,
// by at most 4 processes.
func TestConcurrencyAllServedByAtMostMaxInstances(t *testing.T) {
	fc := lambdaConfig("busy")
	fc.MaxInstances, fc.MaxConcurrency, fc.MaxQueue = 4, 1, 50
	fc.QueueTimeout = config.Duration(60 * time.Second)
	fx := serve(t, fc)
	statuses, pids := burst(t, fx, 50, "/sleep?ms=20")
	if statuses[200] != 50 {
		t.Fatalf("statuses %v, want 50 × 200", statuses)
	}
	if len(pids) > 4 || len(pids) == 0 {
		t.Errorf("served by %d processes, want 1 to 4", len(pids))
	}
	if got := fx.coldStarts(); got > 4 {
		t.Errorf("cold starts = %v, want at most 4", got)
	}
	if n := len(fx.fn.Status().Instances); n > 4 {
		t.Errorf("%d instances, want at most 4", n)
	}
}

// With a queue of 10, fifty concurrent slow requests: those that find the
// queue full get 429 with Retry-After and the function_queue_full code at
// once; the others are served.
func TestConcurrencyOverflowRefusedWhenQueueFull(t *testing.T) {
	fc := lambdaConfig("full")
	fc.MaxInstances, fc.MaxConcurrency, fc.MaxQueue = 4, 1, 10
	fc.QueueTimeout = config.Duration(60 * time.Second)
	fx := serve(t, fc)
	statuses, pids := burst(t, fx, 50, "/sleep?ms=800")
	if statuses[200]+statuses[429] != 50 || statuses[429] == 0 || statuses[200] < 10 {
		t.Fatalf("statuses %v, want only 200 and 429, at least 10 served and some refused", statuses)
	}
	if len(pids) > 4 {
		t.Errorf("served by %d processes, want at most 4", len(pids))
	}
	if got := fx.counter("queue_full"); got != float64(statuses[429]) {
		t.Errorf("queue_full invocations = %v, want %d", got, statuses[429])
	}
}

// burst sends n requests at once and counts statuses and serving pids;
// every 429 must carry Retry-After and the function_queue_full body.
func burst(t *testing.T, fx *fixture, n int, path string) (map[int]int, map[string]bool) {
	t.Helper()
	var mu sync.Mutex
	statuses, pids := map[int]int{}, map[string]bool{}
	start := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n}, Timeout: 120 * time.Second}
	defer client.CloseIdleConnections()
	for range n {
		wg.Go(func() {
			<-start
			resp, err := client.Get(fx.srv.URL + path)
			if err != nil {
				t.Error(err)
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			mu.Lock()
			defer mu.Unlock()
			statuses[resp.StatusCode]++
			switch resp.StatusCode {
			case 200:
				if m := pidRE.FindSubmatch(b); m != nil {
					pids[string(m[1])] = true
				}
			case 429:
				if resp.Header.Get("Retry-After") == "" || !bytes.Contains(b, []byte(`"function_queue_full"`)) {
					t.Errorf("429 without Retry-After or code: %v %s", resp.Header, b)
				}
			}
		})
	}
	close(start)
	wg.Wait()
	return statuses, pids
}

// A function in a second language: a bash custom runtime that speaks the
// Runtime API with curl (Node.js's aws-lambda-ric needs a native build,
// see docs/functions.md).
func TestCurlRuntimeInBash(t *testing.T) {
	bootstrap, err := filepath.Abs("testdata/curlfn/bootstrap")
	if err != nil {
		t.Fatal(err)
	}
	fx := serve(t, config.Function{Name: "bash", Command: []string{"bash", bootstrap}})
	status, h, body := fx.get(t, "/greet")
	if status != 200 || h.Get("X-Runtime") != "bash" {
		t.Fatalf("status %d, header %v (%s)", status, h, body)
	}
	contains(t, "body", body, "bash saw /greet as ")
	contains(t, "body", body, " deadline 1")
	status, _, body = fx.get(t, "/error")
	if status != 502 {
		t.Fatalf("error: status %d (%s)", status, body)
	}
	contains(t, "error body", body, `"error":"function_error"`)
	waitFor(t, "the function error's log line", func() bool {
		return strings.Contains(fx.log.String(), "bash says no")
	})
	if status, _, body = fx.get(t, "/again"); status != 200 {
		t.Fatalf("after the error: status %d (%s)", status, body)
	}
	if got := fx.coldStarts(); got != 1 {
		t.Errorf("cold starts = %v, want 1 (a function error keeps the instance)", got)
	}
}
