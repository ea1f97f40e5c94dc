package probe

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// HTTPFacts of the probe live in result.go; this file is the http prober.

// maxRedirects is how many redirects a probe follows (net/http's limit).
const maxRedirects = 10

// httpTimer gathers the phase timings of every hop of one probe from one
// httptrace.ClientTrace; a probe that follows redirects adds the hops up.
type httpTimer struct {
	mu                                  sync.Mutex
	connectStart, tlsStart, wrote, sent time.Time
	firstByte                           time.Time
	connect, tls, write, wait           time.Duration
	state                               *tls.ConnectionState
}

func (t *httpTimer) trace() *httptrace.ClientTrace {
	return &httptrace.ClientTrace{
		GetConn:      func(string) { t.set(&t.sent, time.Now()) },
		ConnectStart: func(string, string) { t.set(&t.connectStart, time.Now()) },
		ConnectDone: func(string, string, error) {
			t.mu.Lock()
			t.connect += time.Since(t.connectStart)
			t.mu.Unlock()
		},
		TLSHandshakeStart: func() { t.set(&t.tlsStart, time.Now()) },
		TLSHandshakeDone: func(cs tls.ConnectionState, err error) {
			t.mu.Lock()
			t.tls += time.Since(t.tlsStart)
			if err == nil {
				t.state = &cs
			}
			t.mu.Unlock()
		},
		GotConn: func(httptrace.GotConnInfo) { t.set(&t.wrote, time.Now()) },
		WroteRequest: func(httptrace.WroteRequestInfo) {
			t.mu.Lock()
			now := time.Now()
			t.write += now.Sub(t.wrote)
			t.wrote = now
			t.mu.Unlock()
		},
		GotFirstResponseByte: func() {
			t.mu.Lock()
			t.firstByte = time.Now()
			t.wait += t.firstByte.Sub(t.wrote)
			t.mu.Unlock()
		},
	}
}

func (t *httpTimer) set(p *time.Time, v time.Time) {
	t.mu.Lock()
	*p = v
	t.mu.Unlock()
}

