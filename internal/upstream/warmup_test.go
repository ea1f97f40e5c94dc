package upstream_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/upstream"
)

// coldModel is a model server whose first coldRequests inference requests
// after each start are slow (weights loading, kernels compiling). Its
// health check answers at once, as real ones do.
type coldModel struct {
	addr string
	srv  *http.Server

	mu        sync.Mutex
	served    int   // inference requests since the last start
	warmups   int   // of them, warm-up requests
	coldLive  int   // live requests that met the cold phase
	warmLive  int   // live requests after it
	liveTotal int64 // live requests in all, over every start
}

const coldRequests = 20

func (m *coldModel) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" {
		return
	}
	m.mu.Lock()
	m.served++
	cold := m.served <= coldRequests
	live := r.Header.Get("User-Agent") != "penstock-warmup"
	switch {
	case !live:
		m.warmups++
	case cold:
		m.coldLive++
	default:
		m.warmLive++
	}
	if live {
		m.liveTotal++
	}
	m.mu.Unlock()
	if cold {
		time.Sleep(120 * time.Millisecond)
	}
	io.WriteString(w, "ok")
}

func (m *coldModel) start(t *testing.T) {
	t.Helper()
	addr := m.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var ln net.Listener
	var err error
	for range 50 { // the port may linger a moment after a stop
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	m.addr = ln.Addr().String()
	m.mu.Lock()
	m.served, m.warmups, m.coldLive, m.warmLive = 0, 0, 0, 0
	m.mu.Unlock()
	m.srv = &http.Server{Handler: m}
	go m.srv.Serve(ln)
}

func (m *coldModel) stop() { m.srv.Close() }

func (m *coldModel) counts() (warmups, coldLive, warmLive int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.warmups, m.coldLive, m.warmLive
}

// A restarted endpoint whose first 20 requests are slow gets no live
// traffic until its warm-up passes; without a warm-up, live requests meet
// its cold phase. Both runs log the live P99 across the restart.
func TestWarmupGatesARestartedEndpoint(t *testing.T) {
	tests := []struct {
		name   string
		warmup *config.Warmup
	}{
		{name: "gated", warmup: &config.Warmup{Path: "/v1/predict", Requests: 3, MaxLatency: config.Duration(60 * time.Millisecond)}},
		{name: "not gated"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			warm := &coldModel{}
			warm.start(t)
			defer warm.stop()
			warm.mu.Lock()
			warm.served = coldRequests // long warm
			warm.mu.Unlock()
			cold := &coldModel{}
			cold.start(t)
			cold.mu.Lock()
			cold.served = coldRequests
			cold.mu.Unlock()
			defer func() { cold.stop() }()

			hc := &config.HealthCheck{Path: "/healthz", Interval: config.Duration(25 * time.Millisecond),
				Timeout: config.Duration(time.Second), Rise: 1, Fall: 1, Warmup: tc.warmup}
			cfg := &config.Config{Upstreams: []config.Upstream{{Name: "models", HealthCheck: hc,
				Endpoints: []config.Endpoint{{Address: warm.addr}, {Address: cold.addr}}}}}
			cfg.SetDefaults()
			p, err := upstream.NewPool(&cfg.Upstreams[0])
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			obs := &warmupCounter{}
			p.Start(obs)
			ec := p.Endpoints[1]
			health := func() *upstream.HealthView { return ec.State().Protection.Health }

			// Live traffic, one request at a time, until stopped.
			stop := make(chan struct{})
			type sample struct {
				at   time.Time
				took time.Duration
			}
			var lat []sample
			var wg sync.WaitGroup
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					e := p.Pick(time.Now().UnixNano())
					if e == nil {
						time.Sleep(time.Millisecond)
						continue
					}
					start := time.Now()
					var resp upstream.Response
					err := e.Client().RoundTrip(context.Background(), &upstream.Request{Method: "GET", Path: "/v1/predict"}, &resp)
					if err == nil {
						_, err = io.Copy(io.Discard, &resp)
						resp.Close()
					}
					if err != nil {
						e.ReportFailure(1, time.Second)
						continue
					}
					lat = append(lat, sample{start, time.Since(start)})
				}
			})

			waitUntil(t, "live traffic on both endpoints", func() bool { return cold.liveCount() >= 5 })
			cold.stop()
			waitUntil(t, "the checks take the stopped endpoint out", func() bool { return !health().Up })
			restarted := time.Now()
			cold.start(t)
			waitUntil(t, "the restarted endpoint back in rotation", func() bool { return health().Up })
			waitUntil(t, "20 live requests to the warm restarted endpoint", func() bool {
				_, _, warmLive := cold.counts()
				return warmLive >= 20
			})
			close(stop)
			wg.Wait()

			warmups, coldLive, warmLive := cold.counts()
			var since []time.Duration // live latencies from the restart on
			for _, l := range lat {
				if !l.at.Before(restarted) {
					since = append(since, l.took)
				}
			}
			t.Logf("%s: live P99 from the restart until the endpoint served 20 warm live requests: %v over %d requests; %d warm-up requests, %d live requests in the cold phase, %d after",
				tc.name, percentile(since, 0.99), len(since), warmups, coldLive, warmLive)
			if tc.warmup == nil {
				if coldLive == 0 {
					t.Errorf("no live request met the cold phase without gating; the test shows nothing")
				}
				return
			}
			if coldLive != 0 {
				t.Errorf("%d live requests reached the endpoint in its cold phase, want 0", coldLive)
			}
			if warmups < coldRequests+tc.warmup.Requests {
				t.Errorf("%d warm-up requests, want at least %d (the cold phase, then %d good in a row)", warmups, coldRequests+tc.warmup.Requests, tc.warmup.Requests)
			}
			if passed, _ := obs.results(); passed != 1 {
				t.Errorf("%d passed warm-ups reported, want 1", passed)
			}
		})
	}
}

