// Package dashboard is penstock's live page on the admin listener: routes
// and their traffic (rate, error ratios, P50/P99, five-minute sparklines),
// upstream pools with each endpoint's health, breaker and ejection, the
// progressive rollouts with each arm's figures and verdicts, the rate
// limits with their hottest keys, the configuration generation with the
// reload history, and, for a fleet, each node's revision.
//
//	GET /dashboard          the page (HTML, CSS and ES modules embedded in the binary)
//	GET /dashboard/events   Server-Sent Events: one JSON State a second
//	GET /dashboard/state    one State as JSON, for tests and scripts
//
// Traffic figures come from the process's own Prometheus registry,
// gathered once a second by one goroutine that runs only while the page is
// open (or /dashboard/state was asked within Options.Idle): it keeps five
// minutes of per-second deltas of the request duration histograms, upstream
// attempts and rate limit decisions, for a bounded number of routes,
// endpoints and limits (MaxRoutes, MaxEndpoints, MaxLimits). Nothing on the
// request path changes for it. The rest (endpoint state, rollouts, limits)
// is read from the snapshot being served, as the admin API reads it.
//
// The page's files hold no data; the admin API serves them to anyone who
// may reach it, so a browser can load the page and ask for the token. The
// two data endpoints follow the admin API's rule for read-only endpoints.
package dashboard

import (
	"bytes"
	"embed"
	"encoding/json"
	"io/fs"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/penstock-dev/penstock/internal/reload"
	"github.com/penstock-dev/penstock/internal/snapshot"
)

//go:embed web
var web embed.FS

// Gateway is what the dashboard reads of the running gateway
// (*server.Server).
type Gateway interface {
	// Snapshot is the configuration requests are served from.
	Snapshot() *snapshot.Snapshot
	// Generation counts the configurations loaded.
	Generation() uint64
}

// Options wire the dashboard to the process. Gateway is required; nil
// hooks hide their section.
type Options struct {
	// Gateway is the running gateway. Required.
	Gateway Gateway
	// Gatherer is sampled once a second for the traffic figures: the
	// gateway's own metrics (internal/metrics). Nil means no traffic
	// figures.
	Gatherer prometheus.Gatherer
	// Reloads returns the latest configuration loads, newest first
	// ((*server.Server).Reloads). Nil hides the reload history.
	Reloads func() []reload.Outcome
	// Fleet returns what to show of the fleet this node belongs to (each
	// node's configuration revision), marshalled to JSON as it is. It is
	// called once a second from the sampler's goroutine and must return
	// quickly. Nil, or a nil result, hides the fleet section.
	Fleet func() any
	// Interval is the time between samples. Default 1s.
	Interval time.Duration
	// Idle is how long the sampler keeps running after the last page
	// closed or the last GET /dashboard/state. Default 5m.
	Idle time.Duration
	// Logger receives the sampler's errors. Nil means slog.Default().
	Logger *slog.Logger
}

// MaxClients bounds the event streams open at once; more get 503.
const MaxClients = 32

// Dashboard serves the page and runs the sampler. Its methods are safe for
// concurrent use.
type Dashboard struct {
	o      Options
	log    *slog.Logger
	static http.Handler

	mu      sync.Mutex
	clients int
	lastUse time.Time
	running bool
	latest  []byte        // the latest State as JSON
	fresh   chan struct{} // closed when latest is replaced
	closed  chan struct{}
	done    sync.WaitGroup
	once    sync.Once
}

// New returns a dashboard; its sampler starts with the first request.
func New(o Options) *Dashboard {
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.Idle <= 0 {
		o.Idle = 5 * time.Minute
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	sub, _ := fs.Sub(web, "web")
	return &Dashboard{o: o, log: log, static: http.StripPrefix("/dashboard/assets/", http.FileServerFS(sub)),
		fresh: make(chan struct{}), closed: make(chan struct{})}
}

// Close stops the sampler and ends the open event streams (so a server's
// graceful shutdown need not wait for them), and waits for the sampler.
func (d *Dashboard) Close() error {
	d.once.Do(func() {
		// Under the lock: use either sees the dashboard closed or has
		// counted its sampler in done before Wait below.
		d.mu.Lock()
		close(d.closed)
		d.mu.Unlock()
	})
	d.done.Wait()
	return nil
}

// Page serves the page's files: GET /dashboard and /dashboard/assets/.
// They hold no data.
func (d *Dashboard) Page() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		// Everything the page runs is its own files: no inline script or
		// style, nothing from elsewhere.
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		if r.URL.Path == "/dashboard" || r.URL.Path == "/dashboard/" {
			b, _ := web.ReadFile("web/index.html")
			h.Set("Content-Type", "text/html; charset=utf-8")
			w.Write(b)
			return
		}
		d.static.ServeHTTP(w, r)
	})
}

