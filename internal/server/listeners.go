package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/engine"
	"github.com/penstock-dev/penstock/internal/engine/h1"
	"github.com/penstock-dev/penstock/internal/engine/h3"
	"github.com/penstock-dev/penstock/internal/engine/stdhttp"
	"github.com/penstock-dev/penstock/internal/front"
	"github.com/penstock-dev/penstock/internal/listener"
)

// runningListener is one configured listener: its socket and the engines
// currently serving it.
type runningListener struct {
	cfg    config.Listener
	sock   *listener.Socket
	scheme string
	// engines serve the listener: the TCP engine (h1 or stdhttp) and,
	// with "h3" in its protocols, the HTTP/3 engine. They are started,
	// replaced and drained alike.
	engines []engine.Server
	// h3 is the HTTP/3 engine among engines, or nil; a reload that keeps
	// the address serves its successor on the same UDP socket.
	h3 *h3.Server
	// tls is the listener's live TLS configuration (nil for plain TCP); it
	// follows the certificate files until the listener is replaced.
	tls *listener.TLS
}

// stop ends what the listener owns besides its engines: the watch on its
// TLS files.
func (l *runningListener) stop() {
	if l.tls != nil {
		l.tls.Close()
	}
}

// shutdown drains l's engines side by side (HTTP/2 and HTTP/3 connections
// get a GOAWAY), until their requests finished or ctx is done. The HTTP/3
// engine's UDP socket is closed unless a newer engine (a reload) took it
// over; the TCP socket is the caller's.
func (l *runningListener) shutdown(ctx context.Context) error {
	errs := make([]error, len(l.engines))
	var wg sync.WaitGroup
	for i, e := range l.engines {
		wg.Go(func() { errs[i] = e.Shutdown(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Start binds every listener (or takes it from Options.Inherited) and starts
// serving. If any socket cannot be bound, the ones already bound are closed
// and the error names the listener.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cfg := s.snap.Load().Config
	socks, err := s.bindAll(ctx, cfg.Listeners)
	if err != nil {
		return err
	}
	for i := range cfg.Listeners {
		lc := &cfg.Listeners[i]
		rl, err := s.serve(lc, socks[lc.Name])
		if err != nil {
			for _, sock := range socks {
				sock.Close()
			}
			for _, l := range s.listeners {
				l.shutdown(context.Background())
				l.stop()
			}
			s.listeners = map[string]*runningListener{}
			return fmt.Errorf("listeners[%d] %q: %w", i, lc.Name, err)
		}
		s.listeners[lc.Name] = rl
	}
	// Inherited sockets no listener claimed are not ours to keep open.
	for addr, ln := range s.inherit {
		ln.Close()
		delete(s.inherit, addr)
	}
	s.started = true
	return nil
}

// bindAll binds (or inherits) a socket for each listener in lcs that has no
// running socket at the same address yet. On error it closes what it bound.
func (s *Server) bindAll(ctx context.Context, lcs []config.Listener) (map[string]*listener.Socket, error) {
	socks := make(map[string]*listener.Socket)
	for i := range lcs {
		lc := &lcs[i]
		// Same socket if the address is unchanged, or names the port an
		// ephemeral ("host:0") listener was given.
		if old := s.listeners[lc.Name]; old != nil && (old.cfg.Address == lc.Address || old.sock.Addr().String() == lc.Address) {
			socks[lc.Name] = old.sock
			continue
		}
		var ln net.Listener
		if inh, ok := s.inherit[lc.Address]; ok {
			ln = inh
			delete(s.inherit, lc.Address)
			s.log.Info("listener socket inherited", "listener", lc.Name, "address", lc.Address)
		} else {
			var err error
			ln, err = listener.Listen(ctx, lc.Address)
			if err != nil {
				for name, sock := range socks {
					if old := s.listeners[name]; old == nil || old.sock != sock {
						sock.Close()
					}
				}
				return nil, fmt.Errorf("listeners[%d] %q: %w", i, lc.Name, err)
			}
		}
		socks[lc.Name] = listener.NewSocket(ln)
	}
	return socks, nil
}

// serve starts lc's engines on sock, with a front handler of their own.
func (s *Server) serve(lc *config.Listener, sock *listener.Socket) (*runningListener, error) {
	trusted, err := listener.ParseTrusted(lc.TrustedProxies)
	if err != nil {
		return nil, err
	}
	opts := s.engineOptions(lc)
	rl := &runningListener{cfg: *lc, sock: sock, scheme: "http"}
	if lc.TLS != nil {
		if rl.tls, err = s.listenerTLS(lc); err != nil {
			return nil, err
		}
		opts.TLS = rl.tls.Config()
		rl.scheme = "https"
	}
	h := &front.Handler{Snapshot: &s.snap, Trusted: trusted, Draining: &s.draining, AltSvc: front.NewAltSvc(lc, sock.Addr())}
	if rl.h3, err = s.serveH3(lc, sock.Addr(), opts.TLS, h); err != nil {
		rl.stop()
		return nil, err
	}
	var tcp engine.ListenerServer
	var ln net.Listener = sock.NewView()
	if lc.Engine == config.EngineStdHTTP {
		tcp = stdhttp.NewServer(opts, h)
		if opts.TLS == nil && opts.HTTP1 {
			// Requests reach net/http through the native engine's
			// parser, so that both engines refuse the same requests
			// (h1.FrontListener says why TLS is left out).
			ln = h1.FrontListener(ln, opts.MaxHeaderBytes)
		}
	} else {
		tcp = h1.NewServer(h1.Options{Options: opts, IO: s.io}, h)
	}
	rl.engines = append(rl.engines, engine.On(tcp, ln))
	if rl.h3 != nil {
		rl.engines = append(rl.engines, rl.h3)
	}
	for _, e := range rl.engines {
		s.serving.Go(func() {
			if err := e.Serve(); err != nil && !errors.Is(err, net.ErrClosed) {
				select {
				case s.serveErr <- fmt.Errorf("listener %q: %w", lc.Name, err):
				default:
				}
			}
		})
	}
	s.log.Info("listening", "listener", lc.Name, "address", sock.Addr().String(), "scheme", rl.scheme, "protocols", lc.Protocols)
	return rl, nil
}

// engineOptions are the settings of lc that every engine takes.
func (s *Server) engineOptions(lc *config.Listener) stdhttp.Options {
	m := s.tel.Metrics
	return stdhttp.Options{
		HTTP1:                 slices.Contains(lc.Protocols, config.ProtocolH1),
		HTTP2:                 slices.Contains(lc.Protocols, config.ProtocolH2),
		H2C:                   slices.Contains(lc.Protocols, config.ProtocolH2C),
		ReadHeaderTimeout:     lc.Limits.ReadHeaderTimeout.D(),
		IdleTimeout:           lc.Limits.IdleTimeout.D(),
		MaxHeaderBytes:        int(lc.Limits.MaxHeaderBytes.Int64()),
		MaxConcurrentStreams:  int(lc.Limits.MaxConcurrentStreams),
		DrainIdle:             func() time.Duration { return s.snap.Load().Config.Shutdown.IdleGrace.D() },
		SendTimeout:           lc.Limits.SendTimeout.D(),
		SendTimedOut:          func() { m.SendTimeout(lc.Name) },
		HTTP2Calmed:           func() { m.HTTP2Calmed(lc.Name) },
		HTTP2MaxReceiveWindow: int(lc.Limits.HTTP2MaxReceiveWindow.Int64()),
		HTTP2WindowGrown:      func() { m.HTTP2WindowGrown(lc.Name) },
		Logger:                s.log,
		ConnOpened:            func(proto string) { m.ConnOpened(lc.Name, proto) },
		ConnClosed:            func(proto string) { m.ConnClosed(lc.Name, proto) },
	}
}

// listenerTLS loads lc's certificates and watches their files.
func (s *Server) listenerTLS(lc *config.Listener) (*listener.TLS, error) {
	name, m := lc.Name, s.tel.Metrics
	lt, err := listener.NewTLS(lc, listener.TLSOptions{
		Logger:            s.log,
		Watch:             true,
		Reloaded:          func(kind string, ok bool) { m.TLSReload(name, kind, ok) },
		CertificateLoaded: func(file string, notAfter time.Time) { m.TLSCertificate(name, file, notAfter) },
	})
	if err != nil {
		return nil, err
	}
	lt.Config().VerifyConnection = func(cs tls.ConnectionState) error {
		m.TLSHandshake(name, cs.Version, cs.DidResume)
		return nil
	}
	if fp := lt.Fingerprint(); fp != "" {
		s.log.Info("generated self-signed certificate", "listener", lc.Name, "sha256", fp)
	}
	return lt, nil
}
