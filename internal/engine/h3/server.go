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
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	_ "github.com/quic-go/quic-go/qlog" // registers the qlog event schema
	"github.com/quic-go/quic-go/qlogwriter"

	"github.com/penstock-dev/penstock/internal/engine"
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
	// SendTimeout resets a stream whose response made no progress for this
	// long (a client that keeps its flow-control window closed); 0 means
	// never. SendTimedOut, when set, counts such resets.
	SendTimeout  time.Duration
	SendTimedOut func()
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
	// live holds the connections this server serves, for Shutdown to close
	// the idle ones.
	live liveConns
}

// connKey is the request context key of the request's *liveConn.
type connKey struct{}

// NewServer builds a Server on sock with handler h and makes it the one new
// connections go to; the previous Server keeps its connections (drain it
// with Shutdown). Call Serve to serve them.
func NewServer(sock *Socket, o Options, h exchange.Handler) *Server {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	adapter := &stdhttp.Adapter{Handler: h, SendTimeout: o.SendTimeout, SendTimedOut: o.SendTimedOut}
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
			MaxHeaderBytes: o.MaxHeaderBytes,
			IdleTimeout:    o.IdleTimeout,
			Logger:         o.Logger,
		},
	}
	s.srv.Handler = &requests{next: adapter}
	adapter.EventStreams = countEventStreams
	s.srv.ConnContext = s.connContext
	if o.ZeroRTT {
		// Requests need their connection to tell whether they are early.
		adapter.EarlyData = earlyData
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
//
// quic-go leaves it to each client to close its connection once it has seen
// the GOAWAY, and a client that keeps an idle connection open (most do, for
// reuse) would hold Shutdown until ctx ends. So, as net/http does for idle
// HTTP/2 connections, Shutdown closes the idle connections itself
// (H3_NO_ERROR): at once those idle for idleSettle already, the others once
// they have been.
//
// In a binary upgrade (engine.WithStreamDrain), the connections serving an
// event stream outlive ctx: when ctx is done the others are closed, and
// these run on until their streams end or the streams' limit. (Other
// requests on such a connection run on with it: a QUIC connection cannot
// be closed for some of its streams only, and the requests of a client
// that keeps an event stream open are few.)
func (s *Server) Shutdown(ctx context.Context) error {
	s.once.Do(func() { close(s.done) })
	last := s.sock.current.CompareAndSwap(s, nil)
	var (
		err   error
		cut   bool
		done  = make(chan struct{})
		srvCx = ctx
		// cutAt is ctx's end when event streams may outlive it.
		cutAt <-chan struct{}
	)
	if until, ok := engine.StreamDrain(ctx); ok {
		var cancel context.CancelFunc
		srvCx, cancel = context.WithDeadline(context.Background(), until)
		defer cancel()
		cutAt = ctx.Done()
	}
	go func() {
		defer close(done)
		err = s.srv.Shutdown(srvCx)
	}()
	// http3.Server.Shutdown sends the GOAWAY frames first; closing an idle
	// connection before its GOAWAY is out would leave the client guessing
	// whether to retry (RFC 9114 §5.2), so give it a moment.
	wait := time.NewTimer(goawayLead)
	defer wait.Stop()
	for {
		select {
		case <-done:
			if last {
				s.sock.Close()
			}
			if err == nil && cut {
				err = ctx.Err()
			}
			return err
		case <-cutAt:
			cut = s.live.closeAllButStreams() > 0
			cutAt = nil
		case <-wait.C:
			s.live.closeIdle(time.Now().Add(-idleSettle).UnixNano())
			wait.Reset(goawayLead)
		}
	}
}

// goawayLead is how long Shutdown lets the GOAWAY frames go out before it
// closes idle connections, and how often it looks again: far more than
// writing a frame to a socket takes, far less than any drain timeout.
const goawayLead = 50 * time.Millisecond

// idleSettle is how long a connection must have had no request in flight
// before a draining server closes it. A handler's return does not mean the
// client has its response: the last stream frames may still be unsent or
// lost and due for retransmission, and a CONNECTION_CLOSE discards them. A
// second covers several round trips and loss recoveries on real paths.
const idleSettle = time.Second

// connContext registers each new connection (once per connection, not per
// request) and hands its entry to the connection's requests.
func (s *Server) connContext(ctx context.Context, c *quic.Conn) context.Context {
	lc := &liveConn{conn: c}
	lc.lastEnd.Store(time.Now().UnixNano())
	s.live.add(lc)
	context.AfterFunc(c.Context(), func() { s.live.remove(lc) })
	return context.WithValue(ctx, connKey{}, lc)
}

// requests counts the requests in flight per connection, so that a draining
// server can tell the idle connections.
type requests struct {
	next http.Handler
}

func (h *requests) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	lc, _ := r.Context().Value(connKey{}).(*liveConn)
	if lc == nil {
		h.next.ServeHTTP(w, r)
		return
	}
	lc.active.Add(1)
	defer func() {
		lc.lastEnd.Store(time.Now().UnixNano())
		lc.active.Add(-1)
	}()
	h.next.ServeHTTP(w, r)
}

