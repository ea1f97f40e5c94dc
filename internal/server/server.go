// Package server runs penstock's gateway: it binds the listeners, starts an
// engine per protocol on each (engine.Server), serves the current
// configuration snapshot through one front handler per listener, and owns
// the process's lifecycle: reloads (compile, swap, drain the old), graceful
// shutdown, the binary upgrade hand-over, the pid file and signals (Run).
//
// The request path reads the current snapshot through one atomic.Pointer
// and takes no lock; everything here happens beside it.
package server

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/epoll"
	"github.com/penstock-dev/penstock/internal/listener"
	"github.com/penstock-dev/penstock/internal/metrics"
	"github.com/penstock-dev/penstock/internal/pipeline"
	"github.com/penstock-dev/penstock/internal/proxy"
	"github.com/penstock-dev/penstock/internal/reload"
	"github.com/penstock-dev/penstock/internal/rollout"
	"github.com/penstock-dev/penstock/internal/snapshot"
)

// Options configure a Server beyond its config file.
type Options struct {
	// Logger receives the server's logs. Nil means slog.Default().
	Logger *slog.Logger
	// Registerer receives the server's metrics. Nil means none are exported.
	Registerer prometheus.Registerer
	// Version is penstock's version, recorded on traces.
	Version string
	// Inherited are listening sockets handed over by a previous process (a
	// binary upgrade), by bound address. A listener whose address is here
	// uses the socket instead of binding; the rest are closed after Start.
	Inherited map[string]net.Listener
	// Stages is the route pipeline's stage table, used for every compile
	// (reloads too). Nil means pipeline.Standard().
	Stages *pipeline.Registry
	// Rollouts, when set, shares the routes' rollouts with a fleet (see
	// snapshot.Env.Rollouts).
	Rollouts rollout.Sharing
}

// Server is a running penstock: its listeners and the snapshot they serve.
type Server struct {
	log      *slog.Logger
	snap     atomic.Pointer[snapshot.Snapshot]
	draining atomic.Bool
	metrics  *configMetrics
	tel      *snapshot.Telemetry
	static   config.Static
	inherit  map[string]net.Listener
	stages   *pipeline.Registry
	rollouts rollout.Sharing
	// io is the Linux I/O layer of this server's engines and upstream
	// clients, closed by Shutdown once nothing uses it (nil where there is
	// none: other systems, or epoll refused).
	io *epoll.IO
	// streams counts the WebSocket tunnels of every snapshot's
	// forwarders; streamDrain, set by KeepStreams, is how long Shutdown
	// lets long-lived streams run past the drain timeout.
	streams     *proxy.Streams
	streamDrain atomic.Int64
	// reloads are the latest configuration loads and their outcomes.
	reloads *reload.History

	// mu serialises Start, Reload and Shutdown; requests never take it.
	mu         sync.Mutex
	listeners  map[string]*runningListener
	generation uint64
	started    bool
	// serving counts the engines' Serve goroutines; background counts
	// the rest this Server starts (listener drains after a reload, the
	// retirement of replaced snapshots), so Shutdown returns only when
	// none of them runs.
	serving    sync.WaitGroup
	background sync.WaitGroup
	// stopped is cancelled once Shutdown has drained the listeners:
	// listeners a reload replaced are cut and replaced snapshots waiting
	// out their grace are retired at once.
	stopped  context.Context
	stop     context.CancelFunc
	serveErr chan error
}

// New compiles cfg (defaults applied) into a server that is not yet
// listening.
func New(cfg *config.Config, opts Options) (*Server, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	tel := &snapshot.Telemetry{
		Metrics:    metrics.New(cfg.Metrics, opts.Registerer),
		Registerer: opts.Registerer,
		Version:    opts.Version,
	}
	io, err := epoll.NewIO(0)
	if err != nil {
		// Engines and clients then fall back to goroutine-per-connection
		// reads and probing idle connections; nothing is lost but speed.
		log.Debug("no Linux I/O layer; serving without it", "error", err)
		io = nil
	}
	streams := proxy.NewStreams()
	snap, err := snapshot.Compile(cfg, snapshot.Env{Logger: log, Telemetry: tel, Stages: opts.Stages, IO: io, Streams: streams, Rollouts: opts.Rollouts})
	if err != nil {
		io.Close()
		return nil, err
	}
	s := &Server{
		streams:   streams,
		log:       log,
		tel:       tel,
		static:    cfg.Static(),
		metrics:   newConfigMetrics(opts.Registerer),
		inherit:   opts.Inherited,
		stages:    opts.Stages,
		rollouts:  opts.Rollouts,
		io:        io,
		listeners: make(map[string]*runningListener),
		serveErr:  make(chan error, 16),
		reloads:   reload.NewHistory(ReloadHistoryLen),
	}
	s.stopped, s.stop = context.WithCancel(context.Background())
	s.generation = 1
	s.snap.Store(snap)
	snap.Activate()
	s.metrics.loaded(1)
	s.reloads.Add(reload.Outcome{At: time.Now(), Generation: 1})
	return s, nil
}

// ReloadHistoryLen is how many configuration loads Reloads keeps.
const ReloadHistoryLen = 32

// Reloads returns the latest configuration loads, newest first: the first
// load, then every reload applied or refused, with its errors.
func (s *Server) Reloads() []reload.Outcome { return s.reloads.List() }

// Snapshot returns the snapshot requests are currently served from.
func (s *Server) Snapshot() *snapshot.Snapshot { return s.snap.Load() }

// Generation counts the configurations loaded: 1 for the first, +1 per
// successful reload.
func (s *Server) Generation() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.generation
}

// Ready reports whether the server is serving: started and not draining.
func (s *Server) Ready() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.started && !s.draining.Load()
}

// Addr returns the bound address of the named listener, or nil.
func (s *Server) Addr(name string) net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.listeners[name]; l != nil {
		return l.sock.Addr()
	}
	return nil
}

// Sockets returns the listening sockets by bound address, for handing to a
// new process in a binary upgrade.
func (s *Server) Sockets() map[string]*listener.Socket {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]*listener.Socket, len(s.listeners))
	for _, l := range s.listeners {
		out[l.cfg.Address] = l.sock
	}
	return out
}

// Err returns a channel that receives a listener's fatal serve error.
func (s *Server) Err() <-chan error { return s.serveErr }

// ReopenLogs reopens the access log file (SIGUSR1, after rotation).
func (s *Server) ReopenLogs() error { return s.snap.Load().AccessLog.Reopen() }
