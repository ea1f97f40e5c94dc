package loadtest

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// HTTP/3 by quic-go, on QUIC connections this package dials itself. QUIC
// has no separate TCP connect: the whole QUIC handshake (which includes TLS
// 1.3) is recorded as the TLS phase.

type h3Dialer struct {
	tr      *http3.Transport
	timeout time.Duration
}

func newH3Dialer(timeout time.Duration) *h3Dialer {
	return &h3Dialer{tr: &http3.Transport{DisableCompression: true}, timeout: timeout}
}

func (d *h3Dialer) dial(ctx context.Context, o *origin, ct *connTimes) (session, error) {
	cfg := o.tls.Clone()
	cfg.NextProtos = []string{http3.NextProtoH3}
	t0 := time.Now()
	qc, err := quic.DialAddr(ctx, o.addr, cfg, &quic.Config{
		HandshakeIdleTimeout: d.timeout,
		MaxIdleTimeout:       max(30*time.Second, 2*d.timeout),
	})
	if err != nil {
		if classify(err) == errTimeout {
			return nil, err
		}
		return nil, &kindError{errTLS, err}
	}
	ct.tls = time.Since(t0)
	return &h3Conn{qc: qc, cc: d.tr.NewClientConn(qc)}, nil
}

type h3Conn struct {
	qc *quic.Conn
	cc *http3.ClientConn
	// goingAway is set once a request was refused after the server's
	// GOAWAY (quic-go closes the connection only when its last request
	// ends).
	goingAway atomic.Bool
}

func (h *h3Conn) usable() bool { return h.qc.Context().Err() == nil && !h.goingAway.Load() }
func (h *h3Conn) close()       { _ = h.qc.CloseWithError(0, "") }

// goAwayText is the text of quic-go's error for a request opened after a
// GOAWAY (http3.errGoAway, which it does not export).
const goAwayText = "connection in graceful shutdown"

func (h *h3Conn) roundTrip(t *target, start time.Time, timeout time.Duration, out *outcome) error {
	err := roundTripHTTP(h.cc, t, start, timeout, out)
	if err == nil {
		return nil
	}
	// Refused after a GOAWAY, or rejected by a server that had sent one
	// as the request crossed it (H3_REQUEST_REJECTED: not processed, safe
	// to send again, RFC 9114 §4.1.1): a new connection takes it.
	var se *quic.StreamError
	if err.Error() == goAwayText || errors.As(err, &se) && se.ErrorCode == quic.StreamErrorCode(http3.ErrCodeRequestRejected) {
		h.goingAway.Store(true)
		return &notSentError{err}
	}
	return err
}
