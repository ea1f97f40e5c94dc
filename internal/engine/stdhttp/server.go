package stdhttp

import (
	"context"
	"crypto/tls"
	"log"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

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
	// Logger receives the server's internal errors (TLS handshakes, bad
	// requests) at debug level.
	Logger *slog.Logger
	// ConnOpened and ConnClosed, when set, are told when a client connection
	// starts carrying requests and when it ends, with its protocol: "h2" or
	// "http/1.1" as negotiated by ALPN on TLS, "tcp" on plain connections
	// (HTTP/1.1 or h2c).
	ConnOpened, ConnClosed func(proto string)
}

// Server is one running net/http server.
type Server struct {
	srv *http.Server
}

// NewServer builds a server that hands requests to h.
func NewServer(o Options, h exchange.Handler) *Server {
	srv := newHTTPServer(o, h)
	srv.Protocols.SetHTTP1(o.HTTP1)
	srv.TLSConfig = o.TLS
	if o.ConnOpened != nil && o.ConnClosed != nil {
		var conns sync.Map // net.Conn → protocol label, per connection (not per request)
		srv.ConnState = func(c net.Conn, st http.ConnState) {
			switch st {
			case http.StateActive:
				if _, seen := conns.Load(c); seen {
					return
				}
				proto := "tcp"
				if tc, ok := c.(*tls.Conn); ok {
					proto = tc.ConnectionState().NegotiatedProtocol
					if proto == "" {
						proto = "http/1.1"
					}
				}
				conns.Store(c, proto)
				o.ConnOpened(proto)
			case http.StateClosed, http.StateHijacked:
				if proto, ok := conns.LoadAndDelete(c); ok {
					o.ConnClosed(proto.(string))
				}
			}
		}
	}
	return &Server{srv: srv}
}

// HTTP2Server builds the net/http server that the native engine
// (internal/engine/h1) hands its HTTP/2 connections to: HTTP/2 over TLS
// when o.TLS is set and o.HTTP2 asks for it, h2c on plain connections when
// o.H2C does, never HTTP/1.x. The engine has negotiated TLS and reported
// each connection's opening itself (o.ConnOpened), so the server is given
// connections that are already TLS and reports only their close: "h2" for
// TLS, "tcp" for h2c.
func HTTP2Server(o Options, h exchange.Handler) *http.Server {
	srv := newHTTPServer(o, h)
	if o.ConnOpened != nil && o.ConnClosed != nil {
		srv.ConnState = func(nc net.Conn, st http.ConnState) {
			if st == http.StateClosed || st == http.StateHijacked {
				label := "tcp"
				if _, ok := nc.(*tls.Conn); ok {
					label = "h2"
				}
				o.ConnClosed(label)
			}
		}
	}
	return srv
}

// newHTTPServer builds what both kinds of server share: the adapter,
// HTTP/2 as o asks (HTTP/1.x left off), the limits and the error log.
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

// Serve accepts connections on ln until Shutdown. With TLS options the
// listener is wrapped here, so ln is a plain TCP listener in both cases.
func (s *Server) Serve(ln net.Listener) error {
	var err error
	if s.srv.TLSConfig != nil {
		err = s.srv.Serve(tls.NewListener(ln, s.srv.TLSConfig))
	} else {
		err = s.srv.Serve(ln)
	}
	if err == http.ErrServerClosed {
		return nil
	}
	return err
}

// Shutdown stops accepting, closes idle connections and waits for active
// requests until ctx is done; then it closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	return err
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
