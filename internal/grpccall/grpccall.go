// Package grpccall is what penstock knows of gRPC on the wire (the
// "gRPC over HTTP2" protocol document of grpc/grpc, PROTOCOL-HTTP2.md, and
// PROTOCOL-WEB.md for gRPC-Web): whether a request is a gRPC call, its
// grpc-timeout, its status codes and message encoding, and the framing of
// gRPC-Web bodies. penstock proxies gRPC as HTTP: it never decodes the
// protobuf messages, only the headers, trailers and (for gRPC-Web) the
// five-byte frame prefixes.
package grpccall

import (
	"strings"

	"github.com/penstock-dev/penstock/internal/exchange"
)

// Kind is the flavour of gRPC a request speaks, from its Content-Type.
type Kind uint8

// Kinds of requests.
const (
	// None: not a gRPC call.
	None Kind = iota
	// GRPC: application/grpc, application/grpc+proto, application/grpc+json...
	GRPC
	// Web: application/grpc-web, application/grpc-web+proto (binary frames).
	Web
	// WebText: application/grpc-web-text(+proto) (base64-encoded frames).
	WebText
)

// Classify tells what kind of gRPC call req is. Every gRPC call is a POST
// (PROTOCOL-HTTP2.md), so other methods are answered without looking at
// the header: a GET costs one string comparison.
func Classify(req *exchange.Request) Kind {
	if req.Method != "POST" {
		return None
	}
	ct, ok := req.Header.Get("Content-Type")
	if !ok {
		return None
	}
	return KindOf(ct)
}

// KindOf classifies a Content-Type value.
func KindOf(ct string) Kind {
	const grpc, web, text = "application/grpc", "application/grpc-web", "application/grpc-web-text"
	if len(ct) < len(grpc) || !strings.EqualFold(ct[:len(grpc)], grpc) {
		return None
	}
	rest := ct[len(grpc):]
	switch {
	case rest == "" || rest[0] == '+' || rest[0] == ';':
		return GRPC
	case len(ct) >= len(text) && strings.EqualFold(ct[:len(text)], text) && endOfType(ct[len(text):]):
		return WebText
	case len(ct) >= len(web) && strings.EqualFold(ct[:len(web)], web) && endOfType(ct[len(web):]):
		return Web
	}
	return None
}

// endOfType reports whether rest ends a media type: nothing, a +suffix or
// parameters.
func endOfType(rest string) bool {
	return rest == "" || rest[0] == '+' || rest[0] == ';'
}

// SplitPath splits a gRPC call's path, "/package.Service/Method", into
// its service and method; a path of another shape gives "", "".
func SplitPath(path string) (service, method string) {
	if len(path) < 4 || path[0] != '/' {
		return "", ""
	}
	i := strings.IndexByte(path[1:], '/')
	if i <= 0 || i+2 >= len(path) || strings.IndexByte(path[i+2:], '/') >= 0 {
		return "", ""
	}
	return path[1 : i+1], path[i+2:]
}
