package pipeline

import (
	"bufio"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/metrics"
	"github.com/penstock-dev/penstock/internal/requestid"
)

// CacheSettings are the cache stage's route fields.
type CacheSettings struct {
	// Cache keeps small upstream responses of GET and HEAD requests in
	// memory. Off by default.
	Cache RouteCache `yaml:"cache"`
}

// RouteCache configures the route's in-memory response cache: GET and HEAD
// responses with status 200 that are small and cacheable by a shared cache
// (RFC 9111) are kept, keyed by host, path and query, and served without
// asking the upstream while fresh. Responses carrying Vary are not stored.
type RouteCache struct {
	// Enabled keeps small 200 responses to GET and HEAD in memory and serves
	// them while fresh (RFC 9111, as a shared cache), keyed by host, path and
	// query (bool). Responses with Vary are not stored. Default false.
	Enabled bool `yaml:"enabled"`
	// MaxBytes bounds the memory the route's cache holds (size): the sum of
	// the stored bodies and headers never exceeds it; the least recently
	// used entries are evicted first. Default 64MiB.
	MaxBytes config.ByteSize `yaml:"max_bytes"`
	// MaxObjectBytes bounds the body of a stored response (size); larger
	// responses pass through uncached. At most max_bytes. Default 1MiB.
	MaxObjectBytes config.ByteSize `yaml:"max_object_bytes"`
	// DefaultTTL sets how long a response without explicit freshness
	// (Cache-Control max-age or s-maxage, or Expires) stays fresh
	// (duration). Default 0 (such responses are not stored).
	DefaultTTL config.Duration `yaml:"default_ttl"`
}

// Defaults of RouteCache.
const (
	// DefaultCacheMaxBytes is RouteCache.MaxBytes's default.
	DefaultCacheMaxBytes = config.ByteSize(64 << 20)
	// DefaultCacheMaxObjectBytes is RouteCache.MaxObjectBytes's default.
	DefaultCacheMaxObjectBytes = config.ByteSize(1 << 20)
)

// SetDefaults implements Settings.
func (s *CacheSettings) SetDefaults() {
	if s.Cache.MaxBytes == 0 {
		s.Cache.MaxBytes = DefaultCacheMaxBytes
	}
	if s.Cache.MaxObjectBytes == 0 {
		s.Cache.MaxObjectBytes = DefaultCacheMaxObjectBytes
	}
}

// Check implements Settings.
func (s *CacheSettings) Check(r *Route) {
	c := s.Cache
	if c.MaxBytes < 0 {
		r.Errorf("cache.max_bytes", "must not be negative, got %d", c.MaxBytes)
	}
	if c.MaxObjectBytes < 0 {
		r.Errorf("cache.max_object_bytes", "must not be negative, got %d", c.MaxObjectBytes)
	}
	if c.DefaultTTL < 0 {
		r.Errorf("cache.default_ttl", "must not be negative, got %s", c.DefaultTTL)
	}
	if c.Enabled && c.MaxObjectBytes > c.MaxBytes {
		r.Errorf("cache.max_object_bytes", "must not exceed cache.max_bytes (%s), got %s", c.MaxBytes, c.MaxObjectBytes)
	}
}

// cache is the route's in-memory asset cache (RFC 9111, as a shared cache).
//
// It stores 200 responses to GET that are small (cache.max_object_bytes),
// explicitly fresh (s-maxage, max-age or Expires, else cache.default_ttl)
// and not marked no-store or private, keyed by host, path and query. A
// fresh entry answers GET and HEAD without the upstream, with 304 when the
// client's If-None-Match matches its ETag. A stale entry with a validator is
// revalidated with If-None-Match (or If-Modified-Since) and refreshed on
// 304. Responses carrying Vary or Set-Cookie, and requests carrying
// Authorization, are never stored or served from the cache: keying on Vary
// would multiply entries per client header for assets that rarely vary, so
// the cache stays out of the way instead.
//
// The hit path takes one shard lock of the LRU and allocates nothing.
type cache struct {
	store      *cacheStore
	maxObject  int64
	defaultTTL time.Duration
	route      string
	next       exchange.Handler
	metrics    *metrics.Cache // nil: not recorded
	now        func() time.Time
}

