package batch

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/exchange/exchangetest"
	"github.com/penstock-dev/penstock/internal/proxy"
	"github.com/penstock-dev/penstock/internal/upstream"
)

// model is a loopback KServe v1 model server: each prediction is its
// instance doubled; an instance "bad" makes it refuse the whole request
// with 400, as a naive model server does. It records the instances of
// every request it gets.
type model struct {
	srv *httptest.Server

	mu       sync.Mutex
	requests [][]json.RawMessage
	ids      []string // X-Batch-Request-Ids of each request
	status   int      // answer every request with this status when set
}

func newModel(t *testing.T) *model {
	m := &model{}
	m.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Instances []json.RawMessage `json:"instances"`
		}
		body, _ := io.ReadAll(r.Body)
		err := json.Unmarshal(body, &req)
		m.mu.Lock()
		m.requests = append(m.requests, req.Instances)
		m.ids = append(m.ids, r.Header.Get(BatchIDsHeader))
		status := m.status
		m.mu.Unlock()
		if err != nil {
			http.Error(w, `{"error":"bad json"}`, http.StatusBadRequest)
			return
		}
		if status != 0 {
			w.WriteHeader(status)
			io.WriteString(w, `{"error":"overloaded"}`)
			return
		}
		preds := make([]float64, len(req.Instances))
		for i, in := range req.Instances {
			var v float64
			if json.Unmarshal(in, &v) != nil {
				w.WriteHeader(http.StatusBadRequest)
				fmt.Fprintf(w, `{"error":"instance %d is not a number"}`, i)
				return
			}
			preds[i] = 2 * v
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Model", "double")
		json.NewEncoder(w).Encode(map[string]any{"predictions": preds})
	}))
	t.Cleanup(m.srv.Close)
	return m
}

// sizes returns the number of instances of each request the model got,
// in order.
func (m *model) sizes() []int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]int, len(m.requests))
	for i, r := range m.requests {
		out[i] = len(r)
	}
	return out
}

