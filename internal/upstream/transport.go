package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
)

type connectTimeoutKey struct{}

// withConnectTimeout returns a context under which net/http's dials to an
// endpoint give up after d (a route's timeouts.connect). Transports are per
// endpoint and shared by routes, so the timeout travels with the request.
func withConnectTimeout(ctx context.Context, d time.Duration) context.Context {
	if d <= 0 {
		return ctx
	}
	return context.WithValue(ctx, connectTimeoutKey{}, d)
}

// newTransport builds the net/http keep-alive transport for one endpoint
// (StdClient). One transport per endpoint makes the pool limits per
// endpoint and lets a unix socket endpoint dial its path whatever the URL
// says. A failure to connect is a KindConnect or KindConnectTimeout Error.
func newTransport(e *Endpoint, u *config.Upstream, tlsConf *tls.Config) *http.Transport {
	dialer := &net.Dialer{KeepAlive: 30 * time.Second}
	var protocols http.Protocols
	switch u.Protocol {
	case "h2c":
		protocols.SetUnencryptedHTTP2(true)
	case "h2":
		protocols.SetHTTP2(true)
	default:
		protocols.SetHTTP1(true)
	}
	t := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			if d, ok := ctx.Value(connectTimeoutKey{}).(time.Duration); ok {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, d)
				defer cancel()
			}
			c, err := dialer.DialContext(ctx, e.network, e.dialAddr)
			if err != nil {
				return nil, e.errorf(dialKind(err), fmt.Errorf("dial: %w", err))
			}
			return e.track(c), nil
		},
		Protocols:           &protocols,
		TLSClientConfig:     tlsConf,
		MaxIdleConns:        0,
		MaxIdleConnsPerHost: u.Pool.MaxIdlePerEndpoint,
		MaxConnsPerHost:     u.Pool.MaxPerEndpoint,
		IdleConnTimeout:     u.Pool.IdleTimeout.D(),
		// A proxy forwards the client's Accept-Encoding as is; transparent
		// decompression would change the bytes the client receives.
		DisableCompression: true,
		// Proxies are configured per upstream, never from the environment.
		Proxy: nil,
	}
	if u.Protocol == "h2" || u.Protocol == "h2c" {
		t.HTTP2 = &http.HTTP2Config{}
	}
	if tlsConf != nil && e.network == "unix" && tlsConf.ServerName == "" {
		t.TLSClientConfig = tlsConf.Clone()
		t.TLSClientConfig.ServerName = "localhost"
	}
	return t
}

func clientTLS(c *config.UpstreamTLS) (*tls.Config, error) {
	if c == nil {
		return nil, nil
	}
	conf := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         c.ServerName,
		InsecureSkipVerify: c.InsecureSkipVerify,
		ClientSessionCache: tls.NewLRUClientSessionCache(256),
	}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.ca_file: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.ca_file %s: no PEM certificates found", c.CAFile)
		}
		conf.RootCAs = roots
	}
	return conf, nil
}
