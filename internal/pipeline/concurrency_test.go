package pipeline

import (
	"bufio"
	"context"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/metrics"
)

func TestConcurrencySettingsErrors(t *testing.T) {
	tests := []struct {
		name   string
		fields string // appended to the route (indented 4); its first line is line 7
		want   []string
	}{
		{name: "a fixed limit with a queue and a key", fields: `    concurrency: {max_in_flight: 8, max_queue: 16, queue_timeout: 2s, key: "header:X-Tenant", max_keys: 100}
`},
		{name: "an adaptive limit", fields: `    concurrency:
      adaptive: {enabled: true, min_limit: 2, max_limit: 64, initial_limit: 8, sample_window: 50ms, tolerance: 2, percentile: 99, min_rtt_interval: 30s}
`},
		{
			name: "negative values and an unknown key and scope",
			fields: `    concurrency: {max_in_flight: -1, max_queue: -2, queue_timeout: -1s, key: ip, max_keys: -3, scope: pool}
`,
			want: []string{
				`routes[0].concurrency.queue_timeout (line 7): invalid duration "-1s": must not be negative`,
				`routes[0].concurrency.max_in_flight (line 7): must not be negative, got -1`,
				`routes[0].concurrency.max_queue (line 7): must not be negative, got -2`,
				`routes[0].concurrency.max_keys (line 7): must not be negative, got -3`,
				`routes[0].concurrency.key (line 7): must be client_ip or header:<name>, got "ip"`,
				`routes[0].concurrency.scope (line 7): must be route or upstream, got "pool"`,
			},
		},
		{
			name: "a queue without a limit",
			fields: `    concurrency: {max_queue: 4}
`,
			want: []string{`routes[0].concurrency.max_in_flight (line 7): is needed by max_queue and key (or set adaptive.enabled)`},
		},
		{
			name: "adaptive with a fixed limit, a key and bad bounds",
			fields: `    concurrency:
      max_in_flight: 10
      key: client_ip
      adaptive: {enabled: true, min_limit: 10, max_limit: 5, initial_limit: 1, sample_window: 0s, tolerance: 0.5, percentile: 101, min_rtt_interval: 1ms, min_rtt_samples: -1}
`,
			want: []string{
				`routes[0].concurrency.max_in_flight (line 8): must be 0 with adaptive.enabled (adaptive.max_limit bounds the limit), got 10`,
				`routes[0].concurrency.key (line 9): an adaptive limit follows the upstream's latency and cannot be kept per key`,
				`routes[0].concurrency.adaptive.max_limit (line 10): must be at least min_limit (10), got 5`,
				`routes[0].concurrency.adaptive.initial_limit (line 10): must be within [min_limit, max_limit] = [10, 5], got 1`,
				`routes[0].concurrency.adaptive.tolerance (line 10): must be at least 1, got 0.5`,
				`routes[0].concurrency.adaptive.percentile (line 10): must be in (0, 100], got 101`,
				`routes[0].concurrency.adaptive.min_rtt_interval (line 10): must be at least sample_window (100ms), got 1ms`,
				`routes[0].concurrency.adaptive.min_rtt_samples (line 10): must be at least 1, got -1`,
			},
		},
		{
			name: "unknown field",
			fields: `    concurrency: {max_inflight: 3}
`,
			want: []string{`routes[0].concurrency.max_inflight (line 7): unknown field; did you mean "max_in_flight"?`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := errorLines(Standard().Check(parseRoute(t, tt.fields)))
			if !slices.Equal(got, tt.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// TestConcurrencyUpstreamScopeMustAgree: routes sharing an upstream's limit
// cannot each describe it differently.
func TestConcurrencyUpstreamScopeMustAgree(t *testing.T) {
	const text = `listeners: [{name: web, address: "127.0.0.1:8080"}]
upstreams: [{name: app, endpoints: [{address: "127.0.0.1:9000"}]}]
routes:
  - {name: a, match: {path: /a}, upstream: app, concurrency: {max_in_flight: 4, scope: upstream}}
  - {name: b, match: {path: /b}, upstream: app, concurrency: {max_in_flight: 4, scope: upstream}}
  - {name: c, match: {path: /c}, upstream: app, concurrency: {max_in_flight: 8, scope: upstream}}
  - {name: d, match: {path: /d}, upstream: app, concurrency: {max_in_flight: 8}}
`
	cfg, err := config.Parse([]byte(text), "")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`routes[2].concurrency (line 6): differs from routes[0].concurrency, which shares upstream "app"'s limit (scope upstream): make them identical`}
	if got := errorLines(Standard().Check(cfg)); !slices.Equal(got, want) {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// gate is a terminal handler that holds each request until released.
type gate struct {
	entered chan struct{}
	release chan struct{}
	wait    time.Duration // reported as the upstream's time to headers
}

func newGate() *gate {
	return &gate{entered: make(chan struct{}, 64), release: make(chan struct{}, 64)}
}

func (g *gate) ServeExchange(x *exchange.Exchange) {
	g.entered <- struct{}{}
	<-g.release
	x.State.UpstreamWait += g.wait
	x.State.Status = 200
	x.W.WriteHeader(200)
}

// buildConcurrency builds route 0 of a config with the given route fields
// in front of terminal, with metrics on reg and state kept from prev.
func buildConcurrency(t testing.TB, fields string, terminal exchange.Handler, m *metrics.Metrics, state *State) exchange.Handler {
	t.Helper()
	cfg := parseRoute(t, fields)
	cfg.SetDefaults()
	log := slog.New(slog.DiscardHandler)
	h, err := Standard().Build(cfg, 0, terminal, &Env{Metrics: m, State: state, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// serveAsync serves a fresh exchange in a goroutine; the returned channel
// gets it once served.
func serveAsync(t *testing.T, h exchange.Handler, set func(x *exchange.Exchange)) chan *exchange.Exchange {
	x, _ := newExchange(t, "GET")
	x.Ctx = context.Background()
	if set != nil {
		set(x)
	}
	done := make(chan *exchange.Exchange, 1)
	go func() {
		h.ServeExchange(x)
		done <- x
	}()
	return done
}

func TestConcurrencyStage(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(config.Metrics{}, reg)
	g := newGate()
	h := buildConcurrency(t, "    concurrency: {max_in_flight: 2}\n", g, m, nil)
	first := serveAsync(t, h, nil)
	second := serveAsync(t, h, nil)
	<-g.entered
	<-g.entered

	refused := <-serveAsync(t, h, nil)
	if refused.State.Status != 503 || refused.State.ErrorKind != "concurrency_limited" || refused.State.Error != "concurrency limit reached" {
		t.Errorf("third request: status %d, kind %q, error %q; want 503 concurrency_limited", refused.State.Status, refused.State.ErrorKind, refused.State.Error)
	}
	if got := gaugeValue(t, reg, "penstock_concurrency_in_flight"); got != 2 {
		t.Errorf("in flight gauge %g, want 2", got)
	}
	g.release <- struct{}{}
	g.release <- struct{}{}
	<-first
	<-second
	if got := gaugeValue(t, reg, "penstock_concurrency_in_flight"); got != 0 {
		t.Errorf("in flight gauge %g after the responses, want 0", got)
	}
	if got := gaugeValue(t, reg, "penstock_concurrency_limit"); got != 2 {
		t.Errorf("limit gauge %g, want 2", got)
	}
	want := `
# HELP penstock_concurrency_requests_total Requests that met a concurrency limit, by result (admitted, rejected, queue_timeout, canceled).
# TYPE penstock_concurrency_requests_total counter
penstock_concurrency_requests_total{name="predict",result="admitted",scope="route"} 2
penstock_concurrency_requests_total{name="predict",result="canceled",scope="route"} 0
penstock_concurrency_requests_total{name="predict",result="queue_timeout",scope="route"} 0
penstock_concurrency_requests_total{name="predict",result="rejected",scope="route"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "penstock_concurrency_requests_total"); err != nil {
		t.Error(err)
	}
}

// gaugeValue returns the value of the one series of a gauge on reg.
func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no single series of %s", name)
	return 0
}

func TestConcurrencyQueue(t *testing.T) {
	g := newGate()
	h := buildConcurrency(t, "    concurrency: {max_in_flight: 1, max_queue: 1, queue_timeout: 20ms}\n", g, nil, nil)
	first := serveAsync(t, h, nil)
	<-g.entered
	// The second waits in the queue for 20ms and gives up; a third, while
	// the second waits or after, is refused or times out too.
	second := <-serveAsync(t, h, nil)
	if second.State.Status != 503 || !strings.Contains(second.State.Error, "queue_timeout (20ms)") {
		t.Errorf("queued request: status %d, error %q; want 503 after queue_timeout", second.State.Status, second.State.Error)
	}
	// A queued request gets the slot when the first completes.
	queued := serveAsync(t, h, nil)
	time.Sleep(time.Millisecond) // usually queued by now; if not, it is admitted later anyway
	g.release <- struct{}{}
	<-first
	select {
	case <-g.entered:
		g.release <- struct{}{}
		if x := <-queued; x.State.Status != 200 {
			t.Errorf("queued request: status %d, want 200", x.State.Status)
		}
	case x := <-queued:
		// It timed out before the first completed: the machine is slow.
		if x.State.Status != 503 {
			t.Errorf("queued request: status %d", x.State.Status)
		}
	}
}

func TestConcurrencyPerKey(t *testing.T) {
	g := newGate()
	h := buildConcurrency(t, "    concurrency: {max_in_flight: 1, key: \"header:X-Tenant\"}\n", g, nil, nil)
	tenant := func(name string) func(x *exchange.Exchange) {
		return func(x *exchange.Exchange) { x.Req.Header.Set("X-Tenant", name) }
	}
	a := serveAsync(t, h, tenant("a"))
	<-g.entered
	b := serveAsync(t, h, tenant("b"))
	<-g.entered
	if x := <-serveAsync(t, h, tenant("a")); x.State.Status != 503 {
		t.Errorf("tenant a's second request: status %d, want 503", x.State.Status)
	}
	g.release <- struct{}{}
	g.release <- struct{}{}
	<-a
	<-b
}

func TestConcurrencyClientIPKey(t *testing.T) {
	k, err := parseConcurrencyKey("client_ip")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		remote  string
		trusted bool
		xff     []string
		want    string
	}{
		{name: "the socket's address", remote: "192.0.2.7:5000", want: "192.0.2.7"},
		{name: "the client address the front resolved", remote: "10.0.0.1:5000", trusted: true, xff: []string{"198.51.100.1"}, want: "198.51.100.1"},
		{name: "an IPv4-mapped address is the IPv4 one", remote: "[::ffff:192.0.2.7]:5000", want: "192.0.2.7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x, _ := newExchange(t, "GET")
			x.Req.RemoteAddr = netip.MustParseAddrPort(tt.remote)
			x.State.TrustedPeer = tt.trusted
			for _, v := range tt.xff {
				// The front handler resolves X-Forwarded-For from a
				// trusted peer (front.forwardedClient, tested there).
				x.State.ClientAddr = netip.MustParseAddr(v)
			}
			if got := k.of(x).Addr; got != netip.MustParseAddr(tt.want) {
				t.Errorf("key %s, want %s", got, tt.want)
			}
		})
	}
}

// TestConcurrencyStateSurvivesReload: a configuration that keeps the
// limit's settings keeps the limit itself (its requests in flight count);
// one that changes them starts a new limit.
func TestConcurrencyStateSurvivesReload(t *testing.T) {
	g := newGate()
	const fields = "    concurrency: {max_in_flight: 1}\n"
	first := NewState(nil)
	h1 := buildConcurrency(t, fields, g, nil, first)
	held := serveAsync(t, h1, nil)
	<-g.entered

	same := NewState(first)
	h2 := buildConcurrency(t, fields, g, nil, same)
	if x := <-serveAsync(t, h2, nil); x.State.Status != 503 {
		t.Errorf("after a reload with the same limit: status %d, want 503 (the slot is still held)", x.State.Status)
	}
	if leaving := first.Leaving(same); len(leaving) != 0 {
		t.Errorf("%d values leave with the old configuration, want none", len(leaving))
	}

	changed := NewState(same)
	h3 := buildConcurrency(t, "    concurrency: {max_in_flight: 2}\n", g, nil, changed)
	x3 := serveAsync(t, h3, nil)
	<-g.entered
	g.release <- struct{}{}
	g.release <- struct{}{}
	<-held
	if x := <-x3; x.State.Status != 200 {
		t.Errorf("after a reload with a new limit: status %d, want 200", x.State.Status)
	}
}

// TestConcurrencyAdaptiveStage: an adaptive limit starts by measuring
// minRTT at min_limit, refusing what exceeds it with 503.
func TestConcurrencyAdaptiveStage(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(config.Metrics{}, reg)
	g := newGate()
	g.wait = 10 * time.Millisecond
	h := buildConcurrency(t, "    concurrency: {adaptive: {enabled: true, min_limit: 1, initial_limit: 5, min_rtt_samples: 2}}\n", g, m, nil)
	for i := range 2 {
		first := serveAsync(t, h, nil)
		<-g.entered
		if x := <-serveAsync(t, h, nil); x.State.Status != 503 || x.State.Error != "adaptive concurrency limit reached" {
			t.Errorf("probe %d: a second request got status %d, error %q; want 503", i, x.State.Status, x.State.Error)
		}
		g.release <- struct{}{}
		<-first
	}
	if got := gaugeValue(t, reg, "penstock_concurrency_limit"); got != 5 {
		t.Errorf("limit %g after the probe, want the initial 5", got)
	}
	if got := gaugeValue(t, reg, "penstock_concurrency_min_rtt_seconds"); got < 0.009 || got > 0.011 {
		t.Errorf("min RTT %gs, want about 0.010", got)
	}
}

// nopHandler answers nothing: the stage's own cost is measured.
type nopHandler struct{}

func (nopHandler) ServeExchange(*exchange.Exchange) {}

func TestConcurrencyAdmissionAllocatesNothing(t *testing.T) {
	for _, fields := range []string{
		"    concurrency: {max_in_flight: 10}\n",
		"    concurrency: {adaptive: {enabled: true}}\n",
		"    concurrency: {max_in_flight: 10, key: client_ip}\n",
	} {
		h := buildConcurrency(t, fields, nopHandler{}, metrics.New(config.Metrics{}, nil), nil)
		x, _ := newExchange(t, "GET")
		x.Ctx = context.Background()
		x.Req.RemoteAddr = netip.MustParseAddrPort("192.0.2.1:4000")
		x.State.UpstreamWait = time.Millisecond
		h.ServeExchange(x)
		if allocs := testing.AllocsPerRun(100, func() { h.ServeExchange(x) }); allocs != 0 {
			t.Errorf("%s: an admitted request allocates %.1f times, want 0", strings.TrimSpace(fields), allocs)
		}
	}
}

// BenchmarkConcurrencyStage is the stage's cost per admitted request in
// front of a handler that does nothing.
func BenchmarkConcurrencyStage(b *testing.B) {
	for _, bc := range []struct{ name, fields string }{
		{"fixed", "    concurrency: {max_in_flight: 1000000}\n"},
		{"adaptive", "    concurrency: {adaptive: {enabled: true, min_limit: 1000000, max_limit: 1000000, initial_limit: 1000000}}\n"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := buildConcurrency(b, bc.fields, nopHandler{}, metrics.New(config.Metrics{}, nil), nil)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				x := exchange.Acquire()
				defer exchange.Release(x)
				x.Ctx = context.Background()
				for pb.Next() {
					x.State.UpstreamWait += time.Millisecond
					h.ServeExchange(x)
				}
			})
		})
	}
}

// FuzzConcurrencySettings: any concurrency block either is refused with a
// config error (never a panic), or builds a stage that admits a request
// and gives its slot back.
func FuzzConcurrencySettings(f *testing.F) {
	for _, s := range []string{
		"{max_in_flight: 8}",
		"{max_in_flight: 1, max_queue: 4, queue_timeout: 10ms}",
		"{max_in_flight: 2, key: client_ip, max_keys: 3}",
		`{max_in_flight: 2, key: "header:X-Tenant"}`,
		"{max_in_flight: 4, scope: upstream}",
		"{adaptive: {enabled: true}}",
		"{adaptive: {enabled: true, min_limit: 1, max_limit: 2, initial_limit: 2, sample_window: 1ms, tolerance: 1, percentile: 100, min_rtt_interval: 1ms, min_rtt_samples: 1}}",
		"{max_in_flight: -1}",
		"{adaptive: {enabled: true, percentile: 0.0001, tolerance: 1e308}}",
		"[1, 2]",
	} {
		f.Add(s)
	}
	const head = `listeners: [{name: web, address: "127.0.0.1:8080"}]
upstreams: [{name: app, endpoints: [{address: "127.0.0.1:9000"}]}]
routes:
  - name: r
    match: {path: /}
    upstream: app
    concurrency: `
	f.Fuzz(func(t *testing.T, block string) {
		if strings.ContainsAny(block, "\n\r") {
			return // one flow value on the route's line
		}
		cfg, err := config.Parse([]byte(head+block+"\n"), "fuzz.yaml")
		if err != nil {
			return
		}
		cfg.SetDefaults()
		if Standard().Check(cfg) != nil {
			return
		}
		h, err := Standard().Build(cfg, 0, nopHandler{}, &Env{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatalf("checked settings %s do not build: %v", block, err)
		}
		x, _ := newExchange(t, "GET")
		x.Ctx = context.Background()
		x.Req.RemoteAddr = netip.MustParseAddrPort("192.0.2.1:4000")
		for range 3 {
			x.State.Status, x.State.ErrorKind = 0, ""
			h.ServeExchange(x)
			if x.State.Status == 503 {
				t.Fatalf("settings %s: a lone request was refused (%s)", block, x.State.Error)
			}
		}
	})
}

func TestConcurrencyWarningsAreLimited(t *testing.T) {
	var l logLimiter
	now := time.Unix(1_000_000, 0)
	written := 0
	for range 100 {
		if ok, _ := l.allow(now); ok {
			written++
		}
	}
	if written != warnBurst {
		t.Errorf("%d lines at once, want the burst of %d", written, warnBurst)
	}
	if ok, _ := l.allow(now.Add(warnInterval / 2)); ok {
		t.Error("a line half an interval later")
	}
	ok, suppressed := l.allow(now.Add(warnInterval))
	if !ok || suppressed != 91 {
		t.Errorf("one interval later: written %v, suppressed %d; want true, 91", ok, suppressed)
	}
	if ok, _ := l.allow(now.Add(warnInterval + 1)); ok {
		t.Error("a second line in the same interval")
	}
}

// nopWriter is a ResponseWriter that keeps nothing but the header.
type nopWriter struct{ hdr exchange.Header }

func (w *nopWriter) Header() *exchange.Header { return &w.hdr }
func (w *nopWriter) WriteHeader(int)          {}
func (w *nopWriter) Write(p []byte) (int, error) {
	return len(p), nil
}
func (w *nopWriter) Flush() error { return nil }
func (w *nopWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return nil, nil, exchange.ErrNotHijackable
}

// BenchmarkConcurrencyRefused is the cost of a refusal: the decision, the
// error funnel's 503 and the (suppressed) warning.
func BenchmarkConcurrencyRefused(b *testing.B) {
	g := newGate()
	h := buildConcurrency(b, "    concurrency: {max_in_flight: 1}\n", g, metrics.New(config.Metrics{}, nil), nil)
	held := make(chan struct{})
	go func() {
		x := exchange.Acquire()
		x.W, x.Ctx = &nopWriter{}, context.Background()
		h.ServeExchange(x)
		exchange.Release(x)
		close(held)
	}()
	<-g.entered
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		x := exchange.Acquire()
		defer exchange.Release(x)
		w := &nopWriter{}
		x.W, x.Ctx = w, context.Background()
		for pb.Next() {
			w.hdr.Reset()
			x.State.Status = 0
			h.ServeExchange(x)
			if x.State.Status != 503 {
				b.Fatal("admitted")
			}
		}
	})
	b.StopTimer()
	g.release <- struct{}{}
	<-held
}
