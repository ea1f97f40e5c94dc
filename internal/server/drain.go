package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/penstock-dev/penstock/internal/engine"
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

// KeepStreams makes Shutdown let long-lived streams (event streams and
// WebSocket tunnels, on every engine and protocol) run
// for up to d after its start, past the drain timeout that ends the other
// requests. The old process of a binary upgrade calls it: the new process
// serves meanwhile, so nothing waits on the streams.
func (s *Server) KeepStreams(d time.Duration) { s.streamDrain.Store(int64(d)) }

// Shutdown stops accepting connections, lets in-flight requests finish for up
// to the configured drain timeout (or until ctx is done), then closes what is
// left, the upstream pools' connections, the access log and the tracer. It
// returns when every goroutine the Server started has ended. After
// KeepStreams, long-lived streams may run on until its limit.
func (s *Server) Shutdown(ctx context.Context) error {
	start := time.Now()
	s.draining.Store(true)
	s.mu.Lock()
	drain := s.snap.Load().Config.Shutdown.DrainTimeout.D()
	ls := make([]*runningListener, 0, len(s.listeners))
	for _, l := range s.listeners {
		ls = append(ls, l)
	}
	s.mu.Unlock()
	streamsUntil := start.Add(time.Duration(s.streamDrain.Load()))
	if drain > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, drain)
		defer cancel()
		if streamsUntil.After(start.Add(drain)) {
			ctx = engine.WithStreamDrain(ctx, streamsUntil)
		} else {
			streamsUntil = start.Add(drain)
		}
	}

	var wg sync.WaitGroup
	errs := make([]error, len(ls))
	for i, l := range ls {
		wg.Go(func() {
			l.stop()
			// Stop accepting first: a new connection is refused by the
			// kernel rather than accepted by nobody and reset. (After
			// StopAccepting the socket is the new process's; closing
			// this process's copy again changes nothing.)
			l.sock.Close()
			if err := l.shutdown(ctx); err != nil {
				errs[i] = fmt.Errorf("listener %q: drain: %w", l.cfg.Name, err)
			}
		})
	}
	wg.Wait()
	s.serving.Wait()
	// WebSocket tunnels run outside the engines. After KeepStreams they
	// get until the streams' limit; otherwise they end with the drain,
	// as a SIGTERM's drain ends them.
	if n := s.streams.Open(); n > 0 && s.streamDrain.Load() > 0 {
		sctx, cancel := context.WithDeadline(context.Background(), streamsUntil)
		if err := s.streams.Wait(sctx); err != nil {
			s.log.Warn("stream drain limit reached; remaining WebSockets closed", "websockets", s.streams.Open())
		}
		cancel()
	}
	s.streams.Cut()
	// No request runs any more: what earlier reloads replaced goes now.
	s.stop()
	s.background.Wait()
	// Lines and spans of the last requests are flushed after they finished.
	errs = append(errs, s.snap.Load().Close())
	// Engines and pools are closed: their registrations are gone.
	errs = append(errs, s.io.Close())
	return errors.Join(errs...)
}
