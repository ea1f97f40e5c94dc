package pipeline

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/proxy"
	"github.com/penstock-dev/penstock/internal/upstream"
)

// arrival is one request as the upstream saw it.
type arrival struct {
	seq      int64 // its place in the upstream's arrivals, from 1
	at       time.Time
	tenant   string
	level    string
	id       string
	deadline time.Time // its x-request-deadline, or zero
}

// queueUpstream is a loopback model server with a fixed service time. It
// logs every arrival; while hold is set, the first request waits for it to
// be closed, so that a test can fill the queue in front of it (the first
// request, or the one with x-id holder when there is one).
type queueUpstream struct {
	srv     *httptest.Server
	service time.Duration
	hold    chan struct{}

	count    atomic.Int64
	held     chan struct{} // closed once the first request is held
	mu       sync.Mutex
	arrivals []arrival
}

func newQueueUpstream(t *testing.T, service time.Duration, hold bool) *queueUpstream {
	u := &queueUpstream{service: service, held: make(chan struct{})}
	if hold {
		u.hold = make(chan struct{})
	}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := arrival{at: time.Now(), tenant: r.Header.Get("x-tenant"), level: r.Header.Get("x-priority"), id: r.Header.Get("x-id")}
		if d := r.Header.Get("x-request-deadline"); d != "" {
			a.deadline, _ = time.Parse(time.RFC3339Nano, d)
		}
		a.seq = u.count.Add(1)
		u.mu.Lock()
		u.arrivals = append(u.arrivals, a)
		u.mu.Unlock()
		if (a.id == "holder" || a.seq == 1 && a.id == "") && u.hold != nil {
			close(u.held)
			<-u.hold
		}
		time.Sleep(u.service)
		io.WriteString(w, "ok")
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *queueUpstream) log() []arrival {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.arrivals)
}

// buildQueue builds route 0 with the given stage fields in front of a
// real forwarder to u, and returns its queue handler.
func buildQueue(t *testing.T, fields string, u *queueUpstream) *queued {
	t.Helper()
	cfg := parseRoute(t, fields)
	cfg.SetDefaults()
	up := config.Upstream{Name: "app", Endpoints: []config.Endpoint{{Address: u.srv.Listener.Addr().String()}}, Protocol: "h1",
		Balancing: "round_robin", Pool: config.Pool{MaxIdlePerEndpoint: 256, IdleTimeout: config.Duration(time.Minute)}}
	p, err := upstream.NewPoolWith(&up, upstream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	fwd := &proxy.Forwarder{Pool: p, ResponseHeaderTimeout: 30 * time.Second, Logger: slog.New(slog.DiscardHandler)}
	// The concurrency stage alone: the others wrap every route.
	reg, err := NewRegistry(Define("concurrency", newConcurrency))
	if err != nil {
		t.Fatal(err)
	}
	h, err := reg.Build(cfg, 0, fwd, &Env{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	q, ok := h.(*queued)
	if !ok {
		t.Fatalf("route handler is %T, want the queue", h)
	}
	return q
}

// outcome is what a client got.
type outcome struct {
	status     int
	code       string // the error funnel's code, or ""
	retryAfter string
	id         string
}

// send serves one request with the given headers through h.
func send(t *testing.T, h exchange.Handler, headers ...string) outcome {
	x, rec := newExchange(t, "GET")
	x.Ctx = context.Background()
	x.Start = time.Now()
	var id string
	for i := 0; i+1 < len(headers); i += 2 {
		x.Req.Header.Add(headers[i], headers[i+1])
		if headers[i] == "x-id" {
			id = headers[i+1]
		}
	}
	h.ServeExchange(x)
	o := outcome{status: x.State.Status, code: x.State.ErrorKind, id: id}
	if len(rec.Statuses) > 0 {
		o.status = rec.Statuses[len(rec.Statuses)-1]
	}
	o.retryAfter, _ = rec.Hdr.Get("Retry-After")
	return o
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached in 30s", what)
		}
	}
}

// Acceptance 4: two tenants, one sending ten times the other, both
// backlogged: each gets its weighted share of the upstream's capacity.
func TestQueueSharesCapacityByTenantWeight(t *testing.T) {
	tests := []struct {
		name    string
		weights string
		wantA   float64 // A's share while both are backlogged
	}{
		{"equal weights", "{a: 1, b: 1}", 0.5},
		{"b weighs three times a", "{a: 1, b: 3}", 0.25},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := newQueueUpstream(t, 0, true)
			q := buildQueue(t, `    concurrency: {max_in_flight: 1}
    queue:
      levels: [{name: all, max_queue: 1000, max_wait: 60s}]
      tenant_header: x-tenant
      tenant_weights: `+tt.weights+"\n", u)
			var wg sync.WaitGroup
			wg.Go(func() { send(t, q, "x-tenant", "holder") })
			<-u.held
			// A sends ten times as many as B, A's burst first.
			const nA, nB = 200, 20
			for i := range nA + nB {
				tenant := "a"
				if i >= nA {
					tenant = "b"
				}
				wg.Go(func() {
					if o := send(t, q, "x-tenant", tenant); o.status != 200 {
						t.Errorf("tenant %s: %d %s", tenant, o.status, o.code)
					}
				})
			}
			waitUntil(t, "all queued", func() bool { return q.q.Queued() == nA+nB })
			close(u.hold)
			wg.Wait()
			// While both are backlogged: until B's last request is served.
			log := u.log()[1:]
			lastB := 0
			for i, a := range log {
				if a.tenant == "b" {
					lastB = i
				}
			}
			served := log[:lastB+1]
			gotA := 0
			for _, a := range served {
				if a.tenant == "a" {
					gotA++
				}
			}
			share := float64(gotA) / float64(len(served))
			t.Logf("while both were backlogged: a %d, b %d of %d (a's share %.3f, want %.3f)", gotA, len(served)-gotA, len(served), share, tt.wantA)
			if d := share - tt.wantA; d > 0.1*tt.wantA || d < -0.1*tt.wantA {
				t.Errorf("a's share %.3f, want %.3f within 10 %%", share, tt.wantA)
			}
		})
	}
}

