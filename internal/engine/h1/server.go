// Package h1 is penstock's own HTTP/1.1 server engine.
//
// It parses requests straight from pooled read buffers into
// exchange.Exchange values (RFC 9112, strict where request smuggling lives),
// writes responses through pooled write buffers, and costs no allocation per
// keep-alive request once warm. Plain-text keep-alive connections wait in an
// epoll poller with neither a goroutine nor a buffer (poll_linux.go); TLS
// connections keep a goroutine, as crypto/tls needs one, and share the same
// parser and writer. HTTP/2 on the same listener (ALPN "h2", or the h2c
// preface) is handed to penstock's HTTP/2 engine (internal/engine/h2), so
// both protocols run the same route pipeline. docs/http1.md has the
// design, bench/README.md its figures.
package h1

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/penstock-dev/penstock/internal/engine"
	"github.com/penstock-dev/penstock/internal/engine/h2"
	"github.com/penstock-dev/penstock/internal/engine/stdhttp"
	"github.com/penstock-dev/penstock/internal/epoll"
	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/listener"
)

// Options configure the native engine.
type Options struct {
	// Options are the settings both TCP engines take, so that a
	// listener's settings mean the same on either. TLS, when set, is the
	// listener's TLS configuration; the listener passed to Serve is plain
	// TCP in both cases. HTTP/2 connections are served with them by
	// the HTTP/2 engine (internal/engine/h2).
	stdhttp.Options
	// IO is the Linux I/O layer whose polling instances hold the server's
	// idle plain connections and whose hang-up watcher watches its TLS
	// connections. Its owner closes it, after the server has shut down.
	// Nil means epoll.Shared(), the process's. Without epoll (other
	// platforms, or no IO could be made) every connection has its own
	// goroutine.
	IO *epoll.IO
}

// Server serves HTTP/1.x itself and HTTP/2 through the HTTP/2 engine on
// the same listener.
type Server struct {
	o         Options
	h         exchange.Handler
	maxHeader int
	// io polls plain connections and watches TLS ones (nil: neither);
	// handoffs[i] passes the connections of its polling instance i to
	// worker goroutines (poll_linux.go).
	io       *epoll.IO
	handoffs []handoff
	// noPoller keeps every connection on its own goroutine (tests).
	noPoller bool

	shuttingDown atomic.Bool
	// drained is set at the end of Shutdown's drain grace: from then on a
	// connection going idle is closed instead.
	drained atomic.Bool
	// idle closes polled connections idle for the idle timeout.
	idle idleSweeper

	// mu guards the sets below; it is taken per connection (open, close),
	// never per request.
	mu        sync.Mutex
	conns     map[*conn]struct{}
	listeners map[net.Listener]struct{}
	allGone   chan struct{} // closed when conns empties during shutdown

	// h2srv serves HTTP/2 connections, started on the first one (under
	// mu).
	h2srv *h2.Server
}

// defaultMaxHeaderBytes is net/http's default, used when Options leave it 0.
const defaultMaxHeaderBytes = 1 << 20

// NewServer builds a server that hands requests to h.
func NewServer(o Options, h exchange.Handler) *Server {
	s := &Server{
		o:         o,
		h:         h,
		maxHeader: o.MaxHeaderBytes,
		conns:     make(map[*conn]struct{}),
		listeners: make(map[net.Listener]struct{}),
	}
	if s.maxHeader <= 0 {
		s.maxHeader = defaultMaxHeaderBytes
	}
	s.io = o.IO
	if s.io == nil {
		s.io = epoll.Shared()
	}
	s.handoffs = newHandoffs(s.io.Pollers())
	return s
}