// Cache-Status values (RFC 9211) the cache adds to its responses.
const (
	cacheStatusHit         = "penstock; hit"
	cacheStatusMiss        = "penstock; fwd=miss"
	cacheStatusStale       = "penstock; fwd=stale"
	cacheStatusRevalidated = "penstock; fwd=stale; fwd-status=304"
	cacheStatusRequestRev  = "penstock; fwd=request; fwd-status=304"
	cacheStatusRequest     = "penstock; fwd=request"
	cacheStatusBypass      = "penstock; fwd=bypass"
)

func newCache(s *CacheSettings, r *Route, next exchange.Handler) (exchange.Handler, error) {
	rc := s.Cache
	if !rc.Enabled {
		return next, nil
	}
	maxBytes, maxObject := rc.MaxBytes.Int64(), rc.MaxObjectBytes.Int64()
	if maxBytes <= 0 {
		maxBytes = DefaultCacheMaxBytes.Int64()
	}
	if maxObject <= 0 || maxObject > maxBytes {
		maxObject = min(DefaultCacheMaxObjectBytes.Int64(), maxBytes)
	}
	c := &cache{
		store:      newCacheStore(maxBytes, maxObject),
		maxObject:  maxObject,
		defaultTTL: rc.DefaultTTL.D(),
		route:      r.Config.Name,
		next:       next,
		now:        time.Now,
	}
	if r.Metrics != nil {
		c.metrics = r.Metrics.Cache(c.route)
		c.store.metrics = c.metrics
	}
	return c, nil
}

// maxKeyStack is the key length built on the stack; longer keys (long
// query strings) spill to the heap.
const maxKeyStack = 256

func (c *cache) ServeExchange(x *exchange.Exchange) {
	if x.Req.Method != "GET" && x.Req.Method != "HEAD" {
		c.next.ServeExchange(x)
		return
	}
	if x.Req.Header.Has("Authorization") || x.Req.Header.Has("Upgrade") {
		// RFC 9111 §3.5: a shared cache must not reuse a response to an
		// authenticated request unless the response allows it explicitly;
		// penstock does not try. A protocol upgrade is not a fetch at all.
		x.W.Header().Add("Cache-Status", cacheStatusBypass)
		c.next.ServeExchange(x)
		return
	}
	reqCC := parseCacheControl(&x.Req.Header)
	if reqCC.noStore {
		x.W.Header().Add("Cache-Status", cacheStatusRequest)
		c.next.ServeExchange(x)
		return
	}
	var kb [maxKeyStack]byte
	key := appendCacheKey(kb[:0], &x.Req)
	now := c.now()
	e := c.store.get(key)
	status := cacheStatusMiss
	if e != nil {
		status = cacheStatusStale
		if e.fresh(now) {
			// The request may still ask for a fresher response (RFC 9111
			// §5.2.1): no-cache, or a max-age the entry is older than.
			if !reqCC.noCache && (reqCC.maxAge < 0 || e.age(now) <= time.Duration(reqCC.maxAge)*time.Second) {
				c.lookup(metrics.CacheHit)
				c.serve(x, e, now, cacheStatusHit)
				return
			}
			status = cacheStatusRequest
		}
	}
	c.forward(x, key, e, status)
}

func (c *cache) lookup(result int) {
	if c.metrics != nil {
		c.metrics.Lookup(result)
	}
}

// appendCacheKey appends host (lowercased), path and query.
func appendCacheKey(b []byte, r *exchange.Request) []byte {
	for i := 0; i < len(r.Host); i++ {
		ch := r.Host[i]
		if 'A' <= ch && ch <= 'Z' {
			ch += 'a' - 'A'
		}
		b = append(b, ch)
	}
	b = append(b, r.Path...)
	if r.Query != "" {
		b = append(b, '?')
		b = append(b, r.Query...)
	}
	return b
}

