// Package requestid gives every request an id: the client's X-Request-Id
// when it is safe to pass on, otherwise a new random one. The id is logged,
// forwarded to the upstream, returned to the client and carried in error
// bodies.
package requestid

import (
	"math/rand/v2"
	"unsafe"

	"github.com/penstock-dev/penstock/internal/exchange"
)

// Header carries the request id to the upstream and back to the
// client.
const Header = "X-Request-Id"

// maxRequestIDLen bounds a client-supplied id; longer ones are replaced.
const maxRequestIDLen = 64

// Assign sets x.State.RequestID: the client's X-Request-Id when it is
// 1–64 characters of [A-Za-z0-9._-], otherwise a new 128-bit random id in
// hex. The id is set on the request (for the upstream) and on the response.
func Assign(x *exchange.Exchange) {
	if id, ok := x.Req.Header.Get(Header); ok && validRequestID(id) {
		x.State.RequestID = id
	} else {
		buf := x.State.IDBuffer()
		// math/rand/v2's top-level functions use a per-thread ChaCha8 state:
		// no lock shared by all requests, unlike crypto/rand's reader. A
		// request id needs uniqueness, not secrecy.
		putHex(buf[:16], rand.Uint64())
		putHex(buf[16:], rand.Uint64())
		x.State.RequestID = unsafe.String(&buf[0], 32)
		x.Req.Header.Set(Header, x.State.RequestID)
	}
	x.W.Header().Set(Header, x.State.RequestID)
}

const hexDigits = "0123456789abcdef"

func putHex(dst []byte, v uint64) {
	for i := 15; i >= 0; i-- {
		dst[i] = hexDigits[v&0xf]
		v >>= 4
	}
}

func validRequestID(s string) bool {
	if len(s) == 0 || len(s) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !ValidByte(s[i]) {
			return false
		}
	}
	return true
}

// ValidByte reports whether c may appear in a request id: [A-Za-z0-9._-].
// None of them needs escaping in JSON, a header or a log line.
func ValidByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
}