func (p *Prober) probeHTTP(ctx context.Context, target string, m *Module, r *Result) error {
	hm := &m.HTTP
	if !strings.Contains(target, "://") {
		target = "http://" + target
	}
	u, err := url.Parse(target)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return r.failWith(ReasonOther, "target %q: want an http or https URL", target)
	}
	host := u.Hostname()
	ip, err := p.resolve(ctx, host, hm.PreferredIPProtocol, hm.IPProtocolFallback, r)
	if err != nil {
		return err
	}
	tlsCfg, err := hm.TLSConfig.clientTLS(host, p.Sessions)
	if err != nil {
		return r.failWith(ReasonOther, "%v", err)
	}
	method := hm.Method
	if method == "" {
		method = http.MethodGet
	}
	var body io.Reader
	if hm.Body != "" {
		body = strings.NewReader(hm.Body)
	}
	timer := &httpTimer{}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, timer.trace()), method, u.String(), body)
	if err != nil {
		return r.failWith(ReasonOther, "request: %v", err)
	}
	for k, v := range hm.Headers {
		if strings.EqualFold(k, "Host") {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	if hm.Compression == "gzip" {
		req.Header.Set("Accept-Encoding", "gzip")
	}
	follow := true
	if hm.NoFollowRedirects != nil {
		follow = !*hm.NoFollowRedirects
	}
	if hm.FollowRedirects != nil {
		follow = *hm.FollowRedirects
	}
	facts := &HTTPFacts{}
	r.HTTP = facts
	checkRedirect := func(_ *http.Request, via []*http.Request) error {
		facts.Redirects = len(via)
		if !follow {
			return http.ErrUseLastResponse
		}
		if len(via) >= maxRedirects {
			return fmt.Errorf("stopped after %d redirects", maxRedirects)
		}
		return nil
	}

	var rt http.RoundTripper
	var quicConn *quic.Conn
	var quicMu sync.Mutex
	if hm.EnableHTTP3 {
		if u.Scheme != "https" {
			return r.failWith(ReasonOther, "target %q: HTTP/3 needs an https URL", target)
		}
		h3 := &http3.Transport{
			TLSClientConfig: tlsCfg,
			Dial: func(ctx context.Context, addr string, tc *tls.Config, qc *quic.Config) (*quic.Conn, error) {
				start := time.Now()
				conn, err := quic.DialAddr(ctx, p.dialAddr(addr, host, ip), tc, qc)
				// QUIC joins the transport and TLS handshakes (RFC 9001
				// section 4): the whole handshake is the tls phase.
				timer.mu.Lock()
				timer.tls += time.Since(start)
				timer.mu.Unlock()
				if err == nil {
					quicMu.Lock()
					quicConn = conn
					quicMu.Unlock()
				}
				return conn, err
			},
		}
		defer h3.Close()
		rt = h3
	} else {
		if hm.EnableHTTP2 != nil && !*hm.EnableHTTP2 && len(tlsCfg.NextProtos) == 0 {
			// Offer http/1.1 by name, so that the ALPN result says what was
			// spoken.
			tlsCfg.NextProtos = []string{"http/1.1"}
		}
		dialer := &net.Dialer{}
		tr := &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return dialer.DialContext(ctx, network, p.dialAddr(addr, host, ip))
			},
			TLSClientConfig:    tlsCfg,
			DisableKeepAlives:  true,
			ForceAttemptHTTP2:  hm.EnableHTTP2 == nil || *hm.EnableHTTP2,
			DisableCompression: hm.Compression != "gzip",
		}
		defer tr.CloseIdleConnections()
		rt = tr
	}
	client := &http.Client{Transport: rt, CheckRedirect: checkRedirect}
	resp, err := client.Do(req)
	// The trace's callbacks may still run on the transport's goroutines
	// (HTTP/2 writes the request on its own): read their sums locked.
	timer.mu.Lock()
	tm := struct {
		connect, tls, write, wait time.Duration
		handshaken                bool
	}{timer.connect, timer.tls, timer.write, timer.wait, timer.state != nil}
	timer.mu.Unlock()
	r.Phases.Connect = Seconds(tm.connect)
	r.Phases.TLS = Seconds(tm.tls)
	quicMu.Lock()
	qc := quicConn
	quicMu.Unlock()
	if qc != nil {
		p.quicFacts(qc, r)
	}
	if err != nil {
		if hm.EnableHTTP3 && qc == nil && r.Reason == ReasonNone {
			// No QUIC connection came up: a certificate problem keeps its
			// own reason, anything else (no answer, version negotiation,
			// a transport error) is a failed QUIC handshake.
			switch reason := classify(err, phaseTLS); reason {
			case ReasonTimeout, ReasonConnectTimeout, ReasonTLSHandshake, ReasonOther, ReasonConnectionClosed:
				r.Reason = ReasonQUICHandshake
			default:
				r.Reason = reason
			}
		}
		ph := phaseExchange
		if tm.connect == 0 && !hm.EnableHTTP3 {
			ph = phaseConnect
		} else if (!tm.handshaken && u.Scheme == "https") || (hm.EnableHTTP3 && qc == nil) {
			ph = phaseTLS
		}
		return r.fail(err, ph)
	}
	defer resp.Body.Close()
	gotHeaders := time.Now()
	if tm.wait == 0 {
		// The HTTP/3 client does not report the first byte: the headers'
		// arrival stands for it.
		r.Phases.FirstByte = Seconds(gotHeaders.Sub(r.Start) - time.Duration(r.Phases.Resolve) - tm.tls)
	} else {
		r.Phases.FirstByte = Seconds(tm.wait)
	}
	r.Phases.Write = Seconds(tm.write)
	facts.StatusCode = resp.StatusCode
	facts.Version = resp.Proto
	facts.ContentLength = resp.ContentLength
	if lm, err := http.ParseTime(resp.Header.Get("Last-Modified")); err == nil {
		facts.LastModified = lm
	}
	if resp.TLS != nil {
		r.TLS = tlsFacts(*resp.TLS)
	}

	limit := int64(hm.BodySizeLimit)
	var reader io.Reader = resp.Body
	if limit > 0 {
		reader = io.LimitReader(resp.Body, limit+1)
	}
	bodyBytes, err := io.ReadAll(reader)
	r.Phases.Transfer = Seconds(time.Since(gotHeaders))
	facts.BodyLength = int64(len(bodyBytes))
	if err != nil {
		return r.fail(err, phaseExchange)
	}
	if limit > 0 && int64(len(bodyBytes)) > limit {
		return r.failWith(ReasonBodyMismatch, "body longer than body_size_limit (%d bytes)", limit)
	}
	return checkHTTP(hm, resp, bodyBytes, r)
}

