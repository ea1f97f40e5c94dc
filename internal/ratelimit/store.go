package ratelimit

import (
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// DefaultMaxKeys is how many keys a limit tracks when its max_keys is not
// set: about 10 MB of state at most.
const DefaultMaxKeys = 100_000

// unset is a new entry's a: before any time (math.MinInt64).
const unset = -1 << 63

// shards splits a limit's keys so that requests with different keys rarely
// wait for each other; a power of two.
const shards = 64

// entry is one key's state: a token bucket's theoretical arrival time, or a
// sliding window's index and two counts. Entries form a per-shard list from
// the most to the least recently used, the end of which is evicted when the
// shard is full.
type entry struct {
	key        string
	prev, next *entry

	a     int64 // TokenBucket: tat; SlidingWindow: current window index
	cur   int64 // SlidingWindow: current window's count
	count int64 // SlidingWindow: previous window's count

	// For the admin view: units admitted and requests refused.
	used, refused int64
}

type shard struct {
	mu         sync.Mutex
	keys       map[string]*entry
	head, tail *entry // most and least recently used
	max        int
	_          [88]byte // 128 bytes a shard: locks on separate cache lines
}

// store is a limit's bounded map from key to entry.
type store struct {
	seed    maphash.Seed
	shards  [shards]shard
	evicted atomic.Int64
	onEvict func()
}

func newStore(maxKeys int) *store {
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	s := &store{seed: maphash.MakeSeed()}
	per := max(1, (maxKeys+shards-1)/shards)
	for i := range s.shards {
		s.shards[i].keys = make(map[string]*entry)
		s.shards[i].max = per
	}
	return s
}

// lock returns key's shard, locked, and key's entry in it, creating (and
// evicting the least recently used one if the shard is full) when it is new.
// key may alias memory that is reused after the request: it is copied when
// stored.
func (s *store) lock(key string) (*shard, *entry) {
	sh := &s.shards[maphash.String(s.seed, key)&(shards-1)]
	sh.mu.Lock()
	e := sh.keys[key]
	switch {
	case e == nil:
		if len(sh.keys) >= sh.max && sh.tail != nil {
			old := sh.tail
			sh.unlink(old)
			delete(sh.keys, old.key)
			s.evicted.Add(1)
			if s.onEvict != nil {
				s.onEvict()
			}
		}
		e = &entry{key: strings.Clone(key), a: unset}
		sh.keys[e.key] = e
		sh.pushFront(e)
	case sh.head != e:
		sh.unlink(e)
		sh.pushFront(e)
	}
	return sh, e
}

func (sh *shard) unlink(e *entry) {
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

func (sh *shard) pushFront(e *entry) {
	e.next = sh.head
	if sh.head != nil {
		sh.head.prev = e
	}
	sh.head = e
	if sh.tail == nil {
		sh.tail = e
	}
}

// KeyStat is one key's counters, for the admin view.
type KeyStat struct {
	Key     string `json:"key"`
	Used    int64  `json:"used"`
	Refused int64  `json:"refused"`
}

// hottest returns up to n keys with the most refusals, then the most use.
// It locks one shard at a time; only the admin API calls it.
func (s *store) hottest(n int) []KeyStat {
	var all []KeyStat
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for e := sh.head; e != nil; e = e.next {
			all = append(all, KeyStat{Key: e.key, Used: e.used, Refused: e.refused})
		}
		sh.mu.Unlock()
	}
	slices.SortFunc(all, func(a, b KeyStat) int {
		if a.Refused != b.Refused {
			return int(b.Refused - a.Refused)
		}
		if a.Used != b.Used {
			return int(b.Used - a.Used)
		}
		return strings.Compare(a.Key, b.Key)
	})
	return all[:min(n, len(all))]
}

// size counts the keys held.
func (s *store) size() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += len(sh.keys)
		sh.mu.Unlock()
	}
	return n
}