// Serve accepts connections on ln until Shutdown. With TLS options the
// handshake happens here, so ln is a plain TCP listener in both cases.
func (s *Server) Serve(ln net.Listener) error {
	if tl, ok := ln.(*net.TCPListener); ok && s.o.TLS == nil && s.polling() {
		if fl, err := listener.FDs(tl); err == nil {
			ln = fl
		}
	}
	s.mu.Lock()
	if s.shuttingDown.Load() {
		s.mu.Unlock()
		return nil
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()
	if fl, ok := ln.(fdListener); ok && s.o.TLS == nil && s.polling() {
		return s.serveFDs(fl)
	}
	return s.serveConns(ln)
}

// fdListener hands over connections as bare descriptors where it can
// (listener.View, listener.FDListener); Serve wraps a *net.TCPListener in
// one.
type fdListener interface {
	AcceptFD() (listener.Accepted, error)
}

// serveFDs accepts from fl until it closes: bare descriptors are served
// without a net.Conn (fdconn_linux.go), net.Conns as usual.
func (s *Server) serveFDs(fl fdListener) error {
	for {
		c, err := fl.AcceptFD()
		if err != nil {
			if s.shuttingDown.Load() {
				return nil
			}
			return err
		}
		if c.Conn != nil {
			s.accept(c.Conn)
			continue
		}
		s.acceptFD(c.FD, c.Remote)
	}
}

// serveConns accepts net.Conns from ln until it closes.
func (s *Server) serveConns(ln net.Listener) error {
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.shuttingDown.Load() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Out of file descriptors and the like: back off as
				// net/http does rather than spin.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		s.accept(nc)
	}
}

func (s *Server) accept(nc net.Conn) {
	if s.o.TLS != nil {
		// Records read and written with raw system calls (epoll.RawConn).
		nc = tls.Server(epoll.RawConn(nc), s.o.TLS)
	}
	c := newConn(s, nc)
	if !s.track(c) {
		nc.Close()
		return
	}
	if s.o.TLS != nil {
		go c.serveGoroutine()
		return
	}
	s.opened(c)
	if startPolling(c) {
		return
	}
	go c.serveGoroutine()
}

func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shuttingDown.Load() {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

// forget drops c from the server's connections (closed or hijacked).
func (s *Server) forget(c *conn) {
	s.mu.Lock()
	_, ok := s.conns[c]
	delete(s.conns, c)
	var gone chan struct{}
	if ok && len(s.conns) == 0 && s.allGone != nil {
		gone, s.allGone = s.allGone, nil
	}
	s.mu.Unlock()
	if ok && c.kind != kindH2 && c.counted {
		s.closed(c)
	}
	// Shutdown returns once gone is closed: the close is counted first,
	// so that no connection is still counted open after Shutdown.
	if gone != nil {
		close(gone)
	}
}

// opened reports c to the ConnOpened hook. A TLS connection is reported
// once its handshake completes, with its protocol; one that closes before
// was never reported, so its close is not either (counted).
func (s *Server) opened(c *conn) {
	c.counted = true
	if s.o.ConnOpened != nil && s.o.ConnClosed != nil {
		s.o.ConnOpened(c.label())
	}
}

func (s *Server) closed(c *conn) {
	if s.o.ConnOpened != nil && s.o.ConnClosed != nil {
		s.o.ConnClosed(c.label())
	}
}

// Shutdown stops accepting and drains: requests in flight finish, and every
// HTTP/1.x response from now on carries "Connection: close", after which
// its connection closes. Idle keep-alive connections are not closed at
// once: a client may be sending on one at this very moment, and one that
// does not retry (a POST, a load tool) would lose that request. They stay
// open for the drain grace (Options.DrainIdle) so that their next request is
// answered in full, with "Connection: close" (HAProxy's
// idle-close-on-response); those still idle after it are closed. When ctx
// is done, whatever is left is closed. HTTP/2 connections get a GOAWAY from
// the HTTP/2 engine's graceful shutdown.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shuttingDown.Store(true)
	s.idle.halt()
	for ln := range s.listeners {
		ln.Close()
	}
	var gone chan struct{}
	if len(s.conns) > 0 {
		gone = make(chan struct{})
		s.allGone = gone
	}
	h2srv := s.h2srv
	s.mu.Unlock()

	grace := time.AfterFunc(s.drainIdle(), s.closeIdle)
	defer grace.Stop()
	// The HTTP/2 engine drains its connections alongside: each engine
	// cuts its own at the drain timeout and keeps its own event streams.
	h2done := make(chan error, 1)
	if h2srv != nil {
		go func() { h2done <- h2srv.Shutdown(ctx) }()
	} else {
		h2done <- nil
	}
	var err error
	if gone != nil {
		select {
		case <-gone:
		case <-ctx.Done():
			// In a binary upgrade, event streams may run on past the
			// drain timeout (engine.WithStreamDrain).
			if until, ok := engine.StreamDrain(ctx); ok && s.closeAllButStreams() {
				t := time.NewTimer(time.Until(until))
				select {
				case <-gone:
				case <-t.C:
				}
				t.Stop()
			}
			s.closeAll()
			err = ctx.Err()
		}
	}
	if h2err := <-h2done; err == nil {
		err = h2err
	}
	return err
}

