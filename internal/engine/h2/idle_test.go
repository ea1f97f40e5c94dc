//go:build linux

package h2

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/penstock-dev/penstock/internal/epoll"
	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/testpki"
)

// parkSetup is how a parking test connects.
type parkSetup struct {
	name string
	tls  bool
	// prefix: the acceptor reads the client preface itself and hands it
	// over as Conn.Prefix, as the HTTP/1.1 engine does for h2c.
	prefix bool
	// split: the client's writes reach the socket in two halves 400 ms
	// apart, so that the server waits idle with part of a TLS record.
	split bool
}

var parkSetups = []parkSetup{
	{name: "tls", tls: true},
	{name: "h2c prior knowledge"},
	{name: "h2c with the preface read by the acceptor", prefix: true},
}

// parkedServer is a server with an IO of its own, its closed connections
// counted.
type parkedServer struct {
	*Server
	closed atomic.Int32
}

// serveParking starts a server whose idle connections park, and returns
// it with a connected client that has sent its preface and settings.
func serveParking(t *testing.T, setup parkSetup, o Options) (*parkedServer, *client) {
	t.Helper()
	eio, err := epoll.NewIO(1)
	if err != nil {
		t.Fatal(err)
	}
	o.IO = eio
	ps := &parkedServer{Server: NewServer(o, exchange.HandlerFunc(func(x *exchange.Exchange) {
		x.W.Header().Add("Content-Type", "text/plain")
		x.W.Write([]byte("ok " + x.Req.Path))
	}))}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var serverTLS, clientTLS *tls.Config
	if setup.tls {
		ca := testpki.NewCA(t, "park")
		serverTLS = &tls.Config{Certificates: []tls.Certificate{ca.Server(t, "127.0.0.1").Pair}, NextProtos: []string{"h2"}}
		clientTLS = &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1", NextProtos: []string{"h2"}}
	}
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			cn := Conn{NC: nc, Closed: func() { ps.closed.Add(1) }}
			if serverTLS != nil {
				tc := tls.Server(nc, serverTLS)
				if tc.Handshake() != nil {
					nc.Close()
					continue
				}
				st := tc.ConnectionState()
				cn.NC, cn.TLS = tc, &st
			}
			if setup.prefix {
				cn.Prefix = make([]byte, len(http2.ClientPreface))
				if _, err := io.ReadFull(cn.NC, cn.Prefix); err != nil {
					nc.Close()
					continue
				}
			}
			go ps.ServeConn(cn)
		}
	}()
	// Connections first, then the IO their registrations are in.
	t.Cleanup(func() { eio.Close() })
	t.Cleanup(ps.Close)
	t.Cleanup(func() { ln.Close() })

	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	var conn net.Conn = raw
	if setup.split {
		conn = &splitConn{Conn: raw}
	}
	if clientTLS != nil {
		tc := tls.Client(conn, clientTLS)
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		conn = tc
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	c := &client{t: t, conn: conn, fr: http2.NewFramer(conn, conn)}
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.henc = hpack.NewEncoder(&c.hb)
	io.WriteString(conn, http2.ClientPreface)
	c.fr.WriteSettings()
	return ps, c
}

// splitConn writes each write larger than 8 bytes in two halves with a
// pause between them, once armed.
type splitConn struct {
	net.Conn
	armed atomic.Bool
}

func (s *splitConn) Write(p []byte) (int, error) {
	if !s.armed.Load() || len(p) <= 8 {
		return s.Conn.Write(p)
	}
	n, err := s.Conn.Write(p[:len(p)/2])
	if err != nil {
		return n, err
	}
	time.Sleep(400 * time.Millisecond)
	m, err := s.Conn.Write(p[len(p)/2:])
	return n + m, err
}

// untilParked waits until the server's only connection is parked.
func untilParked(t *testing.T, s *parkedServer) *conn {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		var parked *conn
		for c := range s.conns {
			if c.pstate.Load() == psParked {
				parked = c
			}
		}
		n := len(s.conns)
		s.mu.Unlock()
		if n == 1 && parked != nil {
			return parked
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("the idle connection was not parked within 10s")
	return nil
}

// readEnd reads frames until the connection ends, and returns the GOAWAY
// among them (nil if none).
func readEnd(t *testing.T, c *client) *http2.GoAwayFrame {
	t.Helper()
	var g *http2.GoAwayFrame
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatalf("the connection did not end: %v", err)
				}
			}
			return g
		}
		if ga, ok := f.(*http2.GoAwayFrame); ok {
			g = &http2.GoAwayFrame{LastStreamID: ga.LastStreamID, ErrCode: ga.ErrCode}
		}
	}
}

