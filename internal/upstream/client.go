package upstream

import (
	"context"
	"io"
	"time"

	"github.com/penstock-dev/penstock/internal/exchange"
)

// Client carries requests to one endpoint over its keep-alive connections.
// Each Endpoint has exactly one: the native HTTP/1.1 client (H1Client), or a
// net/http-backed one (StdClient) for HTTP/2, h2c, HTTP/3 and pools with
// client: stdhttp.
type Client interface {
	// RoundTrip sends req and reads the response head into resp. It
	// returns at the first final response, at a 101 (Switching Protocols),
	// or at an interim response other than 100 (103 Early Hints), which the
	// caller relays before calling resp.Next. After a nil error the caller
	// reads the body with resp.Read and must call resp.Close; after an
	// error, resp holds nothing to release.
	//
	// Every error is an *Error. A request that failed on a reused
	// connection before any byte of a response arrived has already been
	// sent again on another connection where that is safe (RFC 9112
	// §9.3.1), so a KindReset error is final.
	RoundTrip(ctx context.Context, req *Request, resp *Response) error
	// CloseIdle closes the connections not carrying a request.
	CloseIdle()
	// Close closes what CloseIdle leaves that belongs to the client itself
	// (HTTP/3: its QUIC connections). Connections carrying requests are
	// closed by the endpoint's connection tracking (Pool.Retire).
	Close()
}

// Request is one request for Client.RoundTrip. It is plain data so that a
// caller can keep it in pooled memory: the native client reads it as is,
// allocating nothing, and the net/http one builds its *http.Request from it.
type Request struct {
	// Method, Path (escaped, as on the wire) and Query (without '?') form
	// the request line.
	Method, Path, Query string
	// Host is the Host field (HTTP/2 and HTTP/3: :authority); empty means
	// the endpoint's address.
	Host string
	// Header holds the fields to send. Host, Content-Length and
	// Transfer-Encoding in it are ignored: the client writes those itself.
	Header *exchange.Header
	// Body is the request content, nil when there is none.
	Body io.Reader
	// ContentLength is Body's length, or -1 when unknown (sent chunked).
	ContentLength int64
	// Trailer, when set, gives the request's trailer fields once Body has
	// returned io.EOF; they are sent after the body where the protocol
	// allows: HTTP/2, HTTP/3 and chunked HTTP/1.1 (a body of unknown
	// length).
	Trailer exchange.TrailerReader
	// ConnectTimeout bounds dialing (and the TLS handshake); 0 means none.
	ConnectTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for the response head after the
	// request was written; 0 means none.
	ResponseHeaderTimeout time.Duration
	// Deadline bounds the whole exchange, response body included; zero
	// means none.
	Deadline time.Time

	// BodyRead counts the bytes read from Body so far. RoundTrip updates it;
	// a caller may send the request to another endpoint only while it is 0.
	BodyRead int64
}

// idempotent reports the methods of RFC 9110 §9.2.2, and requests that say
// they are with an Idempotency-Key (as net/http's Transport accepts): such a
// request may be sent again when a connection fails under it.
func (r *Request) idempotent() bool {
	switch r.Method {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return r.Header != nil && (r.Header.Has("Idempotency-Key") || r.Header.Has("X-Idempotency-Key"))
}
