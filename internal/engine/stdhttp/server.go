package stdhttp

import (
	"context"
	"crypto/tls"
	"log"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/penstock-dev/penstock/internal/engine"
	"github.com/penstock-dev/penstock/internal/exchange"
)

// Options configure one net/http server. Zero values mean net/http's own
// defaults, so callers pass penstock's documented defaults explicitly.
type Options struct {
	// HTTP1 serves HTTP/1.x.
	HTTP1 bool
	// HTTP2 serves HTTP/2 over TLS (negotiated by ALPN).
	HTTP2 bool
	// H2C serves HTTP/2 over cleartext with prior knowledge (RFC 9113 §3.3).
	H2C bool
	// TLS, when non-nil, is the listener's TLS configuration.
	TLS *tls.Config
	// ReadHeaderTimeout bounds reading a request's headers.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes idle keep-alive connections.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds the request line plus headers.
	MaxHeaderBytes int
	// MaxConcurrentStreams bounds HTTP/2 streams per connection.
	MaxConcurrentStreams int
	// SendTimeout resets an HTTP/2 stream whose response made no progress
	// for this long (see Adapter.SendTimeout); 0 means never.
	SendTimeout time.Duration
	// SendTimedOut, when set, is called for each response cut by
	// SendTimeout while the handler was writing it.
	SendTimedOut func()
	// HTTP2Calmed, when set, is called for each HTTP/2 connection the
	// native engine closes with GOAWAY ENHANCE_YOUR_CALM (rapid reset).
	HTTP2Calmed func()
	// HTTP2MaxReceiveWindow bounds the HTTP/2 receive windows (the native
	// HTTP/2 engine grows them up to it); 0: the engine's default.
	HTTP2MaxReceiveWindow int
	// HTTP2WindowGrown, when set, is called each time the native HTTP/2
	// engine grows a connection's receive window.
	HTTP2WindowGrown func()
	// Logger receives the server's internal errors (TLS handshakes, bad
	// requests) at debug level.
	Logger *slog.Logger
	// ConnOpened and ConnClosed, when set, are told when a client connection
	// starts carrying requests and when it ends, with its protocol: "h2" or
	// "http/1.1" as negotiated by ALPN on TLS, "tcp" on plain connections
	// (HTTP/1.1 or h2c).
	ConnOpened, ConnClosed func(proto string)
	// DrainIdle returns how long a graceful shutdown keeps an idle HTTP/1.x
	// keep-alive connection open for its next request, which is answered
	// in full with "Connection: close"; a connection that sends nothing for
	// that long is then closed. Asked when the shutdown begins, so that a
	// reload's value applies to servers already running. Nil, or 0, means
	// DefaultDrainIdle (5 s); never more than IdleTimeout, and the
	// shutdown's deadline ends it in any case.
	DrainIdle func() time.Duration
}

// Server is one running net/http server.
type Server struct {
	srv *http.Server
	o   Options
	// draining is set by Shutdown; the Adapter then closes HTTP/1.x
	// connections after their response.
	draining atomic.Bool

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	// conns holds every connection net/http serves, with its state
	// (ConnState): a lookup and an atomic store per request, no lock.
	conns sync.Map // net.Conn → *trackedConn
}

// trackedConn is what the server knows of one connection.
type trackedConn struct {
	state atomic.Int32 // the last http.ConnState
	// events counts the event streams it serves (Adapter.EventStreams).
	events atomic.Int64
	// proto is the protocol label, set before opened.
	proto  string
	opened atomic.Bool
}

// NewServer builds a server that hands requests to h.
func NewServer(o Options, h exchange.Handler) *Server {
	s := &Server{o: o, listeners: make(map[net.Listener]struct{})}
	srv := newHTTPServer(o, h)
	srv.Protocols.SetHTTP1(o.HTTP1)
	srv.TLSConfig = o.TLS
	srv.Handler.(*Adapter).Draining = &s.draining
	srv.Handler.(*Adapter).EventStreams = countEventStreams
	srv.ConnState = s.connState
	srv.ConnContext = s.connContext
	s.srv = srv
	return s
}

