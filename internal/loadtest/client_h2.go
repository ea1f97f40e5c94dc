package loadtest

import (
	"bytes"
	"context"
	"errors"
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
	if err := awaitSettings(ctx, cc); err != nil {
		cc.Close()
		return nil, err
	}
	return &h2Conn{cc: cc, c: c}, nil
}

// awaitSettings waits for the server's first SETTINGS frame, which every
// server sends at once (RFC 9113 §3.4). Until it arrives the client assumes
// 100 concurrent streams; a server that allows fewer refuses the extra
// streams of the first burst (RST_STREAM REFUSED_STREAM), errors that come
// from this race and not from the server under test. golang.org/x/net/http2
// reports the frame's arrival only through State, hence the short poll; it
// ends with the dial's own deadline.
func awaitSettings(ctx context.Context, cc *http2.ClientConn) error {
	for wait := 50 * time.Microsecond; cc.State().MaxConcurrentStreams == 0; wait = min(2*wait, 5*time.Millisecond) {
		if cc.State().Closed {
			return &kindError{errProtocol, errors.New("connection closed before the server's SETTINGS")}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
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
