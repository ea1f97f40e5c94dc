package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// cacheResults are the result label values of penstock_cache_lookups_total.
var cacheResults = [...]string{"hit", "miss", "revalidated"}

// Cache lookup results, for Cache.Lookup.
const (
	// CacheHit is a request answered from the cache.
	CacheHit = iota
	// CacheMiss is a request forwarded because nothing usable was stored
	// (nothing at all, or a stale entry the upstream replaced).
	CacheMiss
	// CacheRevalidated is a stale entry the upstream confirmed with 304.
	CacheRevalidated
)

type cacheVecs struct {
	lookups   *prometheus.CounterVec
	evictions *prometheus.CounterVec
	size      *prometheus.GaugeVec
	entries   *prometheus.GaugeVec
}

func newCacheVecs() *cacheVecs {
	return &cacheVecs{
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "penstock_cache_lookups_total",
			Help: "Asset cache lookups of GET and HEAD requests, by result (hit, miss, revalidated).",
		}, []string{"route", "result"}),
		evictions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "penstock_cache_evictions_total",
			Help: "Asset cache entries evicted to stay within cache.max_bytes.",
		}, []string{"route"}),
		size: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "penstock_cache_size_bytes",
			Help: "Bytes held by the asset cache (bodies and headers).",
		}, []string{"route"}),
		entries: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "penstock_cache_entries",
			Help: "Responses held by the asset cache.",
		}, []string{"route"}),
	}
}

func (v *cacheVecs) collectors() []prometheus.Collector {
	return []prometheus.Collector{v.lookups, v.evictions, v.size, v.entries}
}

// Cache is the pre-resolved metrics of one route's asset cache. Its methods
// are safe for concurrent use and allocate nothing.
type Cache struct {
	lookups   [len(cacheResults)]prometheus.Counter
	evictions prometheus.Counter
	size      prometheus.Gauge
	entries   prometheus.Gauge
}

// Cache returns the asset cache metrics of the route named route. Handles
// are cached by name, so a reload that keeps the route keeps its series.
func (m *Metrics) Cache(route string) *Cache {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c := m.caches[route]; c != nil {
		return c
	}
	c := &Cache{
		evictions: m.cache.evictions.WithLabelValues(route),
		size:      m.cache.size.WithLabelValues(route),
		entries:   m.cache.entries.WithLabelValues(route),
	}
	for i, r := range cacheResults {
		c.lookups[i] = m.cache.lookups.WithLabelValues(route, r)
	}
	m.caches[route] = c
	return c
}

// Lookup counts one lookup with result CacheHit, CacheMiss or
// CacheRevalidated.
func (c *Cache) Lookup(result int) { c.lookups[result].Inc() }

// Evicted counts n evicted entries.
func (c *Cache) Evicted(n int) { c.evictions.Add(float64(n)) }

// Stored sets the cache's current size: bytes held and entries. A reload
// starts a new, empty cache, which then reports its own size.
func (c *Cache) Stored(bytes int64, entries int) {
	c.size.Set(float64(bytes))
	c.entries.Set(float64(entries))
}