// newHTTPServer builds the server: the adapter, HTTP/2 as o asks (HTTP/1.x
// left off until NewServer sets it), the limits and the error log.
func newHTTPServer(o Options, h exchange.Handler) *http.Server {
	p := new(http.Protocols)
	p.SetHTTP2(o.HTTP2 && o.TLS != nil)
	p.SetUnencryptedHTTP2(o.H2C && o.TLS == nil)
	srv := &http.Server{
		Handler:           &Adapter{Handler: h, SendTimeout: o.SendTimeout, SendTimedOut: o.SendTimedOut},
		Protocols:         p,
		ReadHeaderTimeout: o.ReadHeaderTimeout,
		IdleTimeout:       o.IdleTimeout,
		MaxHeaderBytes:    o.MaxHeaderBytes,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams: o.MaxConcurrentStreams,
		},
	}
	if o.Logger != nil {
		// Handshake failures and malformed requests from the internet are
		// routine; keep them out of the default log level.
		srv.ErrorLog = log.New(slogWriter{o.Logger}, "", 0)
	}
	return srv
}

// trackedKey is the context key of a connection's *trackedConn.
type trackedKey struct{}

// connContext registers each connection as net/http accepts it (before
// its StateNew) and hands its entry to its requests, for
// countEventStreams.
func (s *Server) connContext(ctx context.Context, c net.Conn) context.Context {
	t := &trackedConn{}
	t.state.Store(int32(http.StateNew))
	s.conns.Store(c, t)
	return context.WithValue(ctx, trackedKey{}, t)
}

// countEventStreams is the adapter's EventStreams hook: the event streams
// of each connection, for Shutdown in a binary upgrade.
func countEventStreams(r *http.Request, delta int) {
	if t, _ := r.Context().Value(trackedKey{}).(*trackedConn); t != nil {
		t.events.Add(int64(delta))
	}
}

// connState follows every connection (net/http's ConnState hook): its
// state, for the drain, and its opening and closing, for the hooks.
func (s *Server) connState(c net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		if _, ok := s.conns.Load(c); !ok {
			t := &trackedConn{}
			t.state.Store(int32(st))
			s.conns.Store(c, t)
		}
	case http.StateActive, http.StateIdle:
		v, ok := s.conns.Load(c)
		if !ok {
			return
		}
		t := v.(*trackedConn)
		t.state.Store(int32(st))
		if f, ok := c.(interface{ ResponseDone() }); ok && st == http.StateIdle {
			// A validating front (h1.Front) answers a refused request
			// only after the responses before it.
			f.ResponseDone()
		}
		if st == http.StateActive && !t.opened.Load() {
			t.proto = "tcp"
			if tc, ok := c.(*tls.Conn); ok {
				t.proto = tc.ConnectionState().NegotiatedProtocol
				if t.proto == "" {
					t.proto = "http/1.1"
				}
			}
			t.opened.Store(true)
			if s.o.ConnOpened != nil && s.o.ConnClosed != nil {
				s.o.ConnOpened(t.proto)
			}
		}
	case http.StateClosed, http.StateHijacked:
		if f, ok := c.(interface{ Hijacked() }); ok && st == http.StateHijacked {
			f.Hijacked()
		}
		if v, ok := s.conns.LoadAndDelete(c); ok {
			if t := v.(*trackedConn); t.opened.Load() && s.o.ConnOpened != nil && s.o.ConnClosed != nil {
				s.o.ConnClosed(t.proto)
			}
		}
	}
}

// Serve accepts connections on ln until Shutdown. With TLS options the
// listener is wrapped here, so ln is a plain TCP listener in both cases.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.draining.Load() {
		s.mu.Unlock()
		return nil
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	var err error
	if s.srv.TLSConfig != nil {
		err = s.srv.Serve(tls.NewListener(ln, s.srv.TLSConfig))
	} else {
		err = s.srv.Serve(ln)
	}
	if err == http.ErrServerClosed || s.draining.Load() {
		return nil
	}
	return err
}

