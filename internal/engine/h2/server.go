// Package h2 is penstock's own HTTP/2 server engine (RFC 9113).
//
// The native HTTP/1.1 engine (internal/engine/h1) accepts every TCP
// connection of a listener and hands over those that speak HTTP/2: TLS
// connections that negotiated "h2" by ALPN, and plain ones that opened with
// the h2c preface (prior knowledge). This package serves them through the
// same exchange contract as the HTTP/1.1 engine, so the route pipeline
// never sees which engine carried a request.
//
// Frames are read and written with golang.org/x/net/http2's Framer and
// header blocks coded with its hpack package; what is penstock's own is the
// server around them: one goroutine per busy connection reads frames (an
// idle one is parked in the epoll layer with no goroutine and no buffer,
// idle.go), each stream's handler runs on its own goroutine and writes its frames itself
// under the connection's write lock (no writer goroutine, no frame queue),
// stream state is pooled, and responses respect the client's flow-control
// windows with a bound on how long a response may wait for them. The
// protections the engine keeps (stream and header limits, rapid reset,
// CONTINUATION and control-frame floods, zero-window stalls) are listed in
// docs/operations.md with their limits and metrics.
package h2

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/penstock-dev/penstock/internal/engine"
	"github.com/penstock-dev/penstock/internal/epoll"
	"github.com/penstock-dev/penstock/internal/exchange"
)

// Options configure the engine. Zero values take the defaults named below.
type Options struct {
	// MaxConcurrentStreams bounds the streams one connection may have
	// open (SETTINGS_MAX_CONCURRENT_STREAMS), and so the handlers it can
	// keep busy: a stream counts until its handler has returned, even
	// when the client reset it. Default 250.
	MaxConcurrentStreams int
	// MaxHeaderBytes bounds a request's header list; it is advertised as
	// SETTINGS_MAX_HEADER_LIST_SIZE (plus the per-field overhead the
	// RFC counts). Default 64 KiB.
	MaxHeaderBytes int
	// IdleTimeout closes a connection with no stream open for this long
	// (GOAWAY NO_ERROR first). 0: never.
	IdleTimeout time.Duration
	// PrefaceTimeout bounds the wait for the client's preface and first
	// SETTINGS frame. Default 10 s.
	PrefaceTimeout time.Duration
	// SendTimeout resets a stream whose response made no progress for
	// this long because the client keeps its flow-control window closed
	// (NGINX's send_timeout), and closes a connection whose socket took
	// no bytes for as long. 0: never.
	SendTimeout time.Duration
	// MaxStalledStreams bounds the streams of all connections of the
	// server that may wait on a closed flow-control window at once; a
	// stream that would be one more is reset at once, as if its send
	// timeout had passed. Default 10,000.
	MaxStalledStreams int
	// IO, when set, holds idle connections with no goroutine and no
	// buffer (idle.go): the HTTP/1.1 engine passes its own. Its owner
	// closes it after the server has shut down. Nil: every connection
	// keeps its goroutine and buffers while idle.
	IO *epoll.IO
	// SendTimedOut, when set, is called for each stream reset by
	// SendTimeout or MaxStalledStreams.
	SendTimedOut func()
	// Calmed, when set, is called for each connection closed with GOAWAY
	// ENHANCE_YOUR_CALM (a rapid-reset flood).
	Calmed func()
	// MaxReceiveWindow is the largest flow-control window a connection
	// and its streams grow to for request bodies, following the
	// bandwidth-delay product (bdp.go); it bounds the request body bytes
	// a connection buffers. They start at 1 MiB (or this, if smaller).
	// Default 16 MiB.
	MaxReceiveWindow int
	// WindowGrown, when set, is called each time a connection's receive
	// window grows.
	WindowGrown func()
	// Logger receives protocol errors of clients at debug level.
	Logger *slog.Logger
}

// Defaults of Options.
const (
	DefaultMaxConcurrentStreams = 250
	DefaultMaxHeaderBytes       = 64 << 10
	DefaultPrefaceTimeout       = 10 * time.Second
	DefaultMaxStalledStreams    = 10000
	DefaultMaxReceiveWindow     = 16 << 20
)

