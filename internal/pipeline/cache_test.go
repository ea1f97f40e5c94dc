package pipeline

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/exchange"
)

// origin stands in for the forwarder: it answers like an upstream would,
// honouring If-None-Match, and counts what reached it.
type origin struct {
	requests atomic.Int64
	// conditional counts requests that carried If-None-Match.
	conditional atomic.Int64
	header      map[string]string // response fields
	body        string
	etag        string
}

func (o *origin) ServeExchange(x *exchange.Exchange) {
	o.requests.Add(1)
	h := x.W.Header()
	if inm, ok := x.Req.Header.Get("If-None-Match"); ok {
		o.conditional.Add(1)
		if o.etag != "" && etagMatches(inm, o.etag) {
			h.Set("ETag", o.etag)
			if cc, ok := o.header["Cache-Control"]; ok {
				h.Set("Cache-Control", cc)
			}
			x.State.Status = 304
			x.W.WriteHeader(304)
			return
		}
	}
	for k, v := range o.header {
		h.Add(k, v)
	}
	if o.etag != "" {
		h.Set("ETag", o.etag)
	}
	h.Set("Content-Length", strconv.Itoa(len(o.body)))
	x.State.Status = 200
	x.W.WriteHeader(200)
	if x.Req.Method != "HEAD" {
		io.WriteString(x.W, o.body)
	}
}

// testCache builds the cache stage in front of o with a settable clock.
func testCache(t testing.TB, rc RouteCache, o exchange.Handler) (*cache, *time.Time) {
	t.Helper()
	rc.Enabled = true
	if rc.MaxBytes == 0 {
		rc.MaxBytes = 1 << 20
	}
	if rc.MaxObjectBytes == 0 {
		rc.MaxObjectBytes = 64 << 10
	}
	h, err := newCache(&CacheSettings{Cache: rc}, &Route{Config: &config.Route{Name: "assets"}}, o)
	if err != nil {
		t.Fatal(err)
	}
	c := h.(*cache)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c.now = func() time.Time { return now }
	return c, &now
}

// result is what a client saw of one request through the cache.
type result struct {
	status      int
	body        string
	cacheStatus string
	etag, age   string
}

func get(t testing.TB, h exchange.Handler, method, path string, reqHeader ...string) result {
	t.Helper()
	x := exchange.Acquire()
	defer exchange.Release(x)
	rec := &recorder{}
	x.W = rec
	x.Ctx = context.Background()
	x.Req.Proto = exchange.HTTP11
	x.Req.Method = method
	x.Req.Host = "models.example"
	x.Req.Path, x.Req.Query, _ = strings.Cut(path, "?")
	x.Req.Body = io.NopCloser(strings.NewReader(""))
	for i := 0; i+1 < len(reqHeader); i += 2 {
		x.Req.Header.Add(reqHeader[i], reqHeader[i+1])
	}
	h.ServeExchange(x)
	r := result{body: string(rec.Body)}
	if n := len(rec.Statuses); n > 0 {
		r.status = rec.Statuses[n-1]
	}
	r.cacheStatus, _ = rec.Hdr.Get("Cache-Status")
	r.etag, _ = rec.Hdr.Get("ETag")
	r.age, _ = rec.Hdr.Get("Age")
	return r
}

