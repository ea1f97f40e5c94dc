package probe

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"
)

// probeTCP connects, optionally over TLS, and plays the module's
// query_response dialogue: send a line, expect a line matching a regular
// expression, or upgrade to TLS in the middle (STARTTLS, RFC 3207).
func (p *Prober) probeTCP(ctx context.Context, target string, m *Module, r *Result) error {
	tm := &m.TCP
	conn, host, err := p.connect(ctx, target, tm.PreferredIPProtocol, tm.IPProtocolFallback, tm.SourceIPAddress, r)
	if err != nil {
		return err
	}
	defer conn.Close()
	defer bindDeadline(ctx, conn)()
	if tm.TLS {
		if conn, err = p.handshake(ctx, conn, host, &tm.TLSConfig, r); err != nil {
			return err
		}
	}
	start := time.Now()
	defer func() { r.Phases.Request = Seconds(time.Since(start)) }()
	// Expected lines are short (banners, status lines): a small buffer
	// keeps an idle probe small; a longer line is still read whole.
	rd := bufio.NewReaderSize(conn, 256)
	for i, q := range tm.QueryResponse {
		if q.Expect.Regexp != nil {
			read := false
			for {
				line, err := rd.ReadString('\n')
				if line != "" && q.Expect.MatchString(trimEOL(line)) {
					break
				}
				read = read || line != ""
				if err != nil {
					// Lines came but none matched: the answer is wrong,
					// whether the peer then closed or went quiet.
					r.FailedDueToRegex = true
					if r.Reason = classify(err, phaseExchange); read {
						r.Reason = ReasonExpectMismatch
					}
					return fmt.Errorf("query_response[%d]: no line matched %q: %w", i, q.Expect, err)
				}
			}
		}
		if q.Send != "" {
			if _, err := conn.Write([]byte(q.Send + "\n")); err != nil {
				return r.fail(fmt.Errorf("query_response[%d]: send: %w", i, err), phaseExchange)
			}
		}
		if q.StartTLS {
			if rd.Buffered() > 0 {
				return r.failWith(ReasonTLSHandshake, "query_response[%d]: data after the STARTTLS answer (possible injection)", i)
			}
			tc, err := p.handshake(ctx, conn, host, &tm.TLSConfig, r)
			if err != nil {
				return err
			}
			conn, rd = tc, bufio.NewReaderSize(tc, 256)
		}
	}
	return nil
}

// probeTLS connects and completes a TLS handshake only (penstock's
// addition: blackbox_exporter spells it tcp with tls: true).
func (p *Prober) probeTLS(ctx context.Context, target string, m *Module, r *Result) error {
	tm := &m.TCP
	conn, host, err := p.connect(ctx, target, tm.PreferredIPProtocol, tm.IPProtocolFallback, tm.SourceIPAddress, r)
	if err != nil {
		return err
	}
	defer conn.Close()
	defer bindDeadline(ctx, conn)()
	tc, err := p.handshake(ctx, conn, host, &tm.TLSConfig, r)
	if err != nil {
		return err
	}
	return tc.Close()
}

// connect resolves target (host:port) and connects, recording the phases.
func (p *Prober) connect(ctx context.Context, target, preferred string, fallback *bool, source string, r *Result) (net.Conn, string, error) {
	host, port, err := splitHostPort(target, "")
	if err != nil {
		return nil, "", r.failWith(ReasonOther, "%v", err)
	}
	ip, err := p.resolve(ctx, host, preferred, fallback, r)
	if err != nil {
		return nil, "", err
	}
	d := net.Dialer{}
	if source != "" {
		sip := net.ParseIP(source)
		if sip == nil {
			return nil, "", r.failWith(ReasonOther, "source_ip_address %q: not an IP address", source)
		}
		d.LocalAddr = &net.TCPAddr{IP: sip}
	}
	start := time.Now()
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ip.String(), port))
	r.Phases.Connect = Seconds(time.Since(start))
	if err != nil {
		return nil, "", r.fail(err, phaseConnect)
	}
	return conn, host, nil
}

// handshake runs a TLS client handshake over conn and records its facts.
func (p *Prober) handshake(ctx context.Context, conn net.Conn, host string, c *TLSConfig, r *Result) (*tls.Conn, error) {
	cfg, err := c.clientTLS(host, p.Sessions)
	if err != nil {
		return nil, r.failWith(ReasonOther, "%v", err)
	}
	start := time.Now()
	tc := tls.Client(conn, cfg)
	err = tc.HandshakeContext(ctx)
	r.Phases.TLS += Seconds(time.Since(start))
	if err != nil {
		return nil, r.fail(err, phaseTLS)
	}
	r.TLS = tlsFacts(tc.ConnectionState())
	return tc, nil
}

func trimEOL(s string) string {
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == '\r') {
		s = s[:len(s)-1]
	}
	return s
}

// bindDeadline makes conn's reads and writes fail at ctx's deadline or as
// soon as ctx is cancelled (a scanner stopping), whichever comes first.
// Call the returned function when done with conn.
func bindDeadline(ctx context.Context, conn interface{ SetDeadline(time.Time) error }) func() bool {
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	return context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
}
