package upstream

import (
	"context"
	"crypto/tls"
	"fmt"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/penstock-dev/penstock/internal/config"
)

// newH3Transport builds the HTTP/3 transport for one endpoint (protocol:
// h3). One QUIC connection carries every request to the endpoint, so
// pool.max_per_endpoint and max_idle_per_endpoint do not apply; the
// connection closes after pool.idle_timeout without traffic. A failed QUIC
// handshake is a KindConnect Error, like a refused TCP connection: passive
// health counts it and the forwarder tries another endpoint.
func newH3Transport(e *Endpoint, u *config.Upstream, tlsConf *tls.Config) *http3.Transport {
	return &http3.Transport{
		TLSClientConfig: tlsConf,
		QUICConfig: &quic.Config{
			MaxIdleTimeout: u.Pool.IdleTimeout.D(),
			// Keep the connection (and its NAT binding) alive while idle
			// requests are possible; quic-go caps it at half the idle
			// timeout.
			KeepAlivePeriod: 15 * time.Second,
		},
		// A proxy passes the client's Accept-Encoding on as is.
		DisableCompression: true,
		Dial: func(ctx context.Context, _ string, tc *tls.Config, qc *quic.Config) (*quic.Conn, error) {
			if d, ok := ctx.Value(connectTimeoutKey{}).(time.Duration); ok {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, d)
				defer cancel()
			}
			c, err := quic.DialAddrEarly(ctx, e.dialAddr, tc, qc)
			if err != nil {
				return nil, e.errorf(dialKind(err), fmt.Errorf("quic handshake: %w", err))
			}
			return c, nil
		},
	}
}