func TestCache(t *testing.T) {
	type step struct {
		advance  time.Duration
		method   string
		path     string
		header   []string
		want     result
		upstream int64 // requests the upstream has seen after the step
	}
	tests := []struct {
		name   string
		cfg    RouteCache
		origin *origin
		steps  []step
	}{
		{
			name:   "second fetch is served by the gateway",
			origin: &origin{header: map[string]string{"Cache-Control": "public, max-age=300"}, body: "tok", etag: `"v1"`},
			steps: []step{
				{path: "/m/tokenizer.bin", want: result{200, "tok", cacheStatusMiss, `"v1"`, ""}, upstream: 1},
				{advance: 10 * time.Second, path: "/m/tokenizer.bin", want: result{200, "tok", cacheStatusHit, `"v1"`, "10"}, upstream: 1},
				{method: "HEAD", path: "/m/tokenizer.bin", want: result{200, "", cacheStatusHit, `"v1"`, "10"}, upstream: 1},
				{path: "/m/tokenizer.bin?rev=2", want: result{200, "tok", cacheStatusMiss, `"v1"`, ""}, upstream: 2},
			},
		},
		{
			name:   "If-None-Match matching the stored ETag gets 304 from the gateway",
			origin: &origin{header: map[string]string{"Cache-Control": "max-age=60"}, body: "cfg", etag: `"abc"`},
			steps: []step{
				{path: "/a", want: result{200, "cfg", cacheStatusMiss, `"abc"`, ""}, upstream: 1},
				{path: "/a", header: []string{"If-None-Match", `"zzz", W/"abc"`}, want: result{304, "", cacheStatusHit, `"abc"`, "0"}, upstream: 1},
				{path: "/a", header: []string{"If-None-Match", `"zzz"`}, want: result{200, "cfg", cacheStatusHit, `"abc"`, "0"}, upstream: 1},
			},
		},
		{
			name:   "max-age expiry revalidates with If-None-Match and refreshes on 304",
			origin: &origin{header: map[string]string{"Cache-Control": "max-age=60"}, body: "cfg", etag: `"abc"`},
			steps: []step{
				{path: "/a", want: result{200, "cfg", cacheStatusMiss, `"abc"`, ""}, upstream: 1},
				{advance: 59 * time.Second, path: "/a", want: result{200, "cfg", cacheStatusHit, `"abc"`, "59"}, upstream: 1},
				{advance: 2 * time.Second, path: "/a", want: result{200, "cfg", cacheStatusRevalidated, `"abc"`, "0"}, upstream: 2},
				{advance: time.Second, path: "/a", want: result{200, "cfg", cacheStatusHit, `"abc"`, "1"}, upstream: 2},
				{advance: time.Minute, path: "/a", header: []string{"If-None-Match", `"abc"`}, want: result{304, "", cacheStatusRevalidated, `"abc"`, "0"}, upstream: 3},
			},
		},
		{
			name:   "no-store is never stored",
			origin: &origin{header: map[string]string{"Cache-Control": "no-store"}, body: "x"},
			steps: []step{
				{path: "/a", want: result{200, "x", cacheStatusMiss, "", ""}, upstream: 1},
				{path: "/a", want: result{200, "x", cacheStatusMiss, "", ""}, upstream: 2},
			},
		},
		{
			name:   "private, Vary and Set-Cookie are not stored",
			origin: &origin{header: map[string]string{"Cache-Control": "max-age=60", "Vary": "Accept-Encoding"}, body: "x"},
			steps: []step{
				{path: "/a", want: result{200, "x", cacheStatusMiss, "", ""}, upstream: 1},
				{path: "/a", want: result{200, "x", cacheStatusMiss, "", ""}, upstream: 2},
			},
		},
		{
			name:   "no explicit freshness is not stored without default_ttl",
			origin: &origin{body: "x", etag: `"e"`},
			steps: []step{
				{path: "/a", want: result{200, "x", cacheStatusMiss, `"e"`, ""}, upstream: 1},
				{path: "/a", want: result{200, "x", cacheStatusMiss, `"e"`, ""}, upstream: 2},
			},
		},
		{
			name:   "default_ttl makes unmarked responses fresh",
			cfg:    RouteCache{DefaultTTL: config.Duration(30 * time.Second)},
			origin: &origin{body: "x"},
			steps: []step{
				{path: "/a", want: result{200, "x", cacheStatusMiss, "", ""}, upstream: 1},
				{advance: 29 * time.Second, path: "/a", want: result{200, "x", cacheStatusHit, "", "29"}, upstream: 1},
				{advance: time.Second, path: "/a", want: result{200, "x", cacheStatusStale, "", ""}, upstream: 2},
			},
		},
		{
			name:   "s-maxage wins over max-age for a shared cache",
			origin: &origin{header: map[string]string{"Cache-Control": "max-age=600, s-maxage=5"}, body: "x"},
			steps: []step{
				{path: "/a", want: result{200, "x", cacheStatusMiss, "", ""}, upstream: 1},
				{advance: 5 * time.Second, path: "/a", want: result{200, "x", cacheStatusStale, "", ""}, upstream: 2},
			},
		},
		{
			name:   "no-cache is stored but revalidated every time",
			origin: &origin{header: map[string]string{"Cache-Control": "no-cache"}, body: "x", etag: `"n"`},
			steps: []step{
				{path: "/a", want: result{200, "x", cacheStatusMiss, `"n"`, ""}, upstream: 1},
				{path: "/a", want: result{200, "x", cacheStatusRevalidated, `"n"`, "0"}, upstream: 2},
			},
		},
		{
			name:   "Age from the upstream counts against freshness",
			origin: &origin{header: map[string]string{"Cache-Control": "max-age=10", "Age": "8"}, body: "x"},
			steps: []step{
				{path: "/a", want: result{200, "x", cacheStatusMiss, "", "8"}, upstream: 1},
				{advance: time.Second, path: "/a", want: result{200, "x", cacheStatusHit, "", "9"}, upstream: 1},
				{advance: time.Second, path: "/a", want: result{200, "x", cacheStatusStale, "", "8"}, upstream: 2},
			},
		},
		{
			name:   "a body over max_object_bytes passes through uncached",
			cfg:    RouteCache{MaxObjectBytes: 4},
			origin: &origin{header: map[string]string{"Cache-Control": "max-age=60"}, body: "12345"},
			steps: []step{
				{path: "/a", want: result{200, "12345", cacheStatusMiss, "", ""}, upstream: 1},
				{path: "/a", want: result{200, "12345", cacheStatusMiss, "", ""}, upstream: 2},
			},
		},
		{
			name:   "request no-store, Authorization and Upgrade bypass the cache",
			origin: &origin{header: map[string]string{"Cache-Control": "max-age=60"}, body: "x"},
			steps: []step{
				{path: "/a", want: result{200, "x", cacheStatusMiss, "", ""}, upstream: 1},
				{path: "/a", header: []string{"Cache-Control", "no-store"}, want: result{200, "x", cacheStatusRequest, "", ""}, upstream: 2},
				{path: "/a", header: []string{"Authorization", "Bearer t"}, want: result{200, "x", cacheStatusBypass, "", ""}, upstream: 3},
				{path: "/a", header: []string{"Upgrade", "websocket"}, want: result{200, "x", cacheStatusBypass, "", ""}, upstream: 4},
				{path: "/a", want: result{200, "x", cacheStatusHit, "", "0"}, upstream: 4},
			},
		},
		{
			name:   "request no-cache and max-age revalidate a fresh entry",
			origin: &origin{header: map[string]string{"Cache-Control": "max-age=60"}, body: "x", etag: `"r"`},
			steps: []step{
				{path: "/a", want: result{200, "x", cacheStatusMiss, `"r"`, ""}, upstream: 1},
				{path: "/a", header: []string{"Cache-Control", "no-cache"}, want: result{200, "x", cacheStatusRequestRev, `"r"`, "0"}, upstream: 2},
				{advance: 10 * time.Second, path: "/a", header: []string{"Cache-Control", "max-age=5"}, want: result{200, "x", cacheStatusRequestRev, `"r"`, "0"}, upstream: 3},
				{advance: 10 * time.Second, path: "/a", header: []string{"Cache-Control", "max-age=30"}, want: result{200, "x", cacheStatusHit, `"r"`, "10"}, upstream: 3},
			},
		},
		{
			name:   "POST is not cached",
			origin: &origin{header: map[string]string{"Cache-Control": "max-age=60"}, body: "x"},
			steps: []step{
				{method: "POST", path: "/a", want: result{200, "x", "", "", ""}, upstream: 1},
				{method: "POST", path: "/a", want: result{200, "x", "", "", ""}, upstream: 2},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.origin
			c, now := testCache(t, tt.cfg, o)
			for i, s := range tt.steps {
				*now = now.Add(s.advance)
				method := s.method
				if method == "" {
					method = "GET"
				}
				got := get(t, c, method, s.path, s.header...)
				if got != s.want {
					t.Errorf("step %d: %s %s got %+v, want %+v", i, method, s.path, got, s.want)
				}
				if n := o.requests.Load(); n != s.upstream {
					t.Errorf("step %d: upstream saw %d requests, want %d", i, n, s.upstream)
				}
			}
		})
	}
}