// Flow-control windows the server grants clients for request bodies at
// first: a stream may have streamWindow bytes unread by its handler, a
// connection connWindow over all its streams, so a connection buffers at
// most its connection window of request bodies whatever its number of
// streams. Both grow with the bandwidth-delay product up to
// Options.MaxReceiveWindow (bdp.go).
const (
	streamWindow = 1 << 20
	connWindow   = 1 << 20
)

// Server serves the HTTP/2 connections handed to it.
type Server struct {
	o Options
	h exchange.Handler
	// maxHeaderList is the advertised SETTINGS_MAX_HEADER_LIST_SIZE.
	maxHeaderList uint32
	// maxRecvWindow is Options.MaxReceiveWindow, within the protocol's
	// bounds.
	maxRecvWindow int64
	// stalled counts streams waiting on a closed window (all connections).
	stalled atomic.Int64

	mu           sync.Mutex
	conns        map[*conn]struct{}
	shuttingDown bool
	allGone      chan struct{}
	// parker parks idle connections (idle.go); it runs while there are
	// connections.
	parker parker
}

// NewServer builds a server that hands requests to h.
func NewServer(o Options, h exchange.Handler) *Server {
	if o.MaxConcurrentStreams <= 0 {
		o.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	if o.MaxHeaderBytes <= 0 {
		o.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if o.PrefaceTimeout <= 0 {
		o.PrefaceTimeout = DefaultPrefaceTimeout
	}
	if o.MaxStalledStreams <= 0 {
		o.MaxStalledStreams = DefaultMaxStalledStreams
	}
	if o.MaxReceiveWindow <= 0 {
		o.MaxReceiveWindow = DefaultMaxReceiveWindow
	}
	return &Server{
		o: o,
		h: h,
		// RFC 9113 §6.5.2 counts 32 bytes of overhead per field; allow
		// for ten fields' worth on top of the bytes themselves.
		maxHeaderList: uint32(o.MaxHeaderBytes) + 320,
		maxRecvWindow: min(max(int64(o.MaxReceiveWindow), 65535), maxWindow),
		conns:         make(map[*conn]struct{}),
	}
}

func (s *Server) windowGrown() {
	if s.o.WindowGrown != nil {
		s.o.WindowGrown()
	}
}

// Conn is a connection handed to the server.
type Conn struct {
	// NC is the connection: a *tls.Conn whose handshake is complete, or
	// a plain TCP connection.
	NC net.Conn
	// Prefix holds bytes already read from NC (the h2c preface the
	// HTTP/1.1 engine recognised); they are read first.
	Prefix []byte
	// TLS is the connection's TLS state, nil on plain connections.
	TLS *tls.ConnectionState
	// Remote is the client's address.
	Remote netip.AddrPort
	// Closed, when set, is called once the connection has closed.
	Closed func()
	// Upgrade, when set, is the HTTP/1.1 request that switched the
	// connection to h2c; the 101 response has been sent.
	Upgrade *Upgrade
}

// Upgrade is an HTTP/1.1 request without a body that asked to switch to
// HTTP/2 over cleartext ("Upgrade: h2c", RFC 7540 §3.2). The engine takes
// its HTTP2-Settings as the client's first SETTINGS (acknowledged by the
// 101 itself) and answers it on stream 1, half-closed by the client.
type Upgrade struct {
	// Settings is the decoded HTTP2-Settings value: a SETTINGS payload.
	Settings []byte
	// Method, Authority (the Host field) and Path (with the query).
	Method, Authority, Path string
	// Fields are the request's other header fields, with lower-case
	// names, connection-specific ones left out.
	Fields []hpack.HeaderField
}

// ParseUpgradeSettings decodes an HTTP2-Settings field value (base64url,
// RFC 7540 §3.2.1) into a SETTINGS payload; false if it is not one, in
// which case the request is served over HTTP/1.1.
func ParseUpgradeSettings(v []byte) ([]byte, bool) {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(string(v), "="))
	if err != nil || len(b)%6 != 0 || len(b) > 6*64 {
		return nil, false
	}
	for i := 0; i < len(b); i += 6 {
		s := http2.Setting{ID: http2.SettingID(binary.BigEndian.Uint16(b[i:])), Val: binary.BigEndian.Uint32(b[i+2:])}
		if s.Valid() != nil {
			return nil, false
		}
	}
	return b, true
}

// ServeConn serves one connection until it closes, or until it is idle
// and parked (Options.IO): the connection then goes on by itself, on
// goroutines of its own, when its client sends again. cn.Closed reports
// its end either way.
func (s *Server) ServeConn(cn Conn) {
	if !s.accepting() {
		cn.NC.Close()
		if cn.Closed != nil {
			cn.Closed()
		}
		return
	}
	c := newConn(s, cn)
	if !s.track(c) {
		c.end()
		return
	}
	c.serve()
}

func (s *Server) accepting() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.shuttingDown
}

