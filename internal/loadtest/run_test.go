package loadtest

import (
	"bytes"
	"context"
	"crypto/tls"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/loadtest/runlog"
)

func run(t *testing.T, o Options) *Result {
	t.Helper()
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return res
}

// Every protocol, open loop: every scheduled request is answered, and the
// phases that exist for the protocol are measured.
func TestProtocols(t *testing.T) {
	h := &counting{}
	tlsURL, _ := startTLS(t, h, nil)
	cases := []struct {
		name   string
		proto  string
		url    string
		phases []string
	}{
		{"HTTP/1.1", ProtoH1, startH1(t, h), []string{runlog.Total, runlog.FirstByte, runlog.Connect}},
		{"HTTP/1.1 over TLS", ProtoH1, tlsURL, []string{runlog.Total, runlog.FirstByte, runlog.Connect, runlog.TLS}},
		{"HTTP/2 over TLS", ProtoH2, tlsURL, []string{runlog.Total, runlog.FirstByte, runlog.Connect, runlog.TLS}},
		{"HTTP/2 cleartext", ProtoH2C, startH2C(t, h), []string{runlog.Total, runlog.FirstByte, runlog.Connect}},
		{"HTTP/3", ProtoH3, startH3(t, h, nil), []string{runlog.Total, runlog.FirstByte, runlog.TLS}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var log bytes.Buffer
			res := run(t, Options{
				URLs: []string{tc.url}, Proto: tc.proto, Insecure: true,
				Rate: 200, Duration: 500 * time.Millisecond, Connections: 4, Streams: map[bool]int{true: 1, false: 4}[tc.proto == ProtoH1],
				Log: &log,
			})
			if res.Responses != 100 || res.Status["200"] != 100 || res.ErrorsAll != 0 || res.Unfinished != 0 {
				t.Errorf("responses %d, status %v, errors %v, unfinished %d; want 100 answered 200, no errors", res.Responses, res.Status, res.Errors, res.Unfinished)
			}
			for _, p := range tc.phases {
				if res.Phases[p].Count == 0 {
					t.Errorf("phase %s: no samples (phases %v)", p, res.Phases)
				}
			}
			l, err := runlog.Read(&log)
			if err != nil {
				t.Fatal(err)
			}
			if got := l.Merged(runlog.Total).TotalCount(); got != 100 {
				t.Errorf("run log: %d total samples, want 100", got)
			}
			if l.Meta["proto"] != tc.proto || l.Meta["rate"] != "200" || l.Meta["responses"] != "100" {
				t.Errorf("run log meta = %v", l.Meta)
			}
		})
	}
}

// The scheduler keeps the rate: over a run against a fast server, the
// requests the server saw during the measured time, and the responses the
// tool counted, are within 1% of rate × duration. The reported throughput
// (responses over the time until the last one arrived) is checked loosely:
// on a busy machine a late response near the end stretches that time.
func TestScheduleKeepsRate(t *testing.T) {
	if raceEnabled {
		t.Skip("a 1% timing test means nothing under the race detector's slowdown; scripts/test runs it without -race")
	}
	for _, tc := range []struct {
		name  string
		rate  float64
		proto string
	}{
		{"HTTP/1.1 at 2000/s", 2000, ProtoH1},
		{"HTTP/2 at 1000/s", 1000, ProtoH2C},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &counting{}
			url := startH1(t, h)
			if tc.proto == ProtoH2C {
				url = startH2C(t, h)
			}
			const d = 2 * time.Second
			res := run(t, Options{URLs: []string{url}, Proto: tc.proto, Rate: tc.rate, Duration: d, Warmup: 200 * time.Millisecond, Connections: 20})
			want := tc.rate * d.Seconds()
			if got := float64(h.n.Load() - res.Warmup); math.Abs(got-want) > want/100 {
				t.Errorf("the server saw %.0f measured requests in %s (%.1f req/s), want %.0f ± 1%%", got, d, got/d.Seconds(), want)
			}
			if got := float64(res.Responses); math.Abs(got-want) > want/100 {
				t.Errorf("%0.f responses, want %.0f ± 1%%", got, want)
			}
			if res.Throughput > tc.rate*1.01 || res.Throughput < tc.rate/2 {
				t.Errorf("throughput %.1f req/s, want at most %.0f and not far below", res.Throughput, tc.rate)
			}
		})
	}
}

