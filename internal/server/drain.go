package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// StopAccepting makes every listener stop taking new connections without
// closing the sockets (which a new process may be serving by now). Requests
// in flight continue; call Shutdown to drain them.
func (g *Server) StopAccepting() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.draining.Store(true)
	for _, l := range g.listeners {
		l.sock.Detach()
	}
}

// Shutdown stops accepting connections, lets in-flight requests finish for up
// to the configured drain timeout (or until ctx is done), then closes what is
// left, the upstream pools' connections, the access log and the tracer. It
// returns when every goroutine the Server started has ended.
func (g *Server) Shutdown(ctx context.Context) error {
	g.draining.Store(true)
	g.mu.Lock()
	drain := g.snap.Load().Config.Shutdown.DrainTimeout.D()
	ls := make([]*runningListener, 0, len(g.listeners))
	for _, l := range g.listeners {
		ls = append(ls, l)
	}
	g.mu.Unlock()
	if drain > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, drain)
		defer cancel()
	}

	var wg sync.WaitGroup
	errs := make([]error, len(ls))
	for i, l := range ls {
		wg.Go(func() {
			l.stop()
			if err := l.shutdown(ctx); err != nil {
				errs[i] = fmt.Errorf("listener %q: drain: %w", l.cfg.Name, err)
			}
			l.sock.Close()
		})
	}
	wg.Wait()
	g.serving.Wait()
	// No request runs any more: what earlier reloads replaced goes now.
	g.stop()
	g.background.Wait()
	// Lines and spans of the last requests are flushed after they finished.
	errs = append(errs, g.snap.Load().Close())
	return errors.Join(errs...)
}
