package server

import (
	"context"
	"errors"
	"reflect"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/listener"
	"github.com/penstock-dev/penstock/internal/reload"
	"github.com/penstock-dev/penstock/internal/snapshot"
)

// Reload compiles cfg (defaults applied) and, if it is valid, changes no
// restart-only field (config.Static) and its new listeners can be bound,
// swaps it in: new requests use it at once, requests in flight finish on
// the previous snapshot. Unchanged upstream pools are kept with their
// connections and health; removed ones are retired (their streams end after
// cfg.Reload.StreamGrace), and so are a tracer or access log output that a
// tracing or access_log change replaced. Unchanged listeners keep their
// sockets and connections; changed ones get new engines on the same socket
// while the old ones drain; removed ones drain and close. On any error
// nothing changes and the error is returned.
func (s *Server) Reload(cfg *config.Config) error {
	start := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining.Load() {
		return errors.New("reload refused: shutting down")
	}
	old := s.snap.Load()
	next, err := snapshot.Compile(cfg, snapshot.Env{Prev: old, Logger: s.log, Telemetry: s.tel, Stages: s.stages, IO: s.io, Streams: s.streams, Rollouts: s.rollouts})
	if serr := s.static.Check(cfg); serr != nil {
		// Reported with the other errors, so one reload shows them all.
		if next != nil {
			next.Discard(old)
		}
		err = config.Merge(config.Merge(nil, err), serr)
	}
	if err != nil {
		s.refused(err)
		return err
	}
	// Everything that can fail happens before the swap: bind new sockets.
	var socks map[string]*listener.Socket
	if s.started {
		if socks, err = s.bindAll(context.Background(), cfg.Listeners); err != nil {
			next.Discard(old)
			s.refused(err)
			return err
		}
	}
	s.snap.Store(next)
	next.Activate()
	s.generation++
	if s.started {
		s.replaceListeners(cfg, socks)
	}
	s.retire(old, next, cfg.Reload.StreamGrace.D())
	s.metrics.loaded(s.generation)
	s.reloads.Add(reload.Outcome{At: time.Now(), Generation: s.generation})
	s.log.Info("configuration reloaded", "generation", s.generation, "routes", len(cfg.Routes),
		"upstreams", len(cfg.Upstreams), "listeners", len(cfg.Listeners), "took", time.Since(start).String())
	return nil
}

// replaceListeners starts engines for the listeners of cfg that are new or
// changed, on socks, and drains the ones they replace or that cfg removed.
func (s *Server) replaceListeners(cfg *config.Config, socks map[string]*listener.Socket) {
	drain := cfg.Shutdown.DrainTimeout.D()
	next := make(map[string]*runningListener, len(cfg.Listeners))
	for i := range cfg.Listeners {
		lc := &cfg.Listeners[i]
		prev := s.listeners[lc.Name]
		if prev != nil && reflect.DeepEqual(prev.cfg, *lc) {
			next[lc.Name] = prev
			if prev.tls != nil {
				// A reload (SIGHUP) also re-reads certificate files,
				// for file systems whose changes the watch misses.
				prev.tls.Reload()
			}
			continue
		}
		rl, err := s.serve(lc, socks[lc.Name])
		if err != nil {
			// Certificates are checked by validation, so this is a
			// file changed in between: keep the old engines.
			s.log.Error("reload: listener kept on its previous settings", "listener", lc.Name, "error", err)
			if prev != nil {
				next[lc.Name] = prev
			}
			continue
		}
		next[lc.Name] = rl
		if prev != nil {
			s.drainListener(prev, prev.sock != rl.sock, drain)
		}
	}
	for name, prev := range s.listeners {
		if _, kept := next[name]; !kept {
			s.drainListener(prev, true, drain)
		}
	}
	s.listeners = next
}

// drainListener shuts a replaced or removed listener's engines down
// gracefully in the background and, if the socket is no longer used, closes
// it. Shutdown waits for it, and cuts it short once its own drain is over.
func (s *Server) drainListener(l *runningListener, closeSocket bool, timeout time.Duration) {
	l.stop()
	if closeSocket {
		// Refused from now on rather than accepted and reset.
		l.sock.Close()
	}
	s.background.Go(func() {
		ctx, cancel := context.WithTimeout(s.stopped, max(timeout, time.Second))
		defer cancel()
		if err := l.shutdown(ctx); err != nil {
			s.log.Warn("listener drain timed out; remaining connections closed", "listener", l.cfg.Name, "error", err)
		}
	})
}

// retire releases what old holds and next did not take over: idle upstream
// connections now, the rest (streams still running, a replaced tracer or
// access log output) after grace, or as soon as Shutdown has drained the
// listeners.
func (s *Server) retire(old, next *snapshot.Snapshot, grace time.Duration) {
	end := old.Retire(next)
	if end == nil {
		return
	}
	s.background.Go(func() {
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-t.C:
		case <-s.stopped.Done():
		}
		if err := end(); err != nil {
			s.log.Warn("retiring the previous configuration", "error", err)
		}
	})
}

// ReloadFrom reads a configuration with load and applies it with Reload.
// Every reload trigger goes through it, so a configuration that cannot even
// be loaded (decoding failed) is counted as a failed reload like one that
// fails to compile.
func (s *Server) ReloadFrom(load func() (*config.Config, error)) error {
	cfg, err := load()
	if err != nil {
		s.mu.Lock()
		s.refused(err)
		s.mu.Unlock()
		return err
	}
	return s.Reload(cfg)
}

// refused counts a refused reload and records it in the history. s.mu is
// held.
func (s *Server) refused(err error) {
	s.metrics.failed()
	s.reloads.Add(reload.Outcome{At: time.Now(), Generation: s.generation, Error: err.Error()})
}