// TestCacheRevalidatesWithTheStoredETag checks what the upstream is asked
// when a stale entry is revalidated: the stored ETag, not the client's.
func TestCacheRevalidatesWithTheStoredETag(t *testing.T) {
	var seen []string
	o := &origin{header: map[string]string{"Cache-Control": "max-age=1"}, body: "x", etag: `"s"`}
	spy := exchange.HandlerFunc(func(x *exchange.Exchange) {
		v, _ := x.Req.Header.Get("If-None-Match")
		seen = append(seen, v)
		o.ServeExchange(x)
	})
	c, now := testCache(t, RouteCache{}, spy)
	get(t, c, "GET", "/a")
	*now = now.Add(2 * time.Second)
	got := get(t, c, "GET", "/a", "If-None-Match", `"client"`)
	if want := []string{"", `"s"`}; fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Errorf("upstream saw If-None-Match %q, want %q", seen, want)
	}
	// The client's own tag does not match: it gets the full body.
	if got.status != 200 || got.body != "x" {
		t.Errorf("client got %+v, want 200 with the body", got)
	}
}

// TestCacheEvictionKeepsWithinMaxBytes fills the cache well past its bound
// and checks after every insert that the bytes held never exceed it.
func TestCacheEvictionKeepsWithinMaxBytes(t *testing.T) {
	tests := []struct {
		name                string
		maxBytes, maxObject config.ByteSize
		bodySize            int
	}{
		{"one shard", 8 << 10, 4 << 10, 1000},
		{"sixteen shards", 4 << 20, 64 << 10, 3000},
		{"tiny bodies", 16 << 10, 1 << 10, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := &origin{header: map[string]string{"Cache-Control": "max-age=60"}, body: strings.Repeat("b", tt.bodySize)}
			c, _ := testCache(t, RouteCache{MaxBytes: tt.maxBytes, MaxObjectBytes: tt.maxObject}, o)
			for i := range 2000 {
				get(t, c, "GET", fmt.Sprintf("/asset/%d", i))
				if b, _ := c.store.size(); b > tt.maxBytes.Int64() {
					t.Fatalf("after %d inserts the cache holds %d bytes, bound %d", i+1, b, tt.maxBytes)
				}
			}
			b, n := c.store.size()
			if n == 0 || b < tt.maxBytes.Int64()/4 {
				t.Errorf("cache holds %d entries, %d bytes: eviction emptied it", n, b)
			}
			if ab, an := c.store.bytes.Load(), c.store.entries.Load(); ab != b || an != int64(n) {
				t.Errorf("running totals %d bytes / %d entries, counted %d / %d", ab, an, b, n)
			}
			// The most recent asset survived; the first was evicted.
			before := o.requests.Load()
			get(t, c, "GET", "/asset/1999")
			if o.requests.Load() != before {
				t.Errorf("the most recently stored asset was evicted")
			}
			get(t, c, "GET", "/asset/0")
			if o.requests.Load() != before+1 {
				t.Errorf("the least recently used asset is still stored")
			}
		})
	}
}