// keptOn304 lists the fields a 304 from the cache repeats (RFC 9110
// §15.4.5); other representation metadata, Content-Length above all, would
// describe a body the 304 does not have.
func keptOn304(name string) bool {
	for _, k := range [...]string{"Cache-Control", "Content-Location", "Date", "ETag", "Expires", "Last-Modified", "Vary"} {
		if exchange.EqualFold(name, k) {
			return true
		}
	}
	return false
}

var ageHeader = []byte("Age")

// serve answers x from e: 304 when the client's If-None-Match matches.
func (c *cache) serve(x *exchange.Exchange, e *cacheEntry, now time.Time, status string) {
	h := x.W.Header()
	inm, conditional := x.Req.Header.Get("If-None-Match")
	notModified := conditional && etagMatches(inm, e.etag)
	for _, f := range e.header {
		if notModified && !keptOn304(f.name) {
			continue
		}
		h.Add(f.name, f.value)
	}
	var ab [20]byte
	h.AddBytes(ageHeader, strconv.AppendInt(ab[:0], int64(e.age(now)/time.Second), 10))
	h.Add("Cache-Status", status)
	if notModified {
		x.State.Status = http.StatusNotModified
		x.W.WriteHeader(http.StatusNotModified)
		return
	}
	x.State.Status = http.StatusOK
	x.W.WriteHeader(http.StatusOK)
	if x.Req.Method != "HEAD" {
		n, _ := x.W.Write(e.body)
		x.State.BytesOut += int64(n)
	}
}

var cacheWriterPool = sync.Pool{New: func() any { return new(cacheWriter) }}

// forward sends x upstream through a recording writer. stale is the stored
// entry that may not be served as it is, or nil; status is the Cache-Status
// of a forwarded response.
func (c *cache) forward(x *exchange.Exchange, key []byte, stale *cacheEntry, status string) {
	cw := cacheWriterPool.Get().(*cacheWriter)
	defer func() {
		cw.reset()
		cacheWriterPool.Put(cw)
	}()
	cw.c, cw.w, cw.x = c, x.W, x
	cw.key = append(cw.key[:0], key...)
	cw.cacheStatus = status

	var clientINM string
	var clientConditional bool
	if stale != nil {
		if stale.etag != "" || stale.lastModified != "" {
			// Ask the upstream whether the stored response is still good;
			// the client's own conditionals are answered from the entry.
			// Del only marks fields deleted, so clientINM stays valid.
			clientINM, clientConditional = x.Req.Header.Get("If-None-Match")
			x.Req.Header.Del("If-None-Match")
			x.Req.Header.Del("If-Modified-Since")
			if stale.etag != "" {
				x.Req.Header.Add("If-None-Match", stale.etag)
			} else {
				x.Req.Header.Add("If-Modified-Since", stale.lastModified)
			}
			cw.revalidating = true
		}
	}

	x.W = cw
	c.next.ServeExchange(x)
	x.W = cw.w

	switch {
	case cw.notModified:
		x.Req.Header.Del("If-None-Match")
		if clientConditional {
			x.Req.Header.Add("If-None-Match", clientINM)
		}
		now := c.now()
		fresh := c.refresh(stale, &cw.hdr, now)
		if fresh != nil {
			c.store.put(fresh)
		} else {
			fresh = stale
			c.store.remove(stale)
		}
		c.lookup(metrics.CacheRevalidated)
		x.State.Status = 0
		served := cacheStatusRevalidated
		if status == cacheStatusRequest {
			served = cacheStatusRequestRev
		}
		c.serve(x, fresh, now, served)
	case cw.entry != nil && cw.recording && !x.State.Aborted && x.Ctx.Err() == nil && cw.complete():
		c.lookup(metrics.CacheMiss)
		cw.entry.body = cw.body
		cw.body = nil // now owned by the entry
		if !hasField(cw.entry.header, "Content-Length") {
			cw.entry.header = append(cw.entry.header, storedField{"Content-Length", strconv.Itoa(len(cw.entry.body))})
		}
		cw.entry.computeSize()
		c.store.put(cw.entry)
	default:
		c.lookup(metrics.CacheMiss)
		if stale != nil && cw.wrote && cw.status < 500 {
			// The upstream answered something else than "not modified":
			// the stored response is outdated. (A server error says
			// nothing about it.)
			c.store.remove(stale)
		}
	}
}