// A warm-up that cannot pass within its timeout keeps the endpoint out,
// and the next rise of its checks tries again.
func TestWarmupThatFailsKeepsTheEndpointOut(t *testing.T) {
	slow := &coldModel{}
	slow.start(t)
	defer slow.stop()
	hc := &config.HealthCheck{Path: "/healthz", Interval: config.Duration(20 * time.Millisecond),
		Timeout: config.Duration(time.Second), Rise: 1, Fall: 1,
		Warmup: &config.Warmup{Path: "/v1/predict", Requests: 2, MaxLatency: config.Duration(time.Millisecond), Timeout: config.Duration(300 * time.Millisecond)}}
	cfg := &config.Config{Upstreams: []config.Upstream{{Name: "models", HealthCheck: hc,
		Endpoints: []config.Endpoint{{Address: slow.addr}}}}}
	cfg.SetDefaults()
	p, err := upstream.NewPool(&cfg.Upstreams[0])
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	obs := &warmupCounter{}
	p.Start(obs)
	e := p.Endpoints[0]
	slow.stop()
	waitUntil(t, "the checks take the endpoint out", func() bool { return !e.State().Protection.Health.Up })
	slow.start(t) // every request is cold for 20, each 120 ms: past max_latency
	waitUntil(t, "two failed warm-ups", func() bool { _, failed := obs.results(); return failed >= 2 })
	if e.State().Protection.Health.Up {
		t.Fatal("the endpoint is up though its warm-ups failed")
	}
	if _, coldLive, warmLive := slow.counts(); coldLive+warmLive != 0 {
		t.Fatalf("%d live requests reached the endpoint", coldLive+warmLive)
	}
}

func (m *coldModel) liveCount() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.liveTotal
}

// warmupCounter is an upstream.Observer that counts warm-up results.
type warmupCounter struct {
	passed, failed atomic.Int64
}

func (o *warmupCounter) HealthCheck(string, string, bool)      {}
func (o *warmupCounter) HealthChanged(string, string, bool)    {}
func (o *warmupCounter) BreakerChanged(string, string, string) {}
func (o *warmupCounter) BreakerStarted(string, string)         {}
func (o *warmupCounter) Ejected(string, string, string)        {}
func (o *warmupCounter) Warmup(_, _ string, passed bool, _ int) {
	if passed {
		o.passed.Add(1)
	} else {
		o.failed.Add(1)
	}
}
func (o *warmupCounter) results() (passed, failed int64) { return o.passed.Load(), o.failed.Load() }

func percentile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}
