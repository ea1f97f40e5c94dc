package loadtest

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"
)

// dialStream opens a TCP connection to o and, for https origins, runs the
// TLS handshake offering alpn; it records both phases in ct.
func dialStream(ctx context.Context, o *origin, alpn string, ct *connTimes) (net.Conn, error) {
	t0 := time.Now()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", o.addr)
	if err != nil {
		if classify(err) == errTimeout {
			return nil, err
		}
		return nil, &kindError{errConnect, err}
	}
	t1 := time.Now()
	ct.connect = t1.Sub(t0)
	if o.tls == nil {
		return c, nil
	}
	cfg := o.tls
	if alpn != "" {
		cfg = cfg.Clone()
		cfg.NextProtos = []string{alpn}
	}
	tc := tls.Client(c, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		if classify(err) == errTimeout {
			return nil, err
		}
		return nil, &kindError{errTLS, err}
	}
	// A server without ALPN speaks HTTP/1.1; HTTP/2 must be agreed to.
	if got := tc.ConnectionState().NegotiatedProtocol; got != alpn && (alpn == "h2" || got != "") {
		c.Close()
		return nil, &kindError{errTLS, fmt.Errorf("server did not agree to ALPN %q", alpn)}
	}
	ct.tls = time.Since(t1)
	return tc, nil
}

// Key exchange groups for --group.
var groups = map[string]tls.CurveID{
	"x25519":         tls.X25519,
	"p256":           tls.CurveP256,
	"x25519mlkem768": tls.X25519MLKEM768,
}

// tlsConfig is the base client configuration: no session resumption, so
// that every connection runs a full handshake.
func tlsConfig(insecure bool, group string) (*tls.Config, error) {
	c := &tls.Config{InsecureSkipVerify: insecure, MinVersion: tls.VersionTLS12}
	if group != "" {
		id, ok := groups[group]
		if !ok {
			return nil, fmt.Errorf("--group %q: want x25519, p256 or x25519mlkem768", group)
		}
		c.CurvePreferences = []tls.CurveID{id}
	}
	return c, nil
}