// liveConn is one served connection, its requests in flight, its event
// streams among them, and when the last request ended (Unix nanoseconds).
type liveConn struct {
	conn    *quic.Conn
	active  atomic.Int64
	events  atomic.Int64
	lastEnd atomic.Int64
}

// countEventStreams is the adapter's EventStreams hook: the event streams
// of each connection, for Shutdown in a binary upgrade.
func countEventStreams(r *http.Request, delta int) {
	if lc, _ := r.Context().Value(connKey{}).(*liveConn); lc != nil {
		lc.events.Add(int64(delta))
	}
}

// liveConns is the set of a server's connections, changed once per
// connection opened or closed.
type liveConns struct {
	mu sync.Mutex
	m  map[*liveConn]struct{}
}

func (l *liveConns) add(lc *liveConn) {
	l.mu.Lock()
	if l.m == nil {
		l.m = make(map[*liveConn]struct{})
	}
	l.m[lc] = struct{}{}
	l.mu.Unlock()
}

func (l *liveConns) remove(lc *liveConn) {
	l.mu.Lock()
	delete(l.m, lc)
	l.mu.Unlock()
}

// closeIdle closes the connections with no request in flight since before
// idleBefore (Unix nanoseconds).
func (l *liveConns) closeIdle(idleBefore int64) {
	l.mu.Lock()
	var idle []*liveConn
	for lc := range l.m {
		if lc.active.Load() == 0 && lc.lastEnd.Load() <= idleBefore {
			idle = append(idle, lc)
		}
	}
	l.mu.Unlock()
	for _, lc := range idle {
		lc.conn.CloseWithError(quic.ApplicationErrorCode(http3.ErrCodeNoError), "")
	}
}

// closeAllButStreams closes the connections serving no event stream,
// whatever requests they have in flight (the drain timeout has come), and
// returns how many of those had requests in flight.
func (l *liveConns) closeAllButStreams() int {
	l.mu.Lock()
	var cut []*liveConn
	for lc := range l.m {
		if lc.events.Load() == 0 {
			cut = append(cut, lc)
		}
	}
	l.mu.Unlock()
	busy := 0
	for _, lc := range cut {
		if lc.active.Load() > 0 {
			busy++
		}
		lc.conn.CloseWithError(quic.ApplicationErrorCode(http3.ErrCodeNoError), "")
	}
	return busy
}

// earlyData reports a request still inside 0-RTT: its connection has not
// completed the handshake. Once the client's Finished has arrived, a request
// can no longer be a replay (RFC 8470 §2), whatever packets carried it.
func earlyData(r *http.Request) <-chan struct{} {
	lc, _ := r.Context().Value(connKey{}).(*liveConn)
	if lc == nil {
		return nil
	}
	c := lc.conn
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
