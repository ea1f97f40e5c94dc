package h3

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	_ "github.com/quic-go/quic-go/qlog" // registers the qlog event schema
	"github.com/quic-go/quic-go/qlogwriter"

	"github.com/penstock-dev/penstock/internal/engine/stdhttp"
	"github.com/penstock-dev/penstock/internal/exchange"
)

// Options configure one HTTP/3 server. Zero values mean quic-go's defaults,
// so callers pass penstock's documented defaults explicitly.
type Options struct {
	// TLS is the listener's TLS configuration (certificates, session
	// tickets); it is cloned and its ALPN replaced by "h3". Required.
	TLS *tls.Config
	// MaxIdleTimeout closes a connection without network activity.
	MaxIdleTimeout time.Duration
	// IdleTimeout closes a connection without HTTP/3 requests.
	IdleTimeout time.Duration
	// MaxIncomingStreams bounds concurrent requests per connection.
	MaxIncomingStreams int64
	// MaxHeaderBytes bounds a request's header section.
	MaxHeaderBytes int
	// ZeroRTT accepts 0-RTT (TLS 1.3 early data) on resumed connections and
	// marks requests received in it (exchange.Request.EarlyData).
	ZeroRTT bool
	// HandshakeRateLimit is the rate of new connections per second above
	// which clients must validate their address with a Retry; 0 never asks.
	HandshakeRateLimit int
	// QlogDir, when set, receives one qlog file per connection.
	QlogDir string
	// Logger receives quic-go's debug messages.
	Logger *slog.Logger
}

// Server is one generation of HTTP/3 serving on a Socket.
type Server struct {
	sock  *Socket
	srv   *http3.Server
	tls   *tls.Config
	quic  *quic.Config
	conns chan *quic.Conn
	done  chan struct{}
	once  sync.Once
}

// connKey is the request context key of the request's *quic.Conn.
type connKey struct{}

// NewServer builds a Server on sock with handler h and makes it the one new
// connections go to; the previous Server keeps its connections (drain it
// with Shutdown). Call Serve to serve them.
func NewServer(sock *Socket, o Options, h exchange.Handler) *Server {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	adapter := &stdhttp.Adapter{Handler: h}
	s := &Server{
		sock:  sock,
		conns: make(chan *quic.Conn),
		done:  make(chan struct{}),
		tls:   http3.ConfigureTLSConfig(o.TLS),
		quic: &quic.Config{
			MaxIdleTimeout:     o.MaxIdleTimeout,
			MaxIncomingStreams: o.MaxIncomingStreams,
			Allow0RTT:          o.ZeroRTT,
		},
		srv: &http3.Server{
			Handler:        adapter,
			MaxHeaderBytes: o.MaxHeaderBytes,
			IdleTimeout:    o.IdleTimeout,
			Logger:         o.Logger,
		},
	}
	if o.ZeroRTT {
		// Requests need their connection to tell whether they are early.
		adapter.EarlyData = earlyData
		s.srv.ConnContext = func(ctx context.Context, c *quic.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		}
	}
	if o.QlogDir != "" {
		s.quic.Tracer = qlogTracer(o.QlogDir, o.Logger)
	}
	sock.limit.Store(int64(o.HandshakeRateLimit))
	sock.current.Store(s)
	return s
}

// Serve serves the connections sock hands to s until Shutdown, and returns
// nil then (it is an engine.Server).
func (s *Server) Serve() error {
	err := s.srv.ServeListener(view{s})
	if errors.Is(err, http.ErrServerClosed) || errors.Is(err, quic.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops taking new connections and tells the existing ones to
// finish (a GOAWAY frame, RFC 9114 §5.2), waits until their requests have
// completed or ctx is done, then closes what is left. If no newer Server
// replaced this one, the socket is closed too.
func (s *Server) Shutdown(ctx context.Context) error {
	s.once.Do(func() { close(s.done) })
	last := s.sock.current.CompareAndSwap(s, nil)
	err := s.srv.Shutdown(ctx)
	if last {
		s.sock.Close()
	}
	return err
}

// earlyData reports a request still inside 0-RTT: its connection has not
// completed the handshake. Once the client's Finished has arrived, a request
// can no longer be a replay (RFC 8470 §2), whatever packets carried it.
func earlyData(r *http.Request) <-chan struct{} {
	c, _ := r.Context().Value(connKey{}).(*quic.Conn)
	if c == nil {
		return nil
	}
	done := c.HandshakeComplete()
	select {
	case <-done:
		return nil
	default:
	}
	if !c.ConnectionState().Used0RTT {
		return nil
	}
	return done
}

// view is the http3.QUICListener of one Server: the connections the
// Socket's accept loop hands it.
type view struct{ s *Server }

func (v view) Accept(ctx context.Context) (*quic.Conn, error) {
	select {
	case c := <-v.s.conns:
		return c, nil
	case <-v.s.done:
		return nil, quic.ErrServerClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (v view) Addr() net.Addr { return v.s.sock.Addr() }

func (v view) Close() error {
	v.s.once.Do(func() { close(v.s.done) })
	return nil
}

// qlogTracer writes each connection's qlog to dir/<odcid>_server.sqlog.
func qlogTracer(dir string, log *slog.Logger) func(context.Context, bool, quic.ConnectionID) qlogwriter.Trace {
	return func(_ context.Context, isClient bool, id quic.ConnectionID) qlogwriter.Trace {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			log.Warn("qlog: cannot create directory", "dir", dir, "error", err)
			return nil
		}
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%s_server.sqlog", id)))
		if err != nil {
			log.Warn("qlog: cannot create file", "error", err)
			return nil
		}
		seq := qlogwriter.NewConnectionFileSeq(f, isClient, id)
		go seq.Run()
		return seq
	}
}

// Socket is the UDP socket the server runs on.
func (s *Server) Socket() *Socket { return s.sock }

// Addr is the server's bound UDP address.
func (s *Server) Addr() net.Addr { return s.sock.Addr() }