// Acceptance 5: requests whose deadline cannot be met are refused before
// being sent, and none reaches the upstream after its deadline; the
// others go earliest deadline first.
func TestQueueRefusesWhatCannotMeetItsDeadline(t *testing.T) {
	const service = 20 * time.Millisecond
	u := newQueueUpstream(t, service, true)
	q := buildQueue(t, `    concurrency: {max_in_flight: 1}
    queue:
      levels: [{name: all, max_queue: 1000, max_wait: 60s}]
`, u)
	// Requests served one at a time measure the service time.
	for i := range 5 {
		if o := send(t, q, "x-id", fmt.Sprint("warm", i)); o.status != 200 {
			t.Fatalf("warm-up: %d %s", o.status, o.code)
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() { send(t, q, "x-id", "holder") })
	<-u.held
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 60
	outcomes := make([]outcome, n)
	var finished atomic.Int64
	start := time.Now()
	for i, k := range rng.Perm(n) {
		deadline := start.Add(100*time.Millisecond + time.Duration(k)*8*time.Millisecond)
		wg.Go(func() {
			outcomes[i] = send(t, q, "x-id", fmt.Sprint(i), "x-request-deadline", deadline.Format(time.RFC3339Nano))
			finished.Add(1)
		})
	}
	waitUntil(t, "all queued or refused", func() bool { return q.q.Queued()+int(finished.Load()) == n })
	// The request in flight takes longer than expected: the earliest
	// deadline in the queue passes before its turn.
	refusedAtOnce := finished.Load()
	waitUntil(t, "a queued request expired", func() bool { return finished.Load() > refusedAtOnce })
	close(u.hold)
	wg.Wait()

	counts := map[string]int{}
	for _, o := range outcomes {
		switch {
		case o.status == 200:
			counts["admitted"]++
		case o.status == 503 && o.retryAfter != "":
			counts[o.code]++
		default:
			t.Errorf("request %s: %d %s (Retry-After %q)", o.id, o.status, o.code, o.retryAfter)
		}
	}
	t.Logf("outcomes: %v", counts)
	for _, k := range []string{"admitted", "deadline_unreachable", "deadline_expired"} {
		if counts[k] == 0 {
			t.Errorf("no request %s: %v", k, counts)
		}
	}
	sent := 0
	var prev time.Time
	for _, a := range u.log() {
		if a.id == "holder" || strings.HasPrefix(a.id, "warm") {
			continue
		}
		sent++
		if a.at.After(a.deadline) {
			t.Errorf("request %s reached the upstream %v after its deadline", a.id, a.at.Sub(a.deadline))
		}
		if a.deadline.Before(prev) {
			t.Errorf("request %s (deadline %v) went after one due later (%v): not earliest deadline first", a.id, a.deadline, prev)
		}
		prev = a.deadline
	}
	if sent != counts["admitted"] {
		t.Errorf("%d requests reached the upstream, %d were admitted: refused requests must not be sent", sent, counts["admitted"])
	}
}

// Acceptance 3: with batch-class traffic at three times the upstream's
// capacity, interactive requests overtake the queue (only the requests
// already sent go before them), and the batch class is refused with 503
// and Retry-After rather than left to time out.
func TestQueueInteractiveOvertakesABatchFlood(t *testing.T) {
	const (
		service  = 10 * time.Millisecond
		inFlight = 2
	)
	u := newQueueUpstream(t, service, false)
	q := buildQueue(t, `    concurrency: {max_in_flight: 2}
    queue:
      levels:
        - {name: interactive, max_queue: 50, max_wait: 10s}
        - {name: batch, max_queue: 20, max_wait: 200ms}
      level_header: x-priority
`, u)
	capacity := float64(inFlight) / service.Seconds() // requests a second
	const floodFor = 2 * time.Second
	interval := time.Duration(float64(time.Second) / (3 * capacity))
	var wg sync.WaitGroup
	var mu sync.Mutex
	batch := map[string]int{}
	stop := time.Now().Add(floodFor)
	wg.Go(func() {
		var inner sync.WaitGroup
		for next := time.Now(); next.Before(stop); next = next.Add(interval) {
			time.Sleep(time.Until(next))
			inner.Go(func() {
				o := send(t, q, "x-priority", "batch")
				key := fmt.Sprint(o.status, " ", o.code)
				if o.status == 503 && o.retryAfter == "" {
					key += " without Retry-After"
				}
				mu.Lock()
				batch[key]++
				mu.Unlock()
			})
		}
		inner.Wait()
	})
	// Interactive requests, one at a time, while the flood runs.
	time.Sleep(200 * time.Millisecond)
	type probe struct {
		before int64 // upstream arrivals before it was sent
		id     string
	}
	var probes []probe
	for i := 0; time.Now().Add(100 * time.Millisecond).Before(stop); i++ {
		id := fmt.Sprint("i", i)
		before := u.count.Load()
		if o := send(t, q, "x-priority", "interactive", "x-id", id); o.status != 200 {
			t.Errorf("interactive request %s: %d %s", id, o.status, o.code)
		}
		probes = append(probes, probe{before, id})
		time.Sleep(50 * time.Millisecond)
	}
	wg.Wait()
	seqOf := map[string]int64{}
	for _, a := range u.log() {
		seqOf[a.id] = a.seq
	}
	worst := int64(0)
	for _, p := range probes {
		worst = max(worst, seqOf[p.id]-p.before-1)
	}
	t.Logf("batch outcomes: %v; %d interactive requests, at most %d upstream arrivals went before one of them", batch, len(probes), worst)
	if len(probes) < 5 {
		t.Fatalf("only %d interactive requests were sent", len(probes))
	}
	// The requests in flight when it arrived, and a few the machine let
	// slip in while it was being queued; the batch level alone holds 20.
	if worst > 2*inFlight+2 {
		t.Errorf("up to %d requests went upstream before an interactive one, want at most %d", worst, 2*inFlight+2)
	}
	refused := 0
	for k, n := range batch {
		switch {
		case k == "200 ":
		case k == "503 queue_full" || k == "503 queue_timeout":
			refused += n
		default:
			t.Errorf("%d batch requests got %q", n, k)
		}
	}
	if refused == 0 {
		t.Errorf("no batch request was refused at three times the capacity: %v", batch)
	}
}

func TestQueueSettingsErrors(t *testing.T) {
	tests := []struct {
		name   string
		fields string // appended to the route (indented 4); its first line is line 7
		want   []string
	}{
		{name: "levels, tenants and headers", fields: `    concurrency: {max_in_flight: 4}
    queue:
      levels: [{name: interactive, max_queue: 10, max_wait: 100ms}, {name: batch}]
      level_header: x-priority
      tenant_header: x-tenant
      tenant_levels: {acme: interactive}
      tenant_weights: {acme: 2, beta: 0.5}
`},
		{
			name: "no limit to feed",
			fields: `    concurrency: {adaptive: {enabled: true}}
    queue: {levels: [{name: all}]}
`,
			want: []string{`routes[0].queue (line 8): needs concurrency.max_in_flight (the capacity it feeds), without adaptive or key`},
		},
		{
			name: "bad levels and tenants",
			fields: `    concurrency: {max_in_flight: 4}
    queue:
      levels: [{name: a, max_queue: -1}, {name: a, max_wait: -1s}, {max_queue: 1}]
      default_level: z
      tenant_levels: {acme: y}
      tenant_weights: {acme: 0}
      level_header: "x priority"
`,
			want: []string{
				`routes[0].queue.levels[1].max_wait (line 9): invalid duration "-1s": must not be negative`,
				`routes[0].queue.levels[0].max_queue (line 9): must be at least 1, got -1`,
				`routes[0].queue.levels[1].name (line 9): level "a" is listed twice`,
				`routes[0].queue.levels[2].name (line 9): is required`,
				`routes[0].queue.default_level (line 10): unknown level "z"`,
				`routes[0].queue.tenant_levels.acme (line 11): unknown level "y"`,
				`routes[0].queue.tenant_weights.acme (line 12): must be between 0 (excluded) and 1000000, got 0`,
				`routes[0].queue.level_header (line 13): invalid header name "x priority"`,
			},
		},
		{
			name: "a reserve for the interactive level",
			fields: `    concurrency: {max_in_flight: 8}
    queue: {levels: [{name: interactive, reserve: 2}, {name: batch}]}
`,
		},
		{
			name: "reserves that leave nothing",
			fields: `    concurrency: {max_in_flight: 4}
    queue:
      levels: [{name: a, reserve: -1}, {name: b, reserve: 5}, {name: c, reserve: 1}]
`,
			want: []string{
				`routes[0].queue.levels[0].reserve (line 9): must not be negative, got -1`,
				`routes[0].queue.levels[2].reserve (line 9): the lowest level has no level below it to hold slots from`,
				`routes[0].queue.levels (line 9): the reserves (5 in all) must leave the lowest level at least one of max_in_flight's 4 slots`,
			},
		},
		{
			name: "no levels",
			fields: `    concurrency: {max_in_flight: 4}
    queue: {tenant_header: x-tenant}
`,
			want: []string{`routes[0].queue.levels (line 8): needs at least one level`},
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

// With scope upstream, two routes to one upstream share one queue.
func TestQueueSharedByUpstream(t *testing.T) {
	const routes = `listeners: [{name: web, address: "127.0.0.1:8080"}]
upstreams: [{name: app, endpoints: [{address: "127.0.0.1:9000"}]}]
routes:
  - name: a
    match: {path: /a}
    upstream: app
    concurrency: {max_in_flight: 4, scope: upstream}
    queue: {levels: [{name: all}]}
  - name: b
    match: {path: /b}
    upstream: app
    concurrency: {max_in_flight: 4, scope: upstream}
    queue: {levels: [{name: all}]}
  - name: c
    match: {path: /c}
    upstream: app
    concurrency: {max_in_flight: 4}
    queue: {levels: [{name: all}]}
`
	cfg, err := config.Parse([]byte(routes), "")
	if err != nil {
		t.Fatal(err)
	}
	cfg.SetDefaults()
	state := NewState(nil)
	reg, err := NewRegistry(Define("concurrency", newConcurrency))
	if err != nil {
		t.Fatal(err)
	}
	var qs []*queued
	for i := range 3 {
		h, err := reg.Build(cfg, i, nopHandler{}, &Env{Logger: slog.New(slog.DiscardHandler), State: state})
		if err != nil {
			t.Fatal(err)
		}
		qs = append(qs, h.(*queued))
	}
	if qs[0].q != qs[1].q || qs[0].q == qs[2].q {
		t.Errorf("routes a and b share a queue: %v, route c has its own: %v", qs[0].q == qs[1].q, qs[0].q != qs[2].q)
	}
}
