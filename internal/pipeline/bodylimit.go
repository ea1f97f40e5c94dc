package pipeline

import (
	"io"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/failure"
)

// BodyLimitSettings are the body_limit stage's route fields.
type BodyLimitSettings struct {
	// MaxRequestBody bounds the request body (size); a larger body gets 413
	// and the connection is closed: at once when Content-Length announces it,
	// otherwise when the body read so far passes the limit. Default 10MiB.
	MaxRequestBody config.ByteSize `yaml:"max_request_body"`
}

// DefaultMaxRequestBody is BodyLimitSettings.MaxRequestBody's default.
const DefaultMaxRequestBody = config.ByteSize(10 << 20)

// SetDefaults implements Settings.
func (s *BodyLimitSettings) SetDefaults() {
	if s.MaxRequestBody == 0 {
		s.MaxRequestBody = DefaultMaxRequestBody
	}
}

// Check implements Settings.
func (s *BodyLimitSettings) Check(r *Route) {
	if s.MaxRequestBody < 0 {
		r.Errorf("max_request_body", "must not be negative, got %d", s.MaxRequestBody)
	}
}

// bodyLimit enforces a route's max_request_body (see LimitBody).
type bodyLimit struct {
	limit int64
	next  exchange.Handler
}

func newBodyLimit(s *BodyLimitSettings, _ *Route, next exchange.Handler) (exchange.Handler, error) {
	if s.MaxRequestBody.Int64() <= 0 {
		return next, nil
	}
	return &bodyLimit{limit: s.MaxRequestBody.Int64(), next: next}, nil
}

func (b *bodyLimit) ServeExchange(x *exchange.Exchange) {
	if LimitBody(x, b.limit) {
		b.next.ServeExchange(x)
	}
}

// LimitBody enforces a route's max_request_body. A declared Content-Length
// over the limit is refused before anything is forwarded (413); a body of
// unknown length is wrapped so that reading past the limit fails with
// failure.ErrBodyTooLarge (one small allocation, only for such bodies). It reports
// false when it has answered the client.
func LimitBody(x *exchange.Exchange, limit int64) bool {
	if limit <= 0 {
		return true
	}
	if x.Req.ContentLength > limit {
		x.W.Header().Set("Connection", "close")
		failure.Fail(x, failure.BodyTooLarge)
		return false
	}
	if x.Req.ContentLength < 0 {
		x.Req.Body = &LimitedBody{r: x.Req.Body, left: limit}
	}
	return true
}

// LimitedBody is a request body that fails with failure.ErrBodyTooLarge after a
// limit. Unlike io.LimitedReader it reports the overrun instead of a silent
// EOF, which would forward a truncated body as if it were whole.
type LimitedBody struct {
	r    io.ReadCloser
	left int64
}

// Read implements io.Reader.
func (l *LimitedBody) Read(p []byte) (int, error) {
	if l.left < 0 {
		return 0, failure.ErrBodyTooLarge
	}
	// Read one byte past the limit so that a body of exactly the limit ends
	// cleanly while a longer one is caught.
	if int64(len(p)) > l.left+1 {
		p = p[:l.left+1]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	if l.left < 0 {
		return n + int(l.left), failure.ErrBodyTooLarge
	}
	return n, err
}

// Close closes the underlying body.
func (l *LimitedBody) Close() error { return l.r.Close() }