// Shutdown stops accepting and drains, as the native engine does: requests
// in flight finish, and every HTTP/1.x response from now on carries
// "Connection: close". Idle keep-alive connections stay open for the drain
// grace (Options.DrainIdle) so that a request a client is sending on one
// right now is answered, not lost; once no HTTP/1.x connection is left, or
// the grace ends, net/http's own graceful shutdown closes those still idle,
// sends HTTP/2 connections a GOAWAY and waits for what is active. When ctx
// is done, whatever is left is closed.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining.Store(true)
	for ln := range s.listeners {
		ln.Close()
	}
	s.mu.Unlock()

	grace := time.NewTimer(DrainIdle(s.o))
	defer grace.Stop()
	tick := time.NewTicker(drainPoll)
	defer tick.Stop()
wait:
	for s.http1Conns() > 0 {
		select {
		case <-grace.C:
			break wait
		case <-ctx.Done():
			break wait
		case <-tick.C:
		}
	}
	err := s.srv.Shutdown(ctx)
	if err != nil {
		// In a binary upgrade, event streams may run on past the drain
		// timeout (engine.WithStreamDrain): the connections serving one
		// stay (with whatever else they carry: net/http cannot end one
		// HTTP/2 stream from outside), the others are closed now.
		if until, ok := engine.StreamDrain(ctx); ok && s.closeAllButStreams() {
			s.waitConns(until)
		}
		s.srv.Close()
	}
	return err
}

// closeAllButStreams closes every connection serving no event stream and
// reports whether any connection is left.
func (s *Server) closeAllButStreams() bool {
	left := false
	s.conns.Range(func(k, v any) bool {
		if v.(*trackedConn).events.Load() > 0 {
			left = true
		} else {
			k.(net.Conn).Close()
		}
		return true
	})
	return left
}

// waitConns waits until no connection is left or until has come.
func (s *Server) waitConns(until time.Time) {
	tick := time.NewTicker(drainPoll)
	defer tick.Stop()
	for time.Now().Before(until) {
		empty := true
		s.conns.Range(func(_, _ any) bool {
			empty = false
			return false
		})
		if empty {
			return
		}
		<-tick.C
	}
}

// drainPoll is how often Shutdown looks whether idle connections are left
// (net/http's own Shutdown polls too).
const drainPoll = 20 * time.Millisecond

// http1Conns counts the connections that may still carry an HTTP/1.x
// request: idle ones, and active ones whose response may have promised
// keep-alive before the drain began (they go idle after it). HTTP/2
// connections over TLS are left to net/http's GOAWAY.
func (s *Server) http1Conns() int {
	n := 0
	s.conns.Range(func(_, v any) bool {
		if t := v.(*trackedConn); !t.opened.Load() || t.proto != "h2" {
			n++
		}
		return true
	})
	return n
}

// DefaultDrainIdle is Options.DrainIdle's default: longer than the pause
// between two requests of any client that keeps a connection busy, short
// enough not to hold a shutdown for long.
const DefaultDrainIdle = 5 * time.Second

// DrainIdle is how long a shutdown under o keeps idle connections open: the
// drain grace, never beyond the idle timeout. Both engines use it.
func DrainIdle(o Options) time.Duration {
	var d time.Duration
	if o.DrainIdle != nil {
		d = o.DrainIdle()
	}
	if d <= 0 {
		d = DefaultDrainIdle
	}
	if o.IdleTimeout > 0 {
		d = min(d, o.IdleTimeout)
	}
	return d
}

type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	msg := string(p)
	if n := len(msg); n > 0 && msg[n-1] == '\n' {
		msg = msg[:n-1]
	}
	w.l.Debug(msg, "component", "http")
	return len(p), nil
}
