package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/quic-go/quic-go"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/engine/h3"
	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/metrics"
)

// serveH3 starts HTTP/3 for lc when its protocols list "h3": on the UDP
// socket its previous server used when the address is unchanged (a reload),
// else on a new socket bound at the TCP listener's address. It returns nil
// when the listener does not serve HTTP/3.
func (g *Gateway) serveH3(lc *config.Listener, tcpAddr net.Addr, conf *tls.Config, h exchange.Handler) (*h3.Server, error) {
	if conf == nil || !slices.Contains(lc.Protocols, config.ProtocolH3) {
		return nil, nil
	}
	var sock *h3.Socket
	if prev := g.listeners[lc.Name]; prev != nil && prev.h3 != nil && prev.h3.Addr().String() == tcpAddr.String() {
		sock = prev.h3.Socket()
	} else {
		var err error
		sock, err = h3.Listen(context.Background(), tcpAddr.String(), quicObserver{g.obs.metrics, lc.Name}, g.log)
		if err != nil {
			return nil, err
		}
		// The listener's one "listening" line (serve) names h3 among
		// its protocols; the UDP socket shares its address.
		g.log.Debug("HTTP/3 socket bound", "listener", lc.Name, "address", sock.Addr().String())
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
		Logger:             g.log,
	}
	return h3.Serve(sock, o, h), nil
}

// shutdown drains l's servers: the TCP one and, if any, the HTTP/3 one
// (GOAWAY, then in-flight requests finish until ctx is done), side by side.
// The HTTP/3 server's UDP socket is closed unless a newer server (a reload)
// took it over; the TCP socket is the caller's.
func (l *runningListener) shutdown(ctx context.Context) error {
	if l.h3 == nil {
		return l.srv.Shutdown(ctx)
	}
	h3done := make(chan error, 1)
	go func() { h3done <- l.h3.Shutdown(ctx) }()
	err := l.srv.Shutdown(ctx)
	return errors.Join(err, <-h3done)
}

// altSvc is a listener's precomputed Alt-Svc advertisement (RFC 7838) of
// its HTTP/3 endpoint, added to HTTP/1.1 and HTTP/2 responses.
type altSvc struct {
	value   string
	exclude []string
}

// newAltSvc returns lc's advertisement, or nil when lc serves no HTTP/3 or
// advertises none. bound is the TCP listener's address, whose port the UDP
// socket shares.
func newAltSvc(lc *config.Listener, bound net.Addr) *altSvc {
	if lc.TLS == nil || !slices.Contains(lc.Protocols, config.ProtocolH3) || (lc.HTTP3.AltSvc != nil && !*lc.HTTP3.AltSvc) {
		return nil
	}
	port := lc.HTTP3.AltSvcPort
	if port == 0 {
		if ta, ok := bound.(*net.TCPAddr); ok {
			port = ta.Port
		}
	}
	maxAge := int64(lc.HTTP3.AltSvcMaxAge.D().Seconds())
	if lc.HTTP3.AltSvcMaxAge == 0 {
		maxAge = int64(config.DefaultAltSvcMaxAge.D().Seconds())
	}
	return &altSvc{
		value:   `h3=":` + strconv.Itoa(port) + `"; ma=` + strconv.FormatInt(maxAge, 10),
		exclude: lc.HTTP3.AltSvcExcludeHosts,
	}
}

// add sets the Alt-Svc header on x's response unless x already speaks
// HTTP/3 or its host is excluded. It allocates nothing.
func (a *altSvc) add(x *exchange.Exchange) {
	if x.Req.Proto >= exchange.HTTP3 {
		return
	}
	if len(a.exclude) > 0 {
		host := x.Req.Host
		if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.HasSuffix(host, "]") {
			host = host[:i]
		}
		for _, e := range a.exclude {
			if exchange.EqualFold(host, e) {
				return
			}
		}
	}
	x.W.Header().Set("Alt-Svc", a.value)
}

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