func hasField(fs []storedField, name string) bool {
	for _, f := range fs {
		if exchange.EqualFold(f.name, name) {
			return true
		}
	}
	return false
}

// notStored lists response fields that describe one exchange, not the
// stored response: they are never replayed from the cache.
func notStored(name string) bool {
	for _, k := range [...]string{"Age", "Cache-Status", requestid.Header, "Connection", "Keep-Alive",
		"Transfer-Encoding", "Trailer", "Proxy-Connection", "Upgrade"} {
		if exchange.EqualFold(name, k) {
			return true
		}
	}
	return false
}

// newEntry builds an entry (without its body) for a 200 response with
// header h received at now, or returns nil when the response must not be
// stored.
func (c *cache) newEntry(key string, h *exchange.Header, now time.Time) *cacheEntry {
	cc := parseCacheControl(h)
	if cc.noStore || cc.private || h.Has("Vary") || h.Has("Set-Cookie") {
		return nil
	}
	if v, ok := h.Get("Content-Length"); ok {
		if n, err := strconv.ParseInt(v, 10, 64); err != nil || n > c.maxObject {
			return nil
		}
	}
	e := &cacheEntry{key: key, stored: now, noCache: cc.noCache}
	if v, ok := h.Get("ETag"); ok {
		e.etag = strings.Clone(v)
	}
	if v, ok := h.Get("Last-Modified"); ok {
		e.lastModified = strings.Clone(v)
	}
	if v, ok := h.Get("Age"); ok {
		if s, ok := parseDeltaSeconds(v); ok {
			e.initialAge = time.Duration(s) * time.Second
		}
	}
	e.lifetime = c.lifetime(cc, h, now)
	validator := e.etag != "" || e.lastModified != ""
	if e.lifetime <= 0 && !(validator && (cc.noCache || cc.maxAge == 0 || cc.sMaxAge == 0)) {
		// Nothing would ever be served from it: no freshness, and no
		// validator to revalidate it with.
		return nil
	}
	h.Range(func(name, value string) bool {
		if !notStored(name) {
			e.header = append(e.header, storedField{strings.Clone(name), strings.Clone(value)})
		}
		return true
	})
	return e
}

// lifetime is the freshness lifetime of a response (RFC 9111 §4.2.1): a
// shared cache prefers s-maxage, then max-age, then Expires minus Date,
// then cache.default_ttl.
func (c *cache) lifetime(cc cacheControl, h *exchange.Header, now time.Time) time.Duration {
	switch {
	case cc.sMaxAge >= 0:
		return time.Duration(cc.sMaxAge) * time.Second
	case cc.maxAge >= 0:
		return time.Duration(cc.maxAge) * time.Second
	}
	if v, ok := h.Get("Expires"); ok {
		exp, err := http.ParseTime(v)
		if err != nil {
			return 0 // an invalid Expires means already expired (§5.3)
		}
		date := now
		if dv, ok := h.Get("Date"); ok {
			if d, err := http.ParseTime(dv); err == nil {
				date = d
			}
		}
		return max(exp.Sub(date), 0)
	}
	return c.defaultTTL
}

