package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/engine/h1"
	"github.com/penstock-dev/penstock/internal/engine/h3"
	"github.com/penstock-dev/penstock/internal/engine/stdhttp"
	"github.com/penstock-dev/penstock/internal/listener"
)

// Options configure a Gateway beyond its config file.
type Options struct {
	// Logger receives the gateway's logs. Nil means slog.Default().
	Logger *slog.Logger
	// Registerer receives the gateway's metrics. Nil means none are exported.
	Registerer prometheus.Registerer
	// Version is penstock's version, recorded on traces.
	Version string
	// Inherited are listening sockets handed over by a previous process (a
	// binary upgrade), by bound address. A listener whose address is here
	// uses the socket instead of binding; the rest are closed after Start.
	Inherited map[string]net.Listener
}

// Gateway is a running penstock: its listeners and the snapshot they serve.
type Gateway struct {
	log      *slog.Logger
	snap     atomic.Pointer[Snapshot]
	draining atomic.Bool
	metrics  *configMetrics
	obs      *observability
	inherit  map[string]net.Listener

	// mu serialises Start, Reload and Shutdown; requests never take it.
	mu         sync.Mutex
	listeners  map[string]*runningListener
	generation uint64
	started    bool
	wg         sync.WaitGroup
	serveErr   chan error
}

// runningListener is one configured listener: its socket and the server
// currently serving it.
type runningListener struct {
	cfg    config.Listener
	sock   *listener.Socket
	srv    server
	scheme string
	// h3 serves HTTP/3 on the listener's UDP port, or is nil (see h3.go).
	h3 *h3.Server
	// tls is the listener's live TLS configuration (nil for plain TCP); it
	// follows the certificate files until the listener is replaced.
	tls *listener.TLS
}

// server is what the gateway needs of an engine (h1 or stdhttp).
type server interface {
	Serve(ln net.Listener) error
	Shutdown(ctx context.Context) error
}

// newServer builds the engine lc asks for.
func newServer(lc *config.Listener, opts stdhttp.Options, h *front) server {
	if lc.Engine == config.EngineStdHTTP {
		return stdhttp.NewServer(opts, h)
	}
	return h1.NewServer(h1.Options{Options: opts}, h)
}

// stop ends what the listener owns besides its servers: the watch on its
// TLS files.
func (l *runningListener) stop() {
	if l.tls != nil {
		l.tls.Close()
	}
}

// New compiles cfg (defaults applied) into a gateway that is not yet
// listening.
func New(cfg *config.Config, opts Options) (*Gateway, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	// Check before opening the access log file or an exporter.
	if errs := config.Merge(config.Merge(nil, cfg.Validate()), CheckRoutes(cfg)); len(errs) > 0 {
		return nil, errs
	}
	obs, err := newObservability(cfg, opts.Registerer, opts.Version)
	if err != nil {
		return nil, err
	}
	s, err := compile(cfg, nil, log, obs)
	if err != nil {
		obs.close(context.Background())
		return nil, err
	}
	g := &Gateway{
		log:       log,
		obs:       obs,
		metrics:   newConfigMetrics(opts.Registerer),
		inherit:   opts.Inherited,
		listeners: make(map[string]*runningListener),
		serveErr:  make(chan error, 16),
	}
	g.generation = 1
	g.snap.Store(s)
	g.metrics.loaded(1)
	return g, nil
}

// Snapshot returns the snapshot requests are currently served from.
func (g *Gateway) Snapshot() *Snapshot { return g.snap.Load() }

// Generation counts the configurations loaded: 1 for the first, +1 per
// successful reload.
func (g *Gateway) Generation() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.generation
}

// Ready reports whether the gateway is serving: started and not draining.
func (g *Gateway) Ready() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.started && !g.draining.Load()
}

// Start binds every listener (or takes it from Options.Inherited) and starts
// serving. If any socket cannot be bound, the ones already bound are closed
// and the error names the listener.
func (g *Gateway) Start(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	cfg := g.snap.Load().Config
	socks, err := g.bindAll(ctx, cfg.Listeners)
	if err != nil {
		return err
	}
	for i := range cfg.Listeners {
		lc := &cfg.Listeners[i]
		rl, err := g.serve(lc, socks[lc.Name])
		if err != nil {
			for _, s := range socks {
				s.Close()
			}
			for _, l := range g.listeners {
				l.shutdown(context.Background())
				l.stop()
			}
			g.listeners = map[string]*runningListener{}
			return fmt.Errorf("listeners[%d] %q: %w", i, lc.Name, err)
		}
		g.listeners[lc.Name] = rl
	}
	// Inherited sockets no listener claimed are not ours to keep open.
	for addr, ln := range g.inherit {
		ln.Close()
		delete(g.inherit, addr)
	}
	g.started = true
	return nil
}

