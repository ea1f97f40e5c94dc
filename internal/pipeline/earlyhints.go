package pipeline

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/router"
)

// EarlyHintsSettings are the early_hints stage's route fields.
type EarlyHintsSettings struct {
	// EarlyHints lists Link field values sent to the client in a 103
	// Early Hints response (RFC 8297) before the request is forwarded, so
	// it can fetch the resources a response will need while the upstream works,
	// e.g. "</v1/models/:model/assets/tokenizer.bin>; rel=preload; as=fetch".
	// A path segment of the link target starting with ":" is replaced by the
	// route parameter of that name, which must exist in the route's path
	// pattern. Never sent to HTTP/1.0 clients (RFC 8297 §3); the Link fields
	// are not repeated on the final response. Default: none.
	EarlyHints []string `yaml:"early_hints"`
	// Push pushes the early_hints targets over HTTP/2 server push.
	Push RoutePush `yaml:"push"`
}

// RoutePush configures HTTP/2 server push (RFC 9113 §8.4) of a route's
// early_hints targets that are paths on the same host. Off by default:
// browsers no longer accept push (Chrome removed it in 2022 and Firefox in
// 2024) and 103 Early Hints does the same job without sending bytes the
// client may already have; some native HTTP/2 clients still accept it.
// Clients that disable push (SETTINGS_ENABLE_PUSH=0) are never pushed to.
type RoutePush struct {
	// Enabled pushes the early_hints targets that are paths on the same
	// host with HTTP/2 server push (bool). Browsers no longer accept push and
	// 103 Early Hints does the same job without sending bytes the client may
	// already have; some native HTTP/2 clients still use it. Clients that
	// disable push are never pushed to; a push never delays the main
	// response. Default false.
	Enabled bool `yaml:"enabled"`
	// MaxResources bounds the promises made for one response, the first
	// early_hints targets (count). Default 4.
	MaxResources int `yaml:"max_resources"`
	// MaxBytes bounds the body of each pushed response (size); a pushed
	// response that grows beyond it is reset (RST_STREAM), so push cannot
	// flood a connection. Default 256KiB.
	MaxBytes config.ByteSize `yaml:"max_bytes"`
}

// Defaults of RoutePush.
const (
	// DefaultPushMaxResources is RoutePush.MaxResources's default.
	DefaultPushMaxResources = 4
	// DefaultPushMaxBytes is RoutePush.MaxBytes's default.
	DefaultPushMaxBytes = config.ByteSize(256 << 10)
)

// SetDefaults implements Settings.
func (s *EarlyHintsSettings) SetDefaults() {
	if s.Push.MaxResources == 0 {
		s.Push.MaxResources = DefaultPushMaxResources
	}
	if s.Push.MaxBytes == 0 {
		s.Push.MaxBytes = DefaultPushMaxBytes
	}
}

// Check implements Settings: every value parses and names only parameters
// of the route's own path pattern, and push has targets to push.
func (s *EarlyHintsSettings) Check(r *Route) {
	pattern := r.Pattern()
	params := patternParams(pattern)
	for j, v := range s.EarlyHints {
		field := "early_hints[" + strconv.Itoa(j) + "]"
		parts, err := parseLinkTemplate(v)
		if err != nil {
			r.Errorf(field, "%v", err)
			continue
		}
		for _, part := range parts {
			if part.Param != "" && !slices.Contains(params, part.Param) {
				have := "it has none"
				if len(params) > 0 {
					have = "it has :" + strings.Join(params, ", :")
				}
				r.Errorf(field, "parameter %q is not in the route's path pattern %q (%s)", ":"+part.Param, pattern, have)
			}
		}
	}
	if s.Push.MaxResources < 0 {
		r.Errorf("push.max_resources", "must not be negative, got %d", s.Push.MaxResources)
	}
	if s.Push.MaxBytes < 0 {
		r.Errorf("push.max_bytes", "must not be negative, got %d", s.Push.MaxBytes)
	}
	if s.Push.Enabled && len(s.EarlyHints) == 0 {
		r.Errorf("push.enabled", "push sends the route's early_hints targets, and it has none")
	}
}

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
	parts []linkPart
	// static is the whole value when it names no parameter.
	static string
	// pushable is set when the target is a path on the request's own host,
	// the only thing HTTP/2 may push (RFC 9113 §8.4).
	pushable bool
}

// linkBufSize is the stack buffer a hint is composed in; a longer value
// (rare: a long parameter) grows it on the heap.
const linkBufSize = 512

func newEarlyHints(s *EarlyHintsSettings, _ *Route, next exchange.Handler) (exchange.Handler, error) {
	if len(s.EarlyHints) == 0 {
		return next, nil
	}
	e := &earlyHints{
		next:         next,
		push:         s.Push.Enabled && s.Push.MaxResources > 0,
		pushMax:      s.Push.MaxResources,
		pushMaxBytes: s.Push.MaxBytes.Int64(),
	}
	for i, v := range s.EarlyHints {
		parts, err := parseLinkTemplate(v)
		if err != nil {
			// Check reports it with the file's line; this guards settings
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
