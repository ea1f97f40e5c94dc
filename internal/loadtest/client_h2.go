package loadtest

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"time"

	"golang.org/x/net/http2"
)

// HTTP/2 over TLS (ALPN h2) and cleartext with prior knowledge (h2c), by
// golang.org/x/net/http2 on connections this package dials itself, so that
// it controls how many there are and times their phases.

type h2Dialer struct {
	tr *http2.Transport
}

func newH2Dialer() *h2Dialer {
	// StrictMaxConcurrentStreams: when --streams exceeds the server's
	// SETTINGS_MAX_CONCURRENT_STREAMS, requests wait for a free stream (the
	// wait counts in their latency) instead of the connection being
	// reported unusable, which would make this package dial more.
	return &h2Dialer{tr: &http2.Transport{AllowHTTP: true, DisableCompression: true, StrictMaxConcurrentStreams: true}}
}

func (d *h2Dialer) dial(ctx context.Context, o *origin, ct *connTimes) (session, error) {
	c, err := dialStream(ctx, o, "h2", ct)
	if err != nil {
		return nil, err
	}
	cc, err := d.tr.NewClientConn(c)
	if err != nil {
		c.Close()
		return nil, &kindError{errProtocol, err}
	}
	return &h2Conn{cc: cc, c: c}, nil
}

type h2Conn struct {
	cc *http2.ClientConn
	c  net.Conn
}

func (h *h2Conn) usable() bool { return h.cc.CanTakeNewRequest() }
func (h *h2Conn) close()       { h.cc.Close() }

func (h *h2Conn) roundTrip(t *target, start time.Time, timeout time.Duration, out *outcome) error {
	return roundTripHTTP(h.cc, t, start, timeout, out)
}

// roundTripHTTP sends t's request on an HTTP/2 or HTTP/3 connection and
// drains the response body.
func roundTripHTTP(rt http.RoundTripper, t *target, start time.Time, timeout time.Duration, out *outcome) error {
	ctx, cancel := context.WithDeadline(context.Background(), start.Add(timeout))
	defer cancel()
	req := &http.Request{
		Method:     t.method,
		URL:        t.url,
		Proto:      "HTTP/2.0",
		ProtoMajor: 2,
		Header:     t.header,
		Host:       t.url.Host,
	}
	if h := t.header.Get("Host"); h != "" {
		req.Host = h
	}
	if len(t.body) > 0 {
		req.Body = io.NopCloser(bytes.NewReader(t.body))
		req.ContentLength = int64(len(t.body))
	}
	req = req.WithContext(ctx)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return err
	}
	out.firstByte = time.Now()
	out.status = resp.StatusCode
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	out.bytes = n
	return err
}
