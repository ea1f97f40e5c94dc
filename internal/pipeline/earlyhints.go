package pipeline

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/router"
)

// earlyHints answers a route's requests with 103 Early Hints (RFC 8297)
// carrying the route's Link values before the request is forwarded, and,
// when the route enables it, pushes the same targets over HTTP/2.
//
// The values are parsed once, at compile; per request only the route
// parameters are copied into a stack buffer, so a hint costs no allocation.
type earlyHints struct {
	links []linkTemplate
	next  exchange.Handler

	push         bool
	pushMax      int
	pushMaxBytes int64
}

// linkTemplate is one parsed early_hints value.
type linkTemplate struct {
	parts []config.LinkPart
	// static is the whole value when it names no parameter.
	static string
	// pushable is set when the target is a path on the request's own host,
	// the only thing HTTP/2 may push (RFC 9113 §8.4).
	pushable bool
}

// linkBufSize is the stack buffer a hint is composed in; a longer value
// (rare: a long parameter) grows it on the heap.
const linkBufSize = 512

func newEarlyHints(r *config.Route, next exchange.Handler) (exchange.Handler, error) {
	if len(r.EarlyHints) == 0 {
		return next, nil
	}
	e := &earlyHints{
		next:         next,
		push:         r.Push.Enabled && r.Push.MaxResources > 0,
		pushMax:      r.Push.MaxResources,
		pushMaxBytes: r.Push.MaxBytes.Int64(),
	}
	for i, v := range r.EarlyHints {
		parts, err := config.ParseLinkTemplate(v)
		if err != nil {
			// Validate reports it with the file's line; this guards configs
			// built in Go.
			return nil, fmt.Errorf("early_hints[%d]: %w", i, err)
		}
		l := linkTemplate{parts: parts}
		if len(parts) == 1 {
			l.static = parts[0].Literal
		}
		l.pushable = strings.HasPrefix(v, "</") && !strings.HasPrefix(v, "<//")
		e.links = append(e.links, l)
	}
	return e, nil
}

// linkHeader is the field name, kept as bytes for Header.AddBytes.
var linkHeader = []byte("Link")

func (e *earlyHints) ServeExchange(x *exchange.Exchange) {
	// A 1xx must not be sent to an HTTP/1.0 client (RFC 8297 §3, RFC 9110
	// §15.2), which would take it for the final response.
	if x.Req.Proto >= exchange.HTTP11 {
		e.hint(x)
		if e.push && x.Req.Proto == exchange.HTTP2 {
			if p, ok := x.W.(exchange.Pusher); ok {
				e.pushTargets(x, p)
			}
		}
	}
	e.next.ServeExchange(x)
}

// hint writes the 103 and takes the Link fields back out of the header, so
// the final response does not repeat them.
func (e *earlyHints) hint(x *exchange.Exchange) {
	h := x.W.Header()
	var buf [linkBufSize]byte
	for i := range e.links {
		l := &e.links[i]
		if l.static != "" {
			h.Add("Link", l.static)
			continue
		}
		h.AddBytes(linkHeader, l.appendValue(buf[:0], &x.State.Params))
	}
	x.W.WriteHeader(103)
	h.Del("Link")
}

// pushTargets pushes the first pushMax same-host targets; it stops at the
// first refusal (the client disabled push, or the connection is full).
func (e *earlyHints) pushTargets(x *exchange.Exchange, p exchange.Pusher) {
	var buf [linkBufSize]byte
	n := 0
	for i := range e.links {
		l := &e.links[i]
		if !l.pushable {
			continue
		}
		if n == e.pushMax {
			return
		}
		n++
		v := l.appendValue(buf[:0], &x.State.Params)
		target := v[1:]
		if end := bytes.IndexByte(target, '>'); end >= 0 {
			target = target[:end]
		}
		if err := p.Push(string(target), e.pushMaxBytes); err != nil {
			return
		}
	}
}

// appendValue appends the link value with params substituted.
func (l *linkTemplate) appendValue(b []byte, params *router.Params) []byte {
	if l.static != "" {
		return append(b, l.static...)
	}
	for _, part := range l.parts {
		if part.Param == "" {
			b = append(b, part.Literal...)
			continue
		}
		v, _ := params.Get(part.Param)
		b = appendPathSegment(b, v)
	}
	return b
}

// appendPathSegment appends a route parameter value into a link target.
// The value comes from the request path in its wire form, so it is already
// percent-encoded; bytes that may not appear in a URI (RFC 3986 §2), and
// "<" and ">" that would end the target early, are escaped here so a hostile
// path cannot change the meaning of the Link field.
func appendPathSegment(b []byte, v string) []byte {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"<>\\^`{|}", c) >= 0 {
			b = append(b, '%', hex[c>>4], hex[c&0xf])
			continue
		}
		b = append(b, c)
	}
	return b
}
