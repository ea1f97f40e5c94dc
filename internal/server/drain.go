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
func (s *Server) StopAccepting() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.draining.Store(true)
	for _, l := range s.listeners {
		l.sock.Detach()
	}
}

// Shutdown stops accepting connections, lets in-flight requests finish for up
// to the configured drain timeout (or until ctx is done), then closes what is
// left, the upstream pools' connections, the access log and the tracer. It
// returns when every goroutine the Server started has ended.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	s.mu.Lock()
	drain := s.snap.Load().Config.Shutdown.DrainTimeout.D()
	ls := make([]*runningListener, 0, len(s.listeners))
	for _, l := range s.listeners {
		ls = append(ls, l)
	}
	s.mu.Unlock()
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
	s.serving.Wait()
	// No request runs any more: what earlier reloads replaced goes now.
	s.stop()
	s.background.Wait()
	// Lines and spans of the last requests are flushed after they finished.
	errs = append(errs, s.snap.Load().Close())
	// Engines and pools are closed: their registrations are gone.
	errs = append(errs, s.io.Close())
	return errors.Join(errs...)
}