// Coordinated omission: a server stalls for 1 s once during a 6 s run at
// 400 req/s. The open-loop run charges the stall to the ~400 requests that
// were due during it (a sixth of the run), so its P99 is hundreds of
// milliseconds; a closed-loop run at the same rate only sees the 10
// requests in flight when the stall began (half a percent of its samples),
// so its P99 stays small. Both runs go in parallel, each against its own
// server.
func TestCoordinatedOmission(t *testing.T) {
	const (
		rate  = 400
		dur   = 6 * time.Second
		stall = time.Second
	)
	runs := []struct {
		name string
		o    Options
		res  *Result
	}{
		{name: "open loop", o: Options{Rate: rate, Connections: 10}},
		{name: "closed loop", o: Options{Rate: rate, Concurrency: 10}},
	}
	var wg sync.WaitGroup
	for i := range runs {
		r := &runs[i]
		r.o.URLs = []string{startH1(t, &stalling{after: 2 * time.Second, stall: stall})}
		r.o.Duration = dur
		wg.Go(func() {
			res, err := Run(context.Background(), r.o)
			if err != nil {
				t.Errorf("%s: %v", r.name, err)
				return
			}
			r.res = res
		})
	}
	wg.Wait()
	open, closed := runs[0].res, runs[1].res
	if open == nil || closed == nil {
		t.FailNow()
	}
	ms := func(r *Result) float64 { return r.Phases[runlog.Total].P99 }
	t.Logf("open loop: P99 %.1f ms, max %.1f ms, %d late starts; closed loop: P99 %.1f ms, max %.1f ms",
		ms(open), open.Phases[runlog.Total].Max, open.LateStarts, ms(closed), closed.Phases[runlog.Total].Max)
	if ms(open) < 500 {
		t.Errorf("open loop P99 = %.1f ms, want ≥ 500 ms: the requests due during the 1 s stall must carry it", ms(open))
	}
	if open.LateStarts < rate*stall.Milliseconds()/1000/2 {
		t.Errorf("open loop: %d late starts, want about %d (the requests due during the stall)", open.LateStarts, rate)
	}
	if ms(closed) > ms(open)/3 {
		t.Errorf("closed loop P99 = %.1f ms, want well under the open loop's %.1f ms", ms(closed), ms(open))
	}
	if closed.Phases[runlog.Total].Max < 500 {
		t.Errorf("closed loop max = %.1f ms: the stall should show in its maximum", closed.Phases[runlog.Total].Max)
	}
}

// Limits and modes, each from a small run.
func TestModes(t *testing.T) {
	h := &counting{}
	url := startH1(t, h)
	cases := []struct {
		name  string
		o     Options
		check func(t *testing.T, r *Result)
	}{
		{"requests end an open-loop run early", Options{Rate: 1000, Requests: 150, Duration: 5 * time.Second}, func(t *testing.T, r *Result) {
			if r.Requests != 150 || r.Seconds > 1 {
				t.Errorf("%d requests in %.2fs, want 150 in about 0.15s", r.Requests, r.Seconds)
			}
		}},
		{"requests end a closed-loop run early", Options{Concurrency: 4, Requests: 300, Duration: 5 * time.Second}, func(t *testing.T, r *Result) {
			if r.Requests != 300 {
				t.Errorf("%d requests, want 300", r.Requests)
			}
		}},
		{"warm-up requests are not measured", Options{Rate: 500, Warmup: 200 * time.Millisecond, Duration: 200 * time.Millisecond}, func(t *testing.T, r *Result) {
			if r.Responses != 100 || r.Warmup != 100 {
				t.Errorf("%d measured, %d warm-up; want 100 each", r.Responses, r.Warmup)
			}
		}},
		{"churn opens a connection every N requests", Options{Rate: 1000, Duration: 200 * time.Millisecond, Connections: 2, Churn: 10}, func(t *testing.T, r *Result) {
			if r.Conns < 20 || r.Conns > 24 {
				t.Errorf("%d connections for 200 requests, want 20 (+ those pre-opened)", r.Conns)
			}
		}},
		{"a step profile changes the rate", Options{Profile: Step{Rates: []float64{100, 400}, Every: 250 * time.Millisecond}, Duration: 500 * time.Millisecond}, func(t *testing.T, r *Result) {
			if r.Responses < 123 || r.Responses > 127 {
				t.Errorf("%d responses, want 125 (25 + 100)", r.Responses)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.URLs = []string{url}
			tc.check(t, run(t, tc.o))
		})
	}
	t.Run("targets are used in turn", func(t *testing.T) {
		a, b := &counting{}, &counting{}
		res := run(t, Options{URLs: []string{startH1(t, a), startH1(t, b)}, Rate: 500, Duration: 200 * time.Millisecond, Connections: 4})
		if res.Responses != 100 || a.n.Load() != 50 || b.n.Load() != 50 {
			t.Errorf("%d responses; servers saw %d and %d, want 50 each", res.Responses, a.n.Load(), b.n.Load())
		}
		if res.Conns != 8 {
			t.Errorf("%d connections, want 4 per origin", res.Conns)
		}
	})
}

// Error kinds: refused connections, timeouts and 5xx responses are sorted
// into their columns.
func TestErrorKinds(t *testing.T) {
	slow := startH1(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { time.Sleep(300 * time.Millisecond) }))
	failing := startH1(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) }))
	cases := []struct {
		name string
		url  string
		kind string
	}{
		{"timeout", slow, "timeout"},
		{"status 5xx", failing, "status_5xx"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := run(t, Options{URLs: []string{tc.url}, Rate: 100, Duration: 200 * time.Millisecond, Timeout: 100 * time.Millisecond, Connections: 30})
			if res.Errors[tc.kind] != 20 {
				t.Errorf("errors %v, want 20 %s", res.Errors, tc.kind)
			}
		})
	}
	t.Run("nothing listening", func(t *testing.T) {
		_, err := Run(context.Background(), Options{URLs: []string{"http://127.0.0.1:1/"}, Rate: 10, Duration: 100 * time.Millisecond})
		if err == nil || !strings.Contains(err.Error(), "no connection") {
			t.Errorf("err = %v, want no connection could be opened", err)
		}
	})
}

