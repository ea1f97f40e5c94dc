package h1

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// exchangeCtx is the context of a connection's exchanges: done when the
// client hangs up once its request was read, or the connection is killed
// or closed. It is pooled with the exchange state (see active) and
// replaced once done.
//
// It implements exchange.Watcher, so the upstream client watches it per
// request without allocating, and AfterFunc, so a context derived from it
// (context.WithCancel, WithTimeout) never needs a goroutine to watch it.
type exchangeCtx struct {
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

func newExchangeCtx() *exchangeCtx { return &exchangeCtx{done: make(chan struct{})} }

func (x *exchangeCtx) Deadline() (time.Time, bool) { return time.Time{}, false }
func (x *exchangeCtx) Done() <-chan struct{}       { return x.done }
func (x *exchangeCtx) Value(any) any               { return nil }
func (x *exchangeCtx) String() string              { return "h1.exchangeContext" }

func (x *exchangeCtx) Err() error {
	if x.canceled.Load() {
		return context.Canceled
	}
	return nil
}

// cancel ends the context once: Done closes, then the watches run on this
// goroutine.
func (x *exchangeCtx) cancel() {
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
func (x *exchangeCtx) Watch(f func()) uint64 {
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
func (x *exchangeCtx) Unwatch(t uint64) bool {
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
func (x *exchangeCtx) AfterFunc(f func()) func() bool {
	t := x.Watch(f)
	return func() bool { return t != 0 && x.Unwatch(t) }
}