// TestIdleConnectionParksAndResumes: an idle connection parks (no
// goroutine, no buffers, no framer), and what its client sends next (a
// request, a PING) is answered by a new goroutine; again and again.
func TestIdleConnectionParksAndResumes(t *testing.T) {
	for _, setup := range append(parkSetups, parkSetup{name: "tls, records arriving in halves", tls: true, split: true}) {
		t.Run(setup.name, func(t *testing.T) {
			s, c := serveParking(t, setup, Options{})
			for i := range 3 {
				id := uint32(2*i + 1)
				if i == 1 {
					if sc, ok := c.conn.(*tls.Conn); ok {
						if split, ok := sc.NetConn().(*splitConn); ok {
							split.armed.Store(true)
						}
					}
				}
				c.get(id, "/p")
				hdr, body, _ := c.response(id)
				if hdr[":status"] != "200" || body != "ok /p" {
					t.Fatalf("request %d: status %s, body %q", i, hdr[":status"], body)
				}
				pc := untilParked(t, s)
				pc.wmu.Lock()
				held := pc.bw != idleWriter || pc.fr != nil
				pc.wmu.Unlock()
				if held {
					t.Errorf("request %d: a parked connection holds its write buffer or framer", i)
				}
			}
			c.fr.WritePing(false, [8]byte{1, 2, 3})
			for {
				if p, ok := c.next().(*http2.PingFrame); ok {
					if !p.IsAck() || p.Data != [8]byte{1, 2, 3} {
						t.Fatalf("PING %v %v, want the ack of ours", p.IsAck(), p.Data)
					}
					break
				}
			}
			untilParked(t, s)
		})
	}
}

// TestParkedConnectionsEnd: a parked connection gets its GOAWAY and is
// closed at once by Shutdown and by the idle timeout, closed by Close, and
// forgotten when its client leaves; its close is reported each time.
func TestParkedConnectionsEnd(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		// end ends the connection parked with stream 1 served.
		end        func(t *testing.T, s *parkedServer, c *client)
		wantGoAway bool
	}{
		{name: "shutdown", wantGoAway: true, end: func(t *testing.T, s *parkedServer, c *client) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := s.Shutdown(ctx); err != nil {
				t.Errorf("Shutdown: %v", err)
			}
		}},
		{name: "idle timeout", o: Options{IdleTimeout: time.Second}, wantGoAway: true,
			end: func(t *testing.T, s *parkedServer, c *client) {}},
		{name: "close", end: func(t *testing.T, s *parkedServer, c *client) { s.Close() }},
		{name: "the client leaves", end: func(t *testing.T, s *parkedServer, c *client) { c.conn.Close() }},
	}
	for _, setup := range parkSetups {
		for _, tt := range tests {
			t.Run(setup.name+"/"+tt.name, func(t *testing.T) {
				s, c := serveParking(t, setup, tt.o)
				c.get(1, "/")
				c.response(1)
				untilParked(t, s)
				tt.end(t, s, c)
				if tt.name != "the client leaves" {
					g := readEnd(t, c)
					switch {
					case tt.wantGoAway && g == nil:
						t.Error("no GOAWAY before the connection ended")
					case tt.wantGoAway && (g.ErrCode != http2.ErrCodeNo || g.LastStreamID != 1):
						t.Errorf("GOAWAY %v last stream %d, want NO_ERROR and 1", g.ErrCode, g.LastStreamID)
					case !tt.wantGoAway && g != nil:
						t.Errorf("GOAWAY %v, want none", g.ErrCode)
					}
				}
				deadline := time.Now().Add(10 * time.Second)
				for s.closed.Load() == 0 && time.Now().Before(deadline) {
					time.Sleep(5 * time.Millisecond)
				}
				if n := s.closed.Load(); n != 1 {
					t.Fatalf("%d closes reported, want 1", n)
				}
				s.mu.Lock()
				left := len(s.conns)
				s.mu.Unlock()
				if left != 0 {
					t.Errorf("%d connections still tracked", left)
				}
			})
		}
	}
}