// A storm faster than the server can take is reported as what completed:
// the handshakes over the time they took, and how long after the schedule
// they finished. The server here takes handshakes one at a time, each at
// least 40 ms, so 20 of them cannot finish in less than 0.8 s, twice the
// 0.4 s schedule.
func TestHandshakeStormOverrun(t *testing.T) {
	const n, each, schedule = 20, 40 * time.Millisecond, 400 * time.Millisecond
	srv := httptest.NewUnstartedServer(&counting{})
	var serial sync.Mutex
	srv.TLS = &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		serial.Lock()
		defer serial.Unlock()
		time.Sleep(each)
		return nil, nil
	}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	res := run(t, Options{URLs: []string{srv.URL + "/"}, Proto: ProtoH1, Insecure: true,
		Handshakes: n / schedule.Seconds(), Duration: schedule, Timeout: 10 * time.Second})
	if res.Handshakes != n || res.ErrorsAll != 0 {
		t.Fatalf("%d handshakes, errors %v; want %d, none", res.Handshakes, res.Errors, n)
	}
	if min := (n * each).Seconds(); res.Seconds < min {
		t.Errorf("measured %.3fs; the handshakes cannot have finished before %.3fs", res.Seconds, min)
	}
	if want := res.Seconds - schedule.Seconds(); res.OverrunSeconds < want-0.05 || res.OverrunSeconds > want+0.05 {
		t.Errorf("overrun %.3fs, want the measured time past the %s schedule, %.3fs", res.OverrunSeconds, schedule, want)
	}
	if want := float64(n) / res.Seconds; res.Throughput != want || res.Throughput >= res.Rate {
		t.Errorf("throughput %.1f/s, want what completed, %.1f/s, below the asked %.0f/s", res.Throughput, want, res.Rate)
	}
	var sum strings.Builder
	if err := res.WriteText(&sum); err != nil || !strings.Contains(sum.String(), "overrun ") {
		t.Errorf("summary does not mention the overrun (%v):\n%s", err, sum.String())
	}
}

