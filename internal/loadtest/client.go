package loadtest

import (
	"context"
	"time"
)

// A session is one connection to an origin, as the protocol sees it.
// HTTP/1.1 sessions carry one request at a time; HTTP/2 and HTTP/3 sessions
// are shared by the workers of a slot, one stream each.
type session interface {
	// roundTrip sends t's request and reads the whole response within
	// timeout of start, filling out.
	roundTrip(t *target, start time.Time, timeout time.Duration, out *outcome) error
	// usable reports whether the session can take another request.
	usable() bool
	// close ends the connection at once.
	close()
}

// outcome is what a round trip learnt.
type outcome struct {
	status    int
	firstByte time.Time // first response byte (HTTP/1.1) or response head (HTTP/2, HTTP/3)
	bytes     int64     // response bytes read
}

// connTimes are a new connection's phases.
type connTimes struct {
	connect time.Duration // TCP connect
	tls     time.Duration // TLS handshake (HTTP/3: the whole QUIC handshake)
}

// dialer opens sessions of one protocol.
type dialer interface {
	dial(ctx context.Context, o *origin, ct *connTimes) (session, error)
}
