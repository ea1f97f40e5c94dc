package pipeline

import (
	"math/bits"
	"sync"
	"sync/atomic"
	"time"

	"github.com/penstock-dev/penstock/internal/metrics"
)

// cacheEntry is one stored response. It is immutable once stored, so a
// reader may use it after the shard lock is released; a refresh stores a
// new entry in its place. Only prev and next (the LRU list) change, under
// the shard's lock.
type cacheEntry struct {
	key    string
	header []storedField
	body   []byte
	// etag and lastModified are the validators, "" when absent.
	etag, lastModified string
	// stored is when the response was received; initialAge is its age then
	// (the upstream's Age field), so its current age is initialAge plus the
	// time since stored (RFC 9111 §4.2.3, without the Date-based apparent
	// age, which would trust the upstream's clock).
	stored     time.Time
	initialAge time.Duration
	// lifetime is the freshness lifetime (RFC 9111 §4.2.1).
	lifetime time.Duration
	// noCache entries are revalidated before every use.
	noCache bool
	// size is what the entry counts against the cache's bound.
	size int64

	prev, next *cacheEntry
}

// storedField is one response header field of an entry.
type storedField struct{ name, value string }

// entryOverhead is added to every entry's size for the entry itself and the
// map slot; it keeps a flood of tiny responses within the bound too.
const entryOverhead = 128

// computeSize sets e.size from its key, header and body.
func (e *cacheEntry) computeSize() {
	n := int64(len(e.key) + len(e.body) + entryOverhead)
	for _, f := range e.header {
		n += int64(len(f.name) + len(f.value))
	}
	e.size = n
}

// age is the entry's current age at now.
func (e *cacheEntry) age(now time.Time) time.Duration {
	return e.initialAge + max(now.Sub(e.stored), 0)
}

// fresh reports whether the entry may be served at now without asking the
// upstream. A stale entry is never served without revalidation, so
// must-revalidate and proxy-revalidate hold by construction.
func (e *cacheEntry) fresh(now time.Time) bool {
	return !e.noCache && e.age(now) < e.lifetime
}

// cacheStore is a size-bounded LRU map of entries, split into shards by key
// hash so that concurrent hits on different keys take different locks.
// Each shard owns an equal share of the byte bound, so the total never
// exceeds it; the shard count is chosen so a share still holds the largest
// allowed object.
type cacheStore struct {
	shards  []cacheShard
	mask    uint64
	metrics *metrics.Cache // nil: not recorded

	// totals across shards, for the size gauge.
	bytes, entries atomic.Int64
}

type cacheShard struct {
	mu       sync.Mutex
	m        map[string]*cacheEntry
	head     *cacheEntry // most recently used
	tail     *cacheEntry // least recently used
	bytes    int64
	maxBytes int64
	_        [40]byte // keep shards on separate cache lines
}

// maxCacheShards bounds the shard count; beyond it, lock contention is no
// longer what limits the hit path.
const maxCacheShards = 16

func newCacheStore(maxBytes, maxObject int64) *cacheStore {
	n := maxCacheShards
	if maxObject > 0 {
		// Each shard must fit one largest object plus its header.
		n = int(min(int64(maxCacheShards), max(1, maxBytes/(maxObject+16<<10))))
	}
	n = 1 << (bits.Len(uint(n)) - 1) // round down to a power of two
	s := &cacheStore{shards: make([]cacheShard, n), mask: uint64(n - 1)}
	for i := range s.shards {
		s.shards[i].m = make(map[string]*cacheEntry)
		s.shards[i].maxBytes = maxBytes / int64(n)
	}
	return s
}

// fnv1a hashes a key to pick its shard.
func fnv1a(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

// get returns the entry for key, marking it most recently used, or nil.
// key may alias a reused buffer: it is not retained.
func (s *cacheStore) get(key []byte) *cacheEntry {
	sh := &s.shards[fnv1a(key)&s.mask]
	sh.mu.Lock()
	e := sh.m[string(key)] // no allocation: the compiler converts in place
	if e != nil {
		sh.moveToFront(e)
	}
	sh.mu.Unlock()
	return e
}

// put stores e (replacing an entry with the same key), evicting least
// recently used entries until its shard is within its share. An entry
// larger than a share is not stored.
func (s *cacheStore) put(e *cacheEntry) {
	sh := &s.shards[fnv1a([]byte(e.key))&s.mask]
	if e.size > sh.maxBytes {
		return
	}
	var dBytes int64
	dEntries, evicted := 0, 0
	sh.mu.Lock()
	if old := sh.m[e.key]; old != nil {
		sh.unlink(old)
		delete(sh.m, old.key)
		sh.bytes -= old.size
		dBytes -= old.size
		dEntries--
	}
	for sh.bytes+e.size > sh.maxBytes && sh.tail != nil {
		old := sh.tail
		sh.unlink(old)
		delete(sh.m, old.key)
		sh.bytes -= old.size
		dBytes -= old.size
		dEntries--
		evicted++
	}
	sh.m[e.key] = e
	sh.pushFront(e)
	sh.bytes += e.size
	dBytes += e.size
	dEntries++
	sh.mu.Unlock()
	s.account(dBytes, dEntries, evicted)
}

// remove drops the entry for key if it is still e.
func (s *cacheStore) remove(e *cacheEntry) {
	sh := &s.shards[fnv1a([]byte(e.key))&s.mask]
	sh.mu.Lock()
	if sh.m[e.key] != e {
		sh.mu.Unlock()
		return
	}
	sh.unlink(e)
	delete(sh.m, e.key)
	sh.bytes -= e.size
	sh.mu.Unlock()
	s.account(-e.size, -1, 0)
}

// account updates the totals and the metrics after a change.
func (s *cacheStore) account(dBytes int64, dEntries, evicted int) {
	b := s.bytes.Add(dBytes)
	n := s.entries.Add(int64(dEntries))
	if s.metrics != nil {
		s.metrics.Stored(b, int(n))
		if evicted > 0 {
			s.metrics.Evicted(evicted)
		}
	}
}

func (sh *cacheShard) pushFront(e *cacheEntry) {
	e.prev, e.next = nil, sh.head
	if sh.head != nil {
		sh.head.prev = e
	}
	sh.head = e
	if sh.tail == nil {
		sh.tail = e
	}
}

func (sh *cacheShard) unlink(e *cacheEntry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		sh.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		sh.tail = e.prev
	}
	e.prev, e.next = nil, nil
}

func (sh *cacheShard) moveToFront(e *cacheEntry) {
	if sh.head == e {
		return
	}
	sh.unlink(e)
	sh.pushFront(e)
}