// bindAll binds (or inherits) a socket for each listener in lcs that has no
// running socket at the same address yet. On error it closes what it bound.
func (g *Gateway) bindAll(ctx context.Context, lcs []config.Listener) (map[string]*listener.Socket, error) {
	socks := make(map[string]*listener.Socket)
	for i := range lcs {
		lc := &lcs[i]
		// Same socket if the address is unchanged, or names the port an
		// ephemeral ("host:0") listener was given.
		if old := g.listeners[lc.Name]; old != nil && (old.cfg.Address == lc.Address || old.sock.Addr().String() == lc.Address) {
			socks[lc.Name] = old.sock
			continue
		}
		var ln net.Listener
		if inh, ok := g.inherit[lc.Address]; ok {
			ln = inh
			delete(g.inherit, lc.Address)
			g.log.Info("listener socket inherited", "listener", lc.Name, "address", lc.Address)
		} else {
			var err error
			ln, err = listener.Listen(ctx, lc.Address)
			if err != nil {
				for name, s := range socks {
					if old := g.listeners[name]; old == nil || old.sock != s {
						s.Close()
					}
				}
				return nil, fmt.Errorf("listeners[%d] %q: %w", i, lc.Name, err)
			}
		}
		socks[lc.Name] = listener.NewSocket(ln)
	}
	return socks, nil
}

// serve starts a server for lc on sock.
func (g *Gateway) serve(lc *config.Listener, sock *listener.Socket) (*runningListener, error) {
	trusted, err := listener.ParseTrusted(lc.TrustedProxies)
	if err != nil {
		return nil, err
	}
	opts := stdhttp.Options{
		HTTP1:                slices.Contains(lc.Protocols, config.ProtocolH1),
		HTTP2:                slices.Contains(lc.Protocols, config.ProtocolH2),
		H2C:                  slices.Contains(lc.Protocols, config.ProtocolH2C),
		ReadHeaderTimeout:    lc.Limits.ReadHeaderTimeout.D(),
		IdleTimeout:          lc.Limits.IdleTimeout.D(),
		MaxHeaderBytes:       int(lc.Limits.MaxHeaderBytes.Int64()),
		MaxConcurrentStreams: int(lc.Limits.MaxConcurrentStreams),
		Logger:               g.log,
		ConnOpened:           func(proto string) { g.obs.metrics.ConnOpened(lc.Name, proto) },
		ConnClosed:           func(proto string) { g.obs.metrics.ConnClosed(lc.Name, proto) },
	}
	scheme := "http"
	var lt *listener.TLS
	if lc.TLS != nil {
		name := lc.Name
		lt, err = listener.NewTLS(lc, listener.TLSOptions{
			Logger:            g.log,
			Watch:             true,
			Reloaded:          func(kind string, ok bool) { g.obs.metrics.TLSReload(name, kind, ok) },
			CertificateLoaded: func(file string, notAfter time.Time) { g.obs.metrics.TLSCertificate(name, file, notAfter) },
		})
		if err != nil {
			return nil, err
		}
		conf, fp := lt.Config(), lt.Fingerprint()
		conf.VerifyConnection = func(cs tls.ConnectionState) error {
			g.obs.metrics.TLSHandshake(name, cs.Version, cs.DidResume)
			return nil
		}
		opts.TLS = conf
		scheme = "https"
		if fp != "" {
			g.log.Info("generated self-signed certificate", "listener", lc.Name, "sha256", fp)
		}
	}
	h := &front{snap: &g.snap, obs: g.obs, trusted: trusted, draining: &g.draining, altSvc: newAltSvc(lc, sock.Addr())}
	h3srv, err := g.serveH3(lc, sock.Addr(), opts.TLS, h)
	if err != nil {
		if lt != nil {
			lt.Close()
		}
		return nil, err
	}
	srv := newServer(lc, opts, h)
	view := sock.NewView()
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := srv.Serve(view); err != nil && !errors.Is(err, net.ErrClosed) {
			select {
			case g.serveErr <- fmt.Errorf("listener %q: %w", lc.Name, err):
			default:
			}
		}
	}()
	g.log.Info("listening", "listener", lc.Name, "address", sock.Addr().String(), "scheme", scheme, "protocols", lc.Protocols)
	return &runningListener{cfg: *lc, sock: sock, srv: srv, scheme: scheme, h3: h3srv, tls: lt}, nil
}

