package server

import (
	"context"
	"crypto/tls"
	"net"
	"slices"

	"github.com/quic-go/quic-go"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/engine"
	"github.com/penstock-dev/penstock/internal/engine/h3"
	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/metrics"
)

// serveH3 builds the HTTP/3 engine of lc when its protocols list "h3": on
// the UDP socket its previous engine used when the address is unchanged (a
// reload), else on a new socket bound at the TCP listener's address. It
// returns nil when the listener does not serve HTTP/3. The engine is started
// and drained like the others (engine.Server).
func (s *Server) serveH3(lc *config.Listener, tcpAddr net.Addr, conf *tls.Config, h exchange.Handler) (*h3.Server, error) {
	if conf == nil || !slices.Contains(lc.Protocols, config.ProtocolH3) {
		return nil, nil
	}
	var sock *h3.Socket
	if prev := s.listeners[lc.Name]; prev != nil && prev.h3 != nil && prev.h3.Addr().String() == tcpAddr.String() {
		sock = prev.h3.Socket()
	} else {
		var err error
		sock, err = h3.Listen(context.Background(), tcpAddr.String(), quicObserver{s.tel.Metrics, lc.Name}, s.log)
		if err != nil {
			return nil, err
		}
		s.log.Info("listening", "listener", lc.Name, "address", sock.Addr().String(), "scheme", "https", "protocols", []string{config.ProtocolH3})
	}
	o := h3.Options{
		TLS:                conf,
		MaxIdleTimeout:     lc.HTTP3.MaxIdleTimeout.D(),
		IdleTimeout:        lc.Limits.IdleTimeout.D(),
		MaxIncomingStreams: lc.HTTP3.MaxIncomingStreams,
		MaxHeaderBytes:     int(lc.Limits.MaxHeaderBytes.Int64()),
		ZeroRTT:            lc.HTTP3.ZeroRTT,
		HandshakeRateLimit: lc.HTTP3.HandshakeRateLimit,
		QlogDir:            lc.HTTP3.QlogDir,
		SendTimeout:        lc.Limits.SendTimeout.D(),
		SendTimedOut:       func() { s.tel.Metrics.SendTimeout(lc.Name) },
		Logger:             s.log,
	}
	return h3.NewServer(sock, o, h), nil
}

var _ engine.Server = (*h3.Server)(nil)

// quicObserver records one listener's QUIC connections in the metrics.
type quicObserver struct {
	m        *metrics.Metrics
	listener string
}

func (o quicObserver) ConnOpened()       { o.m.ConnOpened(o.listener, "h3") }
func (o quicObserver) Handshake(ok bool) { o.m.QUICHandshake(o.listener, ok) }
func (o quicObserver) Retry()            { o.m.QUICRetry(o.listener) }
func (o quicObserver) ConnClosed(s quic.ConnectionStats) {
	o.m.ConnClosed(o.listener, "h3")
	o.m.QUICConnClosed(o.listener, s.SmoothedRTT, s.PacketsSent, s.PacketsLost)
}
