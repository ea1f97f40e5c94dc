package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/engine/stdhttp"
	"github.com/penstock-dev/penstock/internal/listener"
)

// Gateway is a running penstock: its listeners, the current snapshot and the
// admin listener.
type Gateway struct {
	log      *slog.Logger
	snap     atomic.Pointer[Snapshot]
	draining atomic.Bool
	drain    time.Duration

	mu        sync.Mutex
	listeners []*runningListener
	admin     *adminServer
	wg        sync.WaitGroup
	serveErr  chan error
}

type runningListener struct {
	name   string
	scheme string
	ln     net.Listener
	srv    *stdhttp.Server
}

// New compiles cfg (defaults applied) into a gateway that is not yet
// listening.
func New(cfg *config.Config, log *slog.Logger) (*Gateway, error) {
	if log == nil {
		log = slog.Default()
	}
	s, err := Compile(cfg, log)
	if err != nil {
		return nil, err
	}
	g := &Gateway{log: log, drain: cfg.Shutdown.DrainTimeout.D(), serveErr: make(chan error, len(cfg.Listeners)+1)}
	g.snap.Store(s)
	return g, nil
}

// Snapshot returns the snapshot requests are currently served from.
func (g *Gateway) Snapshot() *Snapshot { return g.snap.Load() }

// Start binds every listener and the admin listener and starts serving. If
// any socket cannot be bound, the ones already bound are closed and the
// error names the listener.
func (g *Gateway) Start(ctx context.Context) error {
	cfg := g.snap.Load().Config
	g.mu.Lock()
	defer g.mu.Unlock()
	for i := range cfg.Listeners {
		lc := &cfg.Listeners[i]
		rl, err := g.startListener(ctx, lc)
		if err != nil {
			g.closeAll()
			return fmt.Errorf("listeners[%d] %q: %w", i, lc.Name, err)
		}
		g.listeners = append(g.listeners, rl)
	}
	if cfg.Admin != nil {
		a, err := startAdmin(ctx, cfg.Admin.Address, g)
		if err != nil {
			g.closeAll()
			return fmt.Errorf("admin: %w", err)
		}
		g.admin = a
		g.log.Info("admin listening", "address", a.ln.Addr().String())
	}
	return nil
}

func (g *Gateway) startListener(ctx context.Context, lc *config.Listener) (*runningListener, error) {
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
	}
	scheme := "http"
	if lc.TLS != nil {
		conf, fp, err := listener.TLSConfig(lc)
		if err != nil {
			return nil, err
		}
		opts.TLS = conf
		scheme = "https"
		if fp != "" {
			g.log.Info("generated self-signed certificate", "listener", lc.Name, "sha256", fp)
		}
	}
	ln, err := listener.Listen(ctx, lc.Address)
	if err != nil {
		return nil, err
	}
	h := &front{snap: &g.snap, trusted: trusted, draining: &g.draining}
	srv := stdhttp.NewServer(opts, h)
	rl := &runningListener{name: lc.Name, scheme: scheme, ln: ln, srv: srv}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := srv.Serve(ln); err != nil {
			g.serveErr <- fmt.Errorf("listener %q: %w", lc.Name, err)
		}
	}()
	g.log.Info("listening", "listener", lc.Name, "address", ln.Addr().String(), "scheme", scheme, "protocols", lc.Protocols)
	return rl, nil
}

// Addr returns the bound address of the named listener ("admin" for the
// admin listener when no listener has that name), or nil.
func (g *Gateway) Addr(name string) net.Addr {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, l := range g.listeners {
		if l.name == name {
			return l.ln.Addr()
		}
	}
	if name == "admin" && g.admin != nil {
		return g.admin.ln.Addr()
	}
	return nil
}

// Err returns a channel that receives a listener's fatal serve error.
func (g *Gateway) Err() <-chan error { return g.serveErr }

// Shutdown stops accepting connections, lets in-flight requests finish for up
// to the configured drain timeout (or until ctx is done), then closes what is
// left and the upstream pools' idle connections.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.draining.Store(true)
	if g.drain > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, g.drain)
		defer cancel()
	}
	g.mu.Lock()
	ls := slices.Clone(g.listeners)
	admin := g.admin
	g.mu.Unlock()

	var wg sync.WaitGroup
	errs := make([]error, len(ls))
	for i, l := range ls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.srv.Shutdown(ctx); err != nil {
				errs[i] = fmt.Errorf("listener %q: drain: %w", l.name, err)
			}
		}()
	}
	wg.Wait()
	if admin != nil {
		admin.srv.Close()
	}
	g.wg.Wait()
	g.snap.Load().Close()
	return errors.Join(errs...)
}

// closeAll closes bound sockets after a failed Start. g.mu is held.
func (g *Gateway) closeAll() {
	for _, l := range g.listeners {
		l.srv.Shutdown(context.Background())
		l.ln.Close()
	}
	g.listeners = nil
	if g.admin != nil {
		g.admin.srv.Close()
		g.admin = nil
	}
}
