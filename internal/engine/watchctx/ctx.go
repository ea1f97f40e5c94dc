// Package watchctx is the context the listener engines give each exchange:
// a cancel-once context that callers watch without a goroutine (Watch,
// Unwatch, AfterFunc), pooled with the engine's per-exchange state.
package watchctx

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Ctx is an exchange's context: done when the engine cancels it (an
// HTTP/1.1 client hung up or its connection closed; an HTTP/2 stream was
// reset or its connection ended). Engines pool it with their exchange
// state and replace it once done.
//
// It implements exchange.Watcher, so the upstream client watches it per
// request without allocating, and AfterFunc, so a context derived from it
// (context.WithCancel, WithTimeout) never needs a goroutine to watch it.
type Ctx struct {
	done     chan struct{}
	canceled atomic.Bool

	mu      sync.Mutex
	next    uint64
	watches []watch
}

type watch struct {
	token uint64
	f     func()
}

// New returns a context that is not done.
func New() *Ctx { return &Ctx{done: make(chan struct{})} }

func (x *Ctx) Deadline() (time.Time, bool) { return time.Time{}, false }
func (x *Ctx) Done() <-chan struct{}       { return x.done }
func (x *Ctx) Value(any) any               { return nil }
func (x *Ctx) String() string              { return "engine.exchangeContext" }

func (x *Ctx) Err() error {
	if x.canceled.Load() {
		return context.Canceled
	}
	return nil
}

// Cancel ends the context once: Done closes, then the watches run on this
// goroutine.
func (x *Ctx) Cancel() {
	x.mu.Lock()
	if x.canceled.Load() {
		x.mu.Unlock()
		return
	}
	x.canceled.Store(true)
	close(x.done)
	ws := x.watches
	x.watches = nil
	x.mu.Unlock()
	for _, w := range ws {
		w.f()
	}
}

// Watch implements exchange.Watcher.
func (x *Ctx) Watch(f func()) uint64 {
	x.mu.Lock()
	if x.canceled.Load() {
		x.mu.Unlock()
		f()
		return 0
	}
	x.next++
	t := x.next
	x.watches = append(x.watches, watch{t, f})
	x.mu.Unlock()
	return t
}

// Unwatch implements exchange.Watcher.
func (x *Ctx) Unwatch(t uint64) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	for i, w := range x.watches {
		if w.token == t {
			last := len(x.watches) - 1
			x.watches[i] = x.watches[last]
			x.watches[last] = watch{}
			x.watches = x.watches[:last]
			return true
		}
	}
	return false
}

// AfterFunc is what the context package looks for on a parent it does not
// know, to propagate cancellation without a goroutine.
func (x *Ctx) AfterFunc(f func()) func() bool {
	t := x.Watch(f)
	return func() bool { return t != 0 && x.Unwatch(t) }
}