// drainIdle is how long Shutdown keeps idle connections open: the drain
// grace, never beyond the idle timeout.
func (s *Server) drainIdle() time.Duration {
	return stdhttp.DrainIdle(s.o.Options)
}

// closeIdle closes the connections that are idle (the end of the drain
// grace).
func (s *Server) closeIdle() {
	s.drained.Store(true)
	s.mu.Lock()
	idle := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		idle = append(idle, c)
	}
	s.mu.Unlock()
	for _, c := range idle {
		c.closeIfIdle()
	}
}

// closeAllButStreams ends every connection left but those serving an event
// stream, and reports whether any of those remain.
func (s *Server) closeAllButStreams() bool {
	s.mu.Lock()
	left := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		left = append(left, c)
	}
	s.mu.Unlock()
	streams := false
	for _, c := range left {
		if c.streaming.Load() {
			streams = true
			continue
		}
		if !c.closeIfIdle() {
			c.kill()
		}
	}
	return streams
}

// closeAll ends every HTTP/1.x connection left, active or not; their
// handlers see their context cancelled and their writes fail. (The HTTP/2
// engine's Shutdown closes its own.)
func (s *Server) closeAll() {
	s.mu.Lock()
	left := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		left = append(left, c)
	}
	s.mu.Unlock()
	for _, c := range left {
		if !c.closeIfIdle() {
			c.kill()
		}
	}
}

func (s *Server) logDebug(msg string, err error, c *conn) {
	if s.o.Logger != nil {
		s.o.Logger.Debug(msg, "component", "http", "remote", c.remote.String(), "error", err.Error())
	}
}

// h2 returns the HTTP/2 engine, made on first use, or nil once shutting
// down.
func (s *Server) h2() *h2.Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shuttingDown.Load() {
		return nil
	}
	if s.h2srv == nil {
		o := h2Options(s.o.Options)
		// Idle HTTP/2 connections wait in the same IO as idle HTTP/1.1
		// ones, with no goroutine.
		o.IO = s.io
		s.h2srv = h2.NewServer(o, s.h)
	}
	return s.h2srv
}

// h2Options are the HTTP/2 engine's settings from the listener's.
func h2Options(o stdhttp.Options) h2.Options {
	return h2.Options{
		MaxConcurrentStreams: o.MaxConcurrentStreams,
		MaxHeaderBytes:       o.MaxHeaderBytes,
		IdleTimeout:          o.IdleTimeout,
		PrefaceTimeout:       o.ReadHeaderTimeout,
		SendTimeout:          o.SendTimeout,
		SendTimedOut:         o.SendTimedOut,
		Calmed:               o.HTTP2Calmed,
		MaxReceiveWindow:     o.HTTP2MaxReceiveWindow,
		WindowGrown:          o.HTTP2WindowGrown,
		Logger:               o.Logger,
	}
}