// batcher builds a batcher over a real forwarder to addr.
func batcher(t *testing.T, addr string, cfg config.RouteBatch) *Batcher {
	t.Helper()
	u := config.Upstream{Name: "models", Endpoints: []config.Endpoint{{Address: addr}}, Protocol: "h1", Balancing: "round_robin",
		Pool: config.Pool{MaxIdlePerEndpoint: 64, IdleTimeout: config.Duration(time.Minute)}}
	p, err := upstream.NewPoolWith(&u, upstream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	fwd := &proxy.Forwarder{Pool: p, ResponseHeaderTimeout: 10 * time.Second, RequestTimeout: 20 * time.Second}
	if cfg.Format == "" {
		cfg.Format = "kserve_v1"
	}
	cfg.SetDefaults()
	b, err := New(&cfg, fwd, 1, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// result is what one client got.
type result struct {
	status int
	body   string
	header *exchange.Header
}

// post sends body as a client of b with request id id.
func post(t *testing.T, b *Batcher, id, body string) result {
	x, rec := exchangetest.NewExchange(t, "POST")
	x.Ctx = context.Background()
	x.Req.Path = "/v1/models/double:predict"
	x.Req.Host = "models.test"
	x.Req.Header.Add("Content-Type", "application/json")
	x.Req.Body = io.NopCloser(strings.NewReader(body))
	x.Req.ContentLength = int64(len(body))
	x.State.RequestID = id
	x.W.Header().Set("X-Request-Id", id)
	b.ServeExchange(x)
	status := 0
	if len(rec.Statuses) > 0 {
		status = rec.Statuses[len(rec.Statuses)-1]
	}
	return result{status: status, body: string(rec.Body), header: &rec.Hdr}
}

// postAll sends bodies[i] as client "c<i>", all at once, and returns what
// each got.
func postAll(t *testing.T, b *Batcher, bodies []string) []result {
	out := make([]result, len(bodies))
	var wg sync.WaitGroup
	for i, body := range bodies {
		wg.Go(func() { out[i] = post(t, b, fmt.Sprintf("c%d", i), body) })
	}
	wg.Wait()
	return out
}

func TestBatcherSplitsOneBatchIntoEachClientsResponse(t *testing.T) {
	m := newModel(t)
	// A long delay: the batch goes when it is full, so its size is known.
	b := batcher(t, m.srv.Listener.Addr().String(), config.RouteBatch{MaxBatchSize: 6, MaxQueueDelay: config.Duration(time.Minute)})
	bodies := []string{`{"instances":[1]}`, `{"instances":[2,3]}`, `{"instances":[4]}`, `{"instances":[5,6]}`}
	got := postAll(t, b, bodies)
	if s := m.sizes(); len(s) != 1 || s[0] != 6 {
		t.Fatalf("model got requests of %v instances, want one of 6", s)
	}
	for i, r := range got {
		var resp struct{ Predictions []float64 }
		if err := json.Unmarshal([]byte(r.body), &resp); err != nil || r.status != 200 {
			t.Fatalf("client %d: %d %s (%v)", i, r.status, r.body, err)
		}
		var req struct{ Instances []float64 }
		json.Unmarshal([]byte(bodies[i]), &req)
		if len(resp.Predictions) != len(req.Instances) {
			t.Fatalf("client %d: predictions %v for instances %v", i, resp.Predictions, req.Instances)
		}
		for k := range req.Instances {
			if resp.Predictions[k] != 2*req.Instances[k] {
				t.Errorf("client %d: predictions %v for instances %v", i, resp.Predictions, req.Instances)
			}
		}
		if id, _ := r.header.Get("X-Request-Id"); id != fmt.Sprintf("c%d", i) {
			t.Errorf("client %d: X-Request-Id %q", i, id)
		}
		if v, _ := r.header.Get("X-Model"); v != "double" {
			t.Errorf("client %d: the upstream's headers are missing: X-Model %q", i, v)
		}
		if n, _ := r.header.Get(BatchSizeHeader); n != "4" {
			t.Errorf("client %d: %s %q, want 4", i, BatchSizeHeader, n)
		}
		if cl, _ := r.header.Get("Content-Length"); cl != fmt.Sprint(len(r.body)) {
			t.Errorf("client %d: Content-Length %q for %d bytes", i, cl, len(r.body))
		}
	}
	if ids := strings.Split(m.ids[0], ","); len(ids) != 4 {
		t.Errorf("%s = %q, want the 4 request ids", BatchIDsHeader, m.ids[0])
	}
}

// While the only slot is busy, arrivals wait and leave together in the
// next batch, up to max_batch_size.
func TestBatcherFillsWhileTheSlotIsBusy(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var sizes []int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Instances []float64 }
		json.NewDecoder(r.Body).Decode(&req)
		mu.Lock()
		sizes = append(sizes, len(req.Instances))
		first := len(sizes) == 1
		mu.Unlock()
		if first {
			<-release
		}
		preds := make([]float64, len(req.Instances))
		json.NewEncoder(w).Encode(map[string]any{"predictions": preds})
	}))
	t.Cleanup(srv.Close)
	b := batcher(t, srv.Listener.Addr().String(), config.RouteBatch{MaxBatchSize: 4, MaxQueueDelay: config.Duration(time.Millisecond)})
	done := make(chan result, 10)
	go func() { done <- post(t, b, "first", `{"instances":[0]}`) }()
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(sizes) == 1 })
	for i := range 9 {
		go func() { done <- post(t, b, fmt.Sprint(i), `{"instances":[1]}`) }()
	}
	waitFor(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return b.queued == 9 })
	close(release)
	for range 10 {
		if r := <-done; r.status != 200 {
			t.Fatalf("a client got %d %s", r.status, r.body)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(sizes) != "[1 4 4 1]" {
		t.Errorf("batch sizes %v, want [1 4 4 1] (the first alone, then full batches, oldest first)", sizes)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 20s")
		}
	}
}

