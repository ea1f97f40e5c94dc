package h1

import (
	"context"
	"sync"

	"github.com/penstock-dev/penstock/internal/exchange"
)

// connCtx is the context of a connection's requests: cancelled when the
// client hangs up, the connection closes or Shutdown gives up on it. It also
// implements exchange.AbortNotifier, so the upstream client can ask to be
// told of that without allocating per request (context.AfterFunc allocates
// twice per call).
type connCtx struct {
	context.Context
	cancelCtx context.CancelFunc

	mu    sync.Mutex // per connection: taken by its own request and by a hang-up
	ended bool
	hook  exchange.Aborter
}

func newConnCtx() *connCtx {
	c := &connCtx{}
	c.Context, c.cancelCtx = context.WithCancel(context.Background())
	return c
}

// cancel ends the context and tells the registered Aborter, once.
func (c *connCtx) cancel() {
	c.mu.Lock()
	c.ended = true
	h := c.hook
	c.hook = nil
	c.mu.Unlock()
	c.cancelCtx()
	if h != nil {
		h.Abort()
	}
}

// NotifyAbort implements exchange.AbortNotifier.
func (c *connCtx) NotifyAbort(a exchange.Aborter) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return false
	}
	c.hook = a
	return true
}

// StopAbort implements exchange.AbortNotifier.
func (c *connCtx) StopAbort(a exchange.Aborter) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hook != a {
		return false
	}
	c.hook = nil
	return true
}
