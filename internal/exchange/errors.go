package exchange

import "errors"

// ErrBadRequestBody is wrapped by the error a request body's Read returns
// when the client framed the body wrongly: a malformed chunk size or chunk
// extension, chunk data not followed by CRLF, a malformed trailer section
// (RFC 9112 §7.1). The request is the client's fault: a handler answers it
// with 400 and never counts it against an upstream, even when the upstream
// had received part of the body. Test with errors.Is.
var ErrBadRequestBody = errors.New("malformed request body")