func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shuttingDown {
		return false
	}
	s.conns[c] = struct{}{}
	s.startParker()
	return true
}

func (s *Server) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	var gone chan struct{}
	if len(s.conns) == 0 && s.allGone != nil {
		gone, s.allGone = s.allGone, nil
	}
	s.mu.Unlock()
	if gone != nil {
		close(gone)
	}
}

// Shutdown stops taking connections and drains those it serves: each gets
// a GOAWAY naming the last stream it will process, those streams finish,
// and each connection closes once it has none left. When ctx is done,
// whatever is left is closed and ctx's error returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shuttingDown = true
	var gone chan struct{}
	if len(s.conns) > 0 {
		gone = make(chan struct{})
		s.allGone = gone
	}
	conns := s.list()
	s.mu.Unlock()
	for _, c := range conns {
		c.drain()
	}
	if gone == nil {
		return nil
	}
	select {
	case <-gone:
		return nil
	case <-ctx.Done():
		// In a binary upgrade, event streams may run on past the drain
		// timeout (engine.WithStreamDrain).
		if until, ok := engine.StreamDrain(ctx); ok && s.closeAllButStreams() {
			t := time.NewTimer(time.Until(until))
			select {
			case <-gone:
			case <-t.C:
			}
			t.Stop()
		}
		s.Close()
		return ctx.Err()
	}
}

// closeAllButStreams ends, at the drain timeout, every stream but the
// event streams: connections serving none are closed, on the others the
// remaining streams are reset. It reports whether any event stream is
// left.
func (s *Server) closeAllButStreams() bool {
	s.mu.Lock()
	conns := s.list()
	s.mu.Unlock()
	streams := false
	for _, c := range conns {
		if c.keepEventStreams() {
			streams = true
		} else {
			c.kill()
		}
	}
	return streams
}

// Close closes every connection at once; their handlers see their
// contexts cancelled and their writes fail.
func (s *Server) Close() {
	s.mu.Lock()
	s.shuttingDown = true
	conns := s.list()
	s.mu.Unlock()
	for _, c := range conns {
		c.kill()
	}
}

// list returns the connections; s.mu is held.
func (s *Server) list() []*conn {
	l := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		l = append(l, c)
	}
	return l
}

func (s *Server) debug(msg string, c *conn, args ...any) {
	if s.o.Logger != nil {
		s.o.Logger.Debug(msg, append([]any{"component", "http2", "remote", c.remote.String()}, args...)...)
	}
}

// dateCache is the Date field of responses, rendered once a second.
var dateCache atomic.Pointer[dateValue]

type dateValue struct {
	sec int64
	s   string
}

func httpDate(now time.Time) string {
	sec := now.Unix()
	if d := dateCache.Load(); d != nil && d.sec == sec {
		return d.s
	}
	d := &dateValue{sec, now.UTC().Format("Mon, 02 Jan 2006 15:04:05 GMT")}
	dateCache.Store(d)
	return d.s
}