// dialAddr sends a dial for the probed host to its resolved address; a
// redirect to another host is resolved by the dialer.
func (p *Prober) dialAddr(addr, host string, ip netip.Addr) string {
	h, port, err := net.SplitHostPort(addr)
	if err != nil || h != host {
		return addr
	}
	return net.JoinHostPort(ip.String(), port)
}

// checkHTTP applies a module's expectations to a response, in
// blackbox_exporter's order: status, version, TLS, headers, body.
func checkHTTP(hm *HTTPModule, resp *http.Response, body []byte, r *Result) error {
	if len(hm.ValidStatusCodes) == 0 {
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			return r.failWith(ReasonHTTPStatusMismatch, "status %d, want 2xx", resp.StatusCode)
		}
	} else if !containsInt(hm.ValidStatusCodes, resp.StatusCode) {
		return r.failWith(ReasonHTTPStatusMismatch, "status %d, want one of %v", resp.StatusCode, hm.ValidStatusCodes)
	}
	if len(hm.ValidHTTPVersions) > 0 {
		ok := false
		for _, v := range hm.ValidHTTPVersions {
			if v == resp.Proto || v+".0" == resp.Proto {
				ok = true
			}
		}
		if !ok {
			return r.failWith(ReasonHTTPVersionMismatch, "version %s, want one of %v", resp.Proto, hm.ValidHTTPVersions)
		}
	}
	if hm.FailIfSSL && resp.TLS != nil {
		return r.failWith(ReasonTLSForbidden, "the final response came over TLS (fail_if_ssl)")
	}
	if hm.FailIfNotSSL && resp.TLS == nil {
		return r.failWith(ReasonTLSRequired, "the final response came without TLS (fail_if_not_ssl)")
	}
	for _, hmatch := range hm.FailIfHeaderMatches {
		vals := resp.Header.Values(hmatch.Header)
		for _, v := range vals {
			if hmatch.Regexp.MatchString(v) {
				r.FailedDueToRegex = true
				return r.failWith(ReasonHeaderMismatch, "header %s: %q matches %q", hmatch.Header, v, hmatch.Regexp)
			}
		}
	}
	for _, hmatch := range hm.FailIfHeaderNotMatches {
		vals := resp.Header.Values(hmatch.Header)
		if len(vals) == 0 {
			if hmatch.AllowMissing {
				continue
			}
			r.FailedDueToRegex = true
			return r.failWith(ReasonHeaderMismatch, "header %s: missing", hmatch.Header)
		}
		matched := false
		for _, v := range vals {
			matched = matched || hmatch.Regexp.MatchString(v)
		}
		if !matched {
			r.FailedDueToRegex = true
			return r.failWith(ReasonHeaderMismatch, "header %s: no value matches %q", hmatch.Header, hmatch.Regexp)
		}
	}
	for _, re := range hm.FailIfBodyMatchesRegexp {
		if re.Match(body) {
			r.FailedDueToRegex = true
			return r.failWith(ReasonBodyMismatch, "body matches %q", re)
		}
	}
	for _, re := range hm.FailIfBodyNotMatchesRegexp {
		if !re.Match(body) {
			r.FailedDueToRegex = true
			return r.failWith(ReasonBodyMismatch, "body does not match %q", re)
		}
	}
	return nil
}

// quicFacts reads an HTTP/3 probe's QUIC connection.
func (p *Prober) quicFacts(c *quic.Conn, r *Result) {
	st := c.ConnectionState()
	stats := c.ConnectionStats()
	r.QUIC = &QUICFacts{
		HandshakeRTT: Seconds(stats.SmoothedRTT),
		Used0RTT:     st.Used0RTT,
		PacketsLost:  stats.PacketsLost,
		PacketsSent:  stats.PacketsSent,
		Version:      st.Version.String(),
	}
	r.TLS = tlsFacts(st.TLS)
}

func containsInt(list []int, v int) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