func TestBatcherIsolatesFailures(t *testing.T) {
	t.Run("one bad item fails only its client", func(t *testing.T) {
		m := newModel(t)
		b := batcher(t, m.srv.Listener.Addr().String(), config.RouteBatch{MaxBatchSize: 4, MaxQueueDelay: config.Duration(time.Minute)})
		got := postAll(t, b, []string{`{"instances":[1]}`, `{"instances":["bad"]}`, `{"instances":[3]}`, `{"instances":[4]}`})
		for i, r := range got {
			want := 200
			if i == 1 {
				want = 400
			}
			if r.status != want {
				t.Errorf("client %d: %d %s, want %d", i, r.status, r.body, want)
			}
		}
		if s := m.sizes(); fmt.Sprint(s) != "[4 1 1 1 1]" {
			t.Errorf("model got requests of %v instances, want the batch then each alone", s)
		}
	})
	t.Run("an unreachable upstream fails each client with its own request id", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		addr := srv.Listener.Addr().String()
		srv.Close()
		b := batcher(t, addr, config.RouteBatch{MaxBatchSize: 3, MaxQueueDelay: config.Duration(time.Minute)})
		got := postAll(t, b, []string{`{"instances":[1]}`, `{"instances":[2]}`, `{"instances":[3]}`})
		for i, r := range got {
			if r.status != 502 && r.status != 503 {
				t.Errorf("client %d: %d, want 502 or 503", i, r.status)
			}
			if want := fmt.Sprintf(`"request_id":"c%d"`, i); !strings.Contains(r.body, want) {
				t.Errorf("client %d: body %s lacks %s", i, r.body, want)
			}
		}
	})
	t.Run("a server error reaches every client", func(t *testing.T) {
		m := newModel(t)
		m.mu.Lock()
		m.status = 503
		m.mu.Unlock()
		b := batcher(t, m.srv.Listener.Addr().String(), config.RouteBatch{MaxBatchSize: 2, MaxQueueDelay: config.Duration(time.Minute)})
		for i, r := range postAll(t, b, []string{`{"instances":[1]}`, `{"instances":[2]}`}) {
			if r.status != 503 || !strings.Contains(r.body, "overloaded") {
				t.Errorf("client %d: %d %s, want the upstream's 503", i, r.status, r.body)
			}
		}
	})
}

func TestBatcherSendsUnbatchableRequestsAlone(t *testing.T) {
	m := newModel(t)
	b := batcher(t, m.srv.Listener.Addr().String(), config.RouteBatch{MaxBatchSize: 2, MaxQueueDelay: config.Duration(time.Minute)})
	tests := []struct {
		name, body string
		want       int
	}{
		{"too many items", `{"instances":[1,2,3]}`, 200},
		{"another shape of request", `{"inputs":{"a":[1]}}`, 200},
		{"not JSON", `hello`, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if r := post(t, b, "x", tt.body); r.status != tt.want {
				t.Errorf("got %d %s, want %d from the model", r.status, r.body, tt.want)
			}
		})
	}
	if s := m.sizes(); len(s) != 3 {
		t.Errorf("model got %d requests, want 3 (each alone, at once)", len(s))
	}
}

func TestBatcherRefusesWhenTheQueueIsFull(t *testing.T) {
	m := newModel(t)
	b := batcher(t, m.srv.Listener.Addr().String(), config.RouteBatch{MaxBatchSize: 4, MaxQueue: 2, MaxQueueDelay: config.Duration(time.Minute)})
	done := make(chan result, 2)
	for i := range 2 {
		go func() { done <- post(t, b, fmt.Sprint(i), `{"instances":[1]}`) }()
	}
	waitFor(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return b.queued == 2 })
	if r := post(t, b, "late", `{"instances":[1]}`); r.status != 503 || !strings.Contains(r.body, "concurrency_limited") {
		t.Errorf("a third request got %d %s, want 503 concurrency_limited", r.status, r.body)
	}
	// The two waiting go when their batch's delay ends; shorten it.
	b.mu.Lock()
	for _, bt := range b.queue {
		bt.timer.Reset(time.Millisecond)
	}
	b.mu.Unlock()
	for range 2 {
		if r := <-done; r.status != 200 {
			t.Errorf("a queued client got %d", r.status)
		}
	}
}