// TestCacheConcurrentHits runs hits, misses and revalidations from many
// goroutines (run with -race) and checks every response is whole.
func TestCacheConcurrentHits(t *testing.T) {
	o := &origin{header: map[string]string{"Cache-Control": "max-age=1"}, body: strings.Repeat("z", 4096), etag: `"c"`}
	h, err := newCache(&CacheSettings{Cache: RouteCache{Enabled: true, MaxBytes: 64 << 10, MaxObjectBytes: 8 << 10}}, &Route{Config: &config.Route{Name: "r"}}, o)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 300 {
				r := get(t, h, "GET", fmt.Sprintf("/a/%d", (g*7+i)%24))
				if r.status != 200 || len(r.body) != 4096 {
					t.Errorf("got status %d with %d bytes", r.status, len(r.body))
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := o.requests.Load(); n >= 8*300 {
		t.Errorf("upstream saw %d of %d requests: nothing was served from the cache", n, 8*300)
	}
}

func TestCacheHitAllocatesNothing(t *testing.T) {
	o := &origin{header: map[string]string{"Cache-Control": "max-age=300", "Content-Type": "application/octet-stream"}, body: strings.Repeat("t", 8<<10), etag: `"v"`}
	c, _ := testCache(t, RouteCache{}, o)
	x, rec := newExchange(t, "GET")
	x.Ctx = context.Background()
	x.Req.Host, x.Req.Path = "models.example", "/v1/models/resnet50/assets/tokenizer.bin"
	c.ServeExchange(x) // miss, stores
	rec.Reset()
	c.ServeExchange(x) // warm the header's buffers
	allocs := testing.AllocsPerRun(100, func() {
		rec.Reset()
		c.ServeExchange(x)
	})
	if s, _ := rec.Hdr.Get("Cache-Status"); s != cacheStatusHit {
		t.Fatalf("Cache-Status %q, want a hit", s)
	}
	if allocs != 0 {
		t.Errorf("a cache hit allocates %.1f times, want 0", allocs)
	}
}

// discardWriter is a ResponseWriter that keeps the header and drops the
// body, so the benchmark measures the cache rather than a copy of the body.
type discardWriter struct{ recorder }

func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }

// BenchmarkCacheHit is the hit path of an 8 KiB asset, the size of the demo
// model assets, in parallel across keys.
func BenchmarkCacheHit(b *testing.B) {
	o := &origin{header: map[string]string{"Cache-Control": "max-age=300", "Content-Type": "application/octet-stream"}, body: strings.Repeat("t", 8<<10), etag: `"v"`}
	c, _ := testCache(b, RouteCache{}, o)
	c.now = time.Now
	paths := make([]string, 64)
	for i := range paths {
		paths[i] = fmt.Sprintf("/v1/models/m%d/assets/tokenizer.bin", i)
		get(b, c, "GET", paths[i])
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		x := exchange.Acquire()
		defer exchange.Release(x)
		rec := &discardWriter{}
		x.W = rec
		x.Ctx = context.Background()
		x.Req.Method, x.Req.Host = "GET", "models.example"
		i := 0
		for pb.Next() {
			rec.Reset()
			x.Req.Path = paths[i%len(paths)]
			i++
			c.ServeExchange(x)
		}
	})
}