// A handshake storm runs full handshakes with the chosen key exchange group.
func TestHandshakeStorm(t *testing.T) {
	var mu sync.Mutex
	seen := map[tls.CurveID]int{}
	record := func(cs tls.ConnectionState) {
		mu.Lock()
		seen[cs.CurveID]++
		mu.Unlock()
	}
	h := &counting{}
	tlsURL, _ := startTLS(t, h, record)
	h3URL := startH3(t, h, record)
	cases := []struct {
		name, proto, url, group string
		curve                   tls.CurveID
		request                 bool
	}{
		{"TLS x25519", ProtoH1, tlsURL, "x25519", tls.X25519, false},
		{"TLS p256 with a request", ProtoH1, tlsURL, "p256", tls.CurveP256, true},
		{"TLS x25519mlkem768", ProtoH2, tlsURL, "x25519mlkem768", tls.X25519MLKEM768, true},
		{"QUIC x25519mlkem768", ProtoH3, h3URL, "x25519mlkem768", tls.X25519MLKEM768, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			clear(seen)
			mu.Unlock()
			res := run(t, Options{URLs: []string{tc.url}, Proto: tc.proto, Insecure: true, Group: tc.group,
				Handshakes: 50, HandshakeRequest: tc.request, Duration: 400 * time.Millisecond})
			if res.Handshakes != 20 || res.ErrorsAll != 0 {
				t.Errorf("%d handshakes, errors %v; want 20, none", res.Handshakes, res.Errors)
			}
			if res.Phases[runlog.Handshake].Count != 20 || res.Phases[runlog.TLS].Count != 20 {
				t.Errorf("phases %v, want 20 handshake and TLS samples", res.Phases)
			}
			if tc.request && res.Status["200"] != 20 {
				t.Errorf("status %v, want 20 × 200", res.Status)
			}
			// The server finishes a TLS 1.3 handshake after the client
			// (it reads the client's Finished): wait for the last ones.
			total := func() (n int) {
				mu.Lock()
				defer mu.Unlock()
				for _, v := range seen {
					n += v
				}
				return n
			}
			for deadline := time.Now().Add(2 * time.Second); total() < 20 && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
			mu.Lock()
			defer mu.Unlock()
			if seen[tc.curve] != 20 || len(seen) != 1 {
				t.Errorf("server saw groups %v, want 20 × %v", seen, tc.curve)
			}
		})
	}
}

// More streams than the server allows: requests wait for a free stream on
// the same connection rather than failing or opening more connections.
func TestStreamsAboveServerLimit(t *testing.T) {
	// 20 ms per response at 200 req/s: about 4 requests in flight.
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { time.Sleep(20 * time.Millisecond) })
	ln := startH2CLimited(t, slow, 2)
	res := run(t, Options{URLs: []string{ln}, Proto: ProtoH2C, Rate: 200, Duration: 500 * time.Millisecond, Connections: 1, Streams: 8})
	if res.Responses != 100 || res.ErrorsAll != 0 || res.Conns != 1 {
		t.Errorf("%d responses, errors %v, %d connections; want 100, none, 1", res.Responses, res.Errors, res.Conns)
	}
}

// Every interval closes one histogram per phase in the run log and one
// progress report.
func TestIntervals(t *testing.T) {
	var mu sync.Mutex
	var reports []Progress
	var log bytes.Buffer
	res := run(t, Options{URLs: []string{startH1(t, &counting{})}, Rate: 400, Duration: time.Second, Interval: 250 * time.Millisecond, Log: &log,
		OnInterval: func(p Progress) {
			mu.Lock()
			reports = append(reports, p)
			mu.Unlock()
		}})
	l, err := runlog.Read(&log)
	if err != nil {
		t.Fatal(err)
	}
	ivs := l.Phase(runlog.Total)
	// Four intervals of the second, then those of the drain: the
	// responses still due after it (one short interval, more on a loaded
	// machine, where the last responses can take longer than 250 ms).
	if len(ivs) < 4 {
		t.Fatalf("%d total intervals, want 4 (and perhaps more for the drain)", len(ivs))
	}
	for _, iv := range ivs[4:] {
		if iv.Start < time.Second {
			t.Errorf("interval %v..%v after the fourth starts before the second ended", iv.Start, iv.End)
		}
	}
	if ivs[1].Start != 250*time.Millisecond || ivs[1].End != 500*time.Millisecond {
		t.Errorf("second interval %v..%v, want 250ms..500ms", ivs[1].Start, ivs[1].End)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reports) != len(ivs) {
		t.Errorf("%d progress reports for %d intervals", len(reports), len(ivs))
	}
	if last := reports[len(reports)-1]; last.Responses != res.Responses || last.Responses != 400 {
		t.Errorf("last report %+v, want 400 responses", last)
	}
}

// Churn on multiplexed protocols: a spent connection takes no new streams,
// and is closed once its last stream ends, without failing any.
func TestChurnMultiplexed(t *testing.T) {
	h := &counting{}
	cases := []struct {
		name, proto, url string
	}{
		{"HTTP/2 cleartext", ProtoH2C, startH2C(t, h)},
		{"HTTP/3", ProtoH3, startH3(t, h, nil)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := run(t, Options{URLs: []string{tc.url}, Proto: tc.proto, Insecure: true, Rate: 1000, Duration: 200 * time.Millisecond,
				Connections: 2, Streams: 4, Churn: 10})
			if res.Responses != 200 || res.ErrorsAll != 0 {
				t.Errorf("%d responses, errors %v; want 200, none", res.Responses, res.Errors)
			}
			if res.Conns < 20 || res.Conns > 24 {
				t.Errorf("%d connections for 200 requests, want 20 (+ those pre-opened)", res.Conns)
			}
		})
	}
}