// Data serves GET /dashboard/state and GET /dashboard/events.
func (d *Dashboard) Data() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /dashboard/state", d.state)
	mux.HandleFunc("GET /dashboard/events", d.events)
	return mux
}

// state answers one State as JSON. After a quiet spell it starts the
// sampler and waits for its first sample, whose traffic figures are empty
// (a rate needs two samples).
func (d *Dashboard) state(w http.ResponseWriter, r *http.Request) {
	fresh := d.use()
	d.mu.Lock()
	b := d.latest
	d.mu.Unlock()
	if b == nil {
		select {
		case <-fresh:
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
			return
		}
		d.mu.Lock()
		b = d.latest
		d.mu.Unlock()
	}
	if b == nil {
		http.Error(w, `{"error":"no sample yet"}`, http.StatusServiceUnavailable)
		return
	}
	var out bytes.Buffer
	json.Indent(&out, b, "", "  ")
	out.WriteByte('\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(out.Bytes())
}

// events streams a State a second as Server-Sent Events (one "data:" line
// of JSON per event), until the client leaves or the dashboard closes.
func (d *Dashboard) events(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	full := d.clients >= MaxClients
	if !full {
		d.clients++
	}
	d.mu.Unlock()
	if full {
		w.Header().Set("Retry-After", "10")
		http.Error(w, "too many dashboard streams open", http.StatusServiceUnavailable)
		return
	}
	defer d.release()
	fresh := d.use()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	rc := http.NewResponseController(w)
	// A client that lost the stream reconnects after two seconds.
	if _, err := w.Write([]byte("retry: 2000\n\n")); err != nil {
		return
	}
	rc.Flush()
	var sent []byte
	for {
		d.mu.Lock()
		b := d.latest
		fresh = d.fresh
		d.mu.Unlock()
		if b != nil && (sent == nil || &b[0] != &sent[0]) {
			if _, err := w.Write(append(append([]byte("data: "), b...), '\n', '\n')); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
			sent = b
		}
		select {
		case <-fresh:
		case <-r.Context().Done():
			return
		case <-d.closed:
			return
		}
	}
}

// use notes a use of the data and starts the sampler if it is not
// running. It returns the channel closed at the next sample.
func (d *Dashboard) use() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.lastUse = time.Now()
	select {
	case <-d.closed:
		return d.fresh
	default:
	}
	if !d.running {
		d.running = true
		d.latest = nil
		d.done.Add(1)
		go d.run()
	}
	return d.fresh
}

func (d *Dashboard) release() {
	d.mu.Lock()
	d.clients--
	d.lastUse = time.Now()
	d.mu.Unlock()
}

// run samples until the dashboard is idle or closed. Each run starts with
// empty rings: figures never span a pause.
func (d *Dashboard) run() {
	defer d.done.Done()
	sm := newSampler()
	since := time.Now()
	t := time.NewTicker(d.o.Interval)
	defer t.Stop()
	for {
		d.tick(sm, since)
		d.mu.Lock()
		idle := d.clients == 0 && time.Since(d.lastUse) > d.o.Idle
		if idle {
			d.running = false
		}
		d.mu.Unlock()
		if idle {
			return
		}
		select {
		case <-t.C:
		case <-d.closed:
			d.mu.Lock()
			d.running = false
			d.mu.Unlock()
			return
		}
	}
}

// tick takes one sample and publishes the State built from it.
func (d *Dashboard) tick(sm *sampler, since time.Time) {
	snap := d.o.Gateway.Snapshot()
	now := time.Now()
	if d.o.Gatherer != nil {
		// Gather returns what it could collect along with an error, so
		// one broken collector does not blank the page.
		mfs, err := d.o.Gatherer.Gather()
		if err != nil {
			d.log.Debug("dashboard: gathering metrics", "error", err)
		}
		sm.sample(now, mfs, trackedOf(snap))
	}
	st := build(now, snap, sm, since)
	st.Generation = d.o.Gateway.Generation()
	if d.o.Reloads != nil {
		st.Reloads = d.o.Reloads()
	}
	if d.o.Fleet != nil {
		st.Fleet = d.o.Fleet()
	}
	b, err := json.Marshal(st)
	if err != nil {
		d.log.Warn("dashboard: encoding the state", "error", err)
		return
	}
	d.mu.Lock()
	d.latest = b
	close(d.fresh)
	d.fresh = make(chan struct{})
	d.mu.Unlock()
}
