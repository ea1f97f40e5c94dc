// Package h3 is penstock's HTTP/3 engine: it serves HTTP/3 (RFC 9114) over
// QUIC with quic-go, on a UDP socket bound to a TLS listener's address, and
// hands every request to the same stdhttp.Adapter, and so the same routes,
// as HTTP/1.1 and HTTP/2.
//
// A Socket owns the UDP socket, its QUIC transport and the accept loop; it
// outlives the Servers using it, as listener.Socket does for TCP: a reload
// that changes a listener's settings starts a new Server on the same Socket
// and drains the old one, so the port never stops answering and existing
// QUIC connections finish on the server that accepted them.
package h3

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
)

// Observer is told about the QUIC connections of one Socket, for metrics.
// Its methods are called concurrently.
type Observer interface {
	// ConnOpened is called when a connection is accepted.
	ConnOpened()
	// Handshake is called once per accepted connection: ok when its
	// handshake completed, false when it ended before.
	Handshake(ok bool)
	// ConnClosed is called when an accepted connection has ended, with its
	// final statistics.
	ConnClosed(stats quic.ConnectionStats)
	// Retry is called when a new connection attempt is asked to validate its
	// address first, because handshakes arrive faster than the limit.
	Retry()
}

// Socket is a bound UDP socket serving QUIC.
type Socket struct {
	udp *net.UDPConn
	tr  *quic.Transport
	ln  *quic.EarlyListener
	obs Observer

	current   atomic.Pointer[Server]
	closed    chan struct{}
	closeOnce sync.Once
	loopDone  chan struct{}

	// Handshake rate: handshakes counted in the current one-second window.
	limit  atomic.Int64
	window atomic.Int64
	count  atomic.Int64
}

// Listen binds a UDP socket at address (the TCP listener's bound address, so
// an ephemeral port is the same number on both) and starts accepting QUIC
// connections. Until a Server is installed with Serve, handshakes are
// refused. log receives the one line about kernel buffer limits.
func Listen(ctx context.Context, address string, obs Observer, log *slog.Logger) (*Socket, error) {
	lc := net.ListenConfig{Control: reusePort}
	pc, err := lc.ListenPacket(ctx, "udp", address)
	if err != nil {
		return nil, fmt.Errorf("listen udp %s: %w", address, err)
	}
	udp := pc.(*net.UDPConn)
	raiseBuffers(udp, log)
	if rc, err := udp.SyscallConn(); err == nil {
		if err := steer(rc); err != nil {
			// Served all the same; during this upgrade's drain some new
			// handshakes may reach the old process and be refused.
			log.Warn("HTTP/3: cannot steer packets between the old and the new process", "address", address, "error", err)
		}
	}
	s := &Socket{udp: udp, obs: obs, closed: make(chan struct{}), loopDone: make(chan struct{})}
	s.tr = &quic.Transport{
		Conn:                  udp,
		VerifySourceAddress:   s.verifySource,
		ConnectionIDGenerator: connIDs{},
	}
	// The transport-level configuration only dispatches to the current
	// Server's, so a reload changes TLS and QUIC settings without rebinding.
	tlsConf := &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			if srv := s.current.Load(); srv != nil {
				return srv.tls, nil
			}
			return nil, errNoServer
		},
	}
	quicConf := &quic.Config{
		GetConfigForClient: func(*quic.ClientInfo) (*quic.Config, error) {
			if srv := s.current.Load(); srv != nil {
				return srv.quic, nil
			}
			return nil, errNoServer
		},
	}
	s.ln, err = s.tr.ListenEarly(tlsConf, quicConf)
	if err != nil {
		s.tr.Close()
		udp.Close()
		return nil, fmt.Errorf("listen quic %s: %w", address, err)
	}
	go s.acceptLoop()
	return s, nil
}

var errNoServer = errors.New("h3: no server on this socket")

// Addr is the socket's bound UDP address.
func (s *Socket) Addr() net.Addr { return s.udp.LocalAddr() }

// Close closes the socket: every connection on it ends at once.
func (s *Socket) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.closed)
		s.ln.Close()
		err = s.tr.Close()
		s.udp.Close()
		<-s.loopDone
	})
	return err
}

// verifySource asks for a Retry (address validation, RFC 9000 §8.1.2) once
// more new connections arrive in the current second than the limit allows.
// A fixed one-second window is enough here: the point is to make a spoofed
// flood pay a round trip, not to shape legitimate traffic.
func (s *Socket) verifySource(net.Addr) bool {
	limit := s.limit.Load()
	if limit <= 0 {
		return false
	}
	now := time.Now().Unix()
	if w := s.window.Load(); w != now && s.window.CompareAndSwap(w, now) {
		s.count.Store(0)
	}
	if s.count.Add(1) <= limit {
		return false
	}
	if s.obs != nil {
		s.obs.Retry()
	}
	return true
}

func (s *Socket) acceptLoop() {
	defer close(s.loopDone)
	for {
		c, err := s.ln.Accept(context.Background())
		if err != nil {
			return
		}
		if s.obs != nil {
			s.obs.ConnOpened()
			go s.watch(c)
		}
		s.deliver(c)
	}
}

// watch reports c's handshake and, once it has ended, its statistics. The
// goroutine lives only as long as the handshake: an idle connection costs
// a context callback, not a goroutine stack.
func (s *Socket) watch(c *quic.Conn) {
	select {
	case <-c.HandshakeComplete():
		s.obs.Handshake(true)
	case <-c.Context().Done():
		s.obs.Handshake(false)
	}
	context.AfterFunc(c.Context(), func() { s.obs.ConnClosed(c.ConnectionStats()) })
}

// deliver hands c to the current Server, retrying if that Server started
// draining in the meantime; with none left, c is closed.
func (s *Socket) deliver(c *quic.Conn) {
	for {
		srv := s.current.Load()
		if srv == nil {
			c.CloseWithError(quic.ApplicationErrorCode(h3NoError), "")
			return
		}
		select {
		case srv.conns <- c:
			return
		case <-srv.done:
			if s.current.Load() == srv {
				c.CloseWithError(quic.ApplicationErrorCode(h3NoError), "")
				return
			}
		case <-s.closed:
			c.CloseWithError(quic.ApplicationErrorCode(h3NoError), "")
			return
		}
	}
}

// h3NoError is H3_NO_ERROR (RFC 9114 §8.1).
const h3NoError = 0x100