// refresh returns a new entry for stale updated with the fields of a 304
// (RFC 9111 §4.3.4), or nil if the updated response may not be stored.
func (c *cache) refresh(stale *cacheEntry, h304 *exchange.Header, now time.Time) *cacheEntry {
	var merged exchange.Header
	for _, f := range stale.header {
		if !h304.Has(f.name) || exchange.EqualFold(f.name, "Content-Length") {
			merged.Add(f.name, f.value)
		}
	}
	h304.Range(func(name, value string) bool {
		if !exchange.EqualFold(name, "Content-Length") {
			merged.Add(name, value)
		}
		return true
	})
	e := c.newEntry(stale.key, &merged, now)
	if e == nil {
		return nil
	}
	e.body = stale.body
	e.computeSize()
	return e
}

// cacheWriter stands between the upstream side of the pipeline and the
// client: it relays the response while keeping a copy of a storable one,
// and swallows the 304 of a revalidation the cache itself asked for.
type cacheWriter struct {
	c   *cache
	w   exchange.ResponseWriter
	x   *exchange.Exchange
	hdr exchange.Header
	key []byte

	cacheStatus  string
	revalidating bool
	notModified  bool
	wrote        bool
	status       int
	recording    bool
	entry        *cacheEntry
	body         []byte
	wantLen      int64 // Content-Length of the recorded response, or -1
}

func (cw *cacheWriter) reset() {
	cw.c, cw.w, cw.x = nil, nil, nil
	cw.hdr.Reset()
	cw.key = cw.key[:0]
	cw.revalidating, cw.notModified, cw.wrote, cw.recording = false, false, false, false
	cw.entry, cw.body = nil, nil
}

func (cw *cacheWriter) Header() *exchange.Header { return &cw.hdr }

// moveHeader appends the collected fields to the client's header.
func (cw *cacheWriter) moveHeader() {
	dst := cw.w.Header()
	cw.hdr.Range(func(name, value string) bool {
		dst.Add(name, value)
		return true
	})
	cw.hdr.Reset()
}

func (cw *cacheWriter) WriteHeader(status int) {
	if cw.wrote {
		return
	}
	if status < 200 {
		cw.moveHeader()
		cw.w.WriteHeader(status)
		return
	}
	cw.wrote, cw.status = true, status
	if cw.revalidating && status == http.StatusNotModified {
		// Keep the 304's fields for the refresh; the client is answered
		// from the entry afterwards.
		cw.notModified = true
		return
	}
	if status == http.StatusOK && cw.x.Req.Method == "GET" {
		now := cw.c.now()
		if e := cw.c.newEntry(string(cw.key), &cw.hdr, now); e != nil {
			cw.entry, cw.recording = e, true
			cw.wantLen = -1
			if v, ok := cw.hdr.Get("Content-Length"); ok {
				cw.wantLen, _ = strconv.ParseInt(v, 10, 64)
			}
			if cw.wantLen > 0 {
				cw.body = make([]byte, 0, cw.wantLen)
			}
		}
	}
	cw.moveHeader()
	cw.w.Header().Add("Cache-Status", cw.cacheStatus)
	cw.w.WriteHeader(status)
}

func (cw *cacheWriter) Write(p []byte) (int, error) {
	if !cw.wrote {
		cw.WriteHeader(http.StatusOK)
	}
	if cw.notModified {
		return len(p), nil
	}
	if cw.recording {
		if int64(len(cw.body)+len(p)) > cw.c.maxObject {
			// Too big after all (no Content-Length): stop recording, keep
			// relaying.
			cw.recording, cw.body, cw.entry = false, nil, nil
		} else {
			cw.body = append(cw.body, p...)
		}
	}
	return cw.w.Write(p)
}

// complete reports whether the recorded body is the whole response.
func (cw *cacheWriter) complete() bool {
	return cw.wantLen < 0 || int64(len(cw.body)) == cw.wantLen
}

func (cw *cacheWriter) Flush() error {
	if cw.notModified {
		return nil
	}
	if !cw.wrote {
		cw.WriteHeader(http.StatusOK)
	}
	return cw.w.Flush()
}

func (cw *cacheWriter) Hijack() (conn net.Conn, rw *bufio.ReadWriter, err error) {
	return cw.w.Hijack()
}
