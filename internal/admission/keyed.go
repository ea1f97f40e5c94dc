package admission

import (
	"context"
	"hash/maphash"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Key identifies whose limit a request counts against: a client address,
// or a string such as a header's value.
type Key struct {
	Addr netip.Addr
	Name string
}

// Keyed is one Limiter per key (per client, per tenant). A key's limiter
// exists only while requests of that key are in flight or queued: an idle
// key has nothing to remember, so it is dropped, and memory follows the
// requests in flight, never the number of keys ever seen. At most maxKeys
// keys are held at once; a request of a new key beyond that is refused
// (Rejected), so that a flood of distinct keys cannot grow the table.
type Keyed struct {
	limit, maxQueue, maxKeys int
	timeout                  time.Duration
	seed                     maphash.Seed
	keys                     atomic.Int64
	shards                   [keyShards]keyShard
}

const keyShards = 32

type keyShard struct {
	mu sync.Mutex
	m  map[Key]*KeyEntry
	_  [40]byte // keep shards on separate cache lines
}

// KeyEntry is a key's limiter while the key has requests, as Acquire
// returns it; pass it to Release.
type KeyEntry struct {
	lim   Limiter
	key   Key
	refs  int // requests holding or waiting for a slot; under the shard lock
	shard *keyShard
}

// NewKeyed returns a per-key limit: limit requests in flight per key,
// maxQueue more waiting for at most timeout, at most maxKeys keys at once.
func NewKeyed(limit, maxQueue int, timeout time.Duration, maxKeys int) *Keyed {
	k := &Keyed{limit: limit, maxQueue: maxQueue, maxKeys: max(maxKeys, 1), timeout: timeout, seed: maphash.MakeSeed()}
	for i := range k.shards {
		k.shards[i].m = map[Key]*KeyEntry{}
	}
	return k
}

func (k *Keyed) shard(key Key) *keyShard {
	var h maphash.Hash
	h.SetSeed(k.seed)
	if key.Addr.IsValid() {
		b := key.Addr.As16()
		h.Write(b[:])
	}
	h.WriteString(key.Name)
	return &k.shards[h.Sum64()%keyShards]
}

// Acquire takes a slot of key's limit. When the result is Admitted the
// caller must Release the returned entry.
func (k *Keyed) Acquire(ctx context.Context, key Key) (*KeyEntry, Result) {
	s := k.shard(key)
	s.mu.Lock()
	e := s.m[key]
	if e == nil {
		if k.keys.Load() >= int64(k.maxKeys) {
			s.mu.Unlock()
			return nil, Rejected
		}
		// The key's strings alias the request's memory: keep a copy.
		key.Name = strings.Clone(key.Name)
		e = entries.Get().(*KeyEntry)
		e.lim.limit.Store(int64(max(k.limit, 1)))
		e.lim.maxQueue, e.lim.timeout = int64(max(k.maxQueue, 0)), k.timeout
		e.key, e.shard = key, s
		s.m[key] = e
		k.keys.Add(1)
	}
	e.refs++
	s.mu.Unlock()
	res := e.lim.Acquire(ctx)
	if res != Admitted {
		k.drop(e)
		return nil, res
	}
	return e, res
}

// Release gives back the slot of an Admitted Acquire.
func (k *Keyed) Release(e *KeyEntry) {
	e.lim.Release()
	k.drop(e)
}

func (k *Keyed) drop(e *KeyEntry) {
	s := e.shard
	s.mu.Lock()
	e.refs--
	idle := e.refs == 0
	if idle {
		delete(s.m, e.key)
		k.keys.Add(-1)
	}
	s.mu.Unlock()
	if idle {
		// Nothing refers to an idle entry any more: its limiter is empty
		// (no slot held, no waiter), ready for another key.
		e.key, e.shard = Key{}, nil
		entries.Put(e)
	}
}

// entries recycles the entries of idle keys, so that a request of a key
// with nothing in flight allocates nothing (beyond a growing map).
var entries = sync.Pool{New: func() any { return new(KeyEntry) }}

// Limit returns the limit of each key.
func (k *Keyed) Limit() int { return k.limit }

// Keys returns the keys with requests in flight or queued.
func (k *Keyed) Keys() int { return int(k.keys.Load()) }

// Totals returns the requests in flight and queued over all keys.
func (k *Keyed) Totals() (inFlight, queued int) {
	for i := range k.shards {
		s := &k.shards[i]
		s.mu.Lock()
		for _, e := range s.m {
			inFlight += e.lim.InFlight()
			queued += e.lim.Queued()
		}
		s.mu.Unlock()
	}
	return inFlight, queued
}