// Reload compiles cfg (defaults applied) and, if it is valid and its new
// listeners can be bound, swaps it in: new requests use it at once, requests
// in flight finish on the previous snapshot. Unchanged upstream pools are
// kept with their connections and health; removed ones are retired (their
// streams end after cfg.Reload.StreamGrace). Unchanged listeners keep their
// sockets and connections; changed ones get a new server on the same socket
// while the old server drains; removed ones drain and close. On any error
// nothing changes and the error is returned.
func (g *Gateway) Reload(cfg *config.Config) error {
	start := time.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.draining.Load() {
		return errors.New("reload refused: shutting down")
	}
	old := g.snap.Load()
	s, err := compile(cfg, old, g.log, g.obs)
	if err != nil {
		g.metrics.failed()
		return err
	}
	if err := g.obs.log.SetRules(cfg); err != nil {
		s.retireNew(old)
		g.metrics.failed()
		return err
	}

	// Everything that can fail happens before the swap: bind new sockets
	// and build every changed listener's server.
	var socks map[string]*listener.Socket
	if g.started {
		socks, err = g.bindAll(context.Background(), cfg.Listeners)
		if err != nil {
			s.retireNew(old)
			g.metrics.failed()
			return err
		}
	}
	g.snap.Store(s)
	g.generation++

	if g.started {
		next := make(map[string]*runningListener, len(cfg.Listeners))
		for i := range cfg.Listeners {
			lc := &cfg.Listeners[i]
			prev := g.listeners[lc.Name]
			if prev != nil && reflect.DeepEqual(prev.cfg, *lc) {
				next[lc.Name] = prev
				if prev.tls != nil {
					// A reload (SIGHUP) also re-reads certificate files,
					// for file systems whose changes the watch misses.
					prev.tls.Reload()
				}
				continue
			}
			rl, err := g.serve(lc, socks[lc.Name])
			if err != nil {
				// Certificates are checked by validation, so this is a
				// file changed in between: keep the old server.
				g.log.Error("reload: listener kept on its previous settings", "listener", lc.Name, "error", err)
				if prev != nil {
					next[lc.Name] = prev
				}
				continue
			}
			next[lc.Name] = rl
			if prev != nil {
				go g.drainListener(prev, prev.sock != rl.sock, cfg.Shutdown.DrainTimeout.D())
			}
		}
		for name, prev := range g.listeners {
			if _, kept := next[name]; !kept {
				go g.drainListener(prev, true, cfg.Shutdown.DrainTimeout.D())
			}
		}
		g.listeners = next
	}

	// Pools the new snapshot did not take over are retired.
	for name, p := range old.Pools {
		if s.Pools[name] != p {
			p.Retire(cfg.Reload.StreamGrace.D())
		}
	}
	g.metrics.loaded(g.generation)
	g.log.Info("configuration reloaded", "generation", g.generation, "routes", len(cfg.Routes),
		"upstreams", len(cfg.Upstreams), "listeners", len(cfg.Listeners), "took", time.Since(start).String())
	return nil
}

// drainListener shuts a replaced or removed listener's server down
// gracefully and, if the socket is no longer used, closes it.
func (g *Gateway) drainListener(l *runningListener, closeSocket bool, timeout time.Duration) {
	l.stop()
	ctx, cancel := context.WithTimeout(context.Background(), max(timeout, time.Second))
	defer cancel()
	if err := l.shutdown(ctx); err != nil {
		g.log.Warn("listener drain timed out; remaining connections closed", "listener", l.cfg.Name, "error", err)
	}
	if closeSocket {
		l.sock.Close()
	}
}

// Addr returns the bound address of the named listener, or nil.
func (g *Gateway) Addr(name string) net.Addr {
	g.mu.Lock()
	defer g.mu.Unlock()
	if l := g.listeners[name]; l != nil {
		return l.sock.Addr()
	}
	return nil
}

// Sockets returns the listening sockets by bound address, for handing to a
// new process in a binary upgrade.
func (g *Gateway) Sockets() map[string]*listener.Socket {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[string]*listener.Socket, len(g.listeners))
	for _, l := range g.listeners {
		out[l.cfg.Address] = l.sock
	}
	return out
}

// Err returns a channel that receives a listener's fatal serve error.
func (g *Gateway) Err() <-chan error { return g.serveErr }

// StopAccepting makes every listener stop taking new connections without
// closing the sockets (which a new process may be serving by now). Requests
// in flight continue; call Shutdown to drain them.
func (g *Gateway) StopAccepting() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.draining.Store(true)
	for _, l := range g.listeners {
		l.sock.Detach()
	}
}

// Shutdown stops accepting connections, lets in-flight requests finish for up
// to the configured drain timeout (or until ctx is done), then closes what is
// left and the upstream pools' idle connections.
func (g *Gateway) Shutdown(ctx context.Context) error {
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
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.stop()
			if err := l.shutdown(ctx); err != nil {
				errs[i] = fmt.Errorf("listener %q: drain: %w", l.cfg.Name, err)
			}
			l.sock.Close()
		}()
	}
	wg.Wait()
	g.wg.Wait()
	g.snap.Load().Close()
	// Lines and spans of the last requests are flushed after they finished.
	fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	errs = append(errs, g.obs.close(fctx))
	return errors.Join(errs...)
}

// ReloadFrom reads a configuration with load and applies it with Reload.
// Every reload trigger goes through it, so a configuration that cannot even
// be loaded (decoding or validation failed) is counted as a failed reload
// like one that fails to compile.
func (g *Gateway) ReloadFrom(load func() (*config.Config, error)) error {
	cfg, err := load()
	if err != nil {
		g.metrics.failed()
		return err
	}
	return g.Reload(cfg)
}

// ReopenLogs reopens the access log file (SIGUSR1, after rotation).
func (g *Gateway) ReopenLogs() error { return g.obs.log.Reopen() }
