// Package engine defines what the server needs of an HTTP engine: one
// interface that the native HTTP/1.1 engine (engine/h1), the net/http
// engine (engine/stdhttp) and the HTTP/3 engine (engine/h3) satisfy, so a
// listener is started, replaced on reload and drained the same way
// whichever engines serve it. The HTTP/2 engine (engine/h2) is not one
// of them: it serves the connections engine/h1 hands it.
//
// An engine turns connections into exchanges (internal/exchange) and hands
// them to one exchange.Handler; everything after that handler is the same
// for every engine.
package engine

import (
	"context"
	"net"
	"time"

	"github.com/penstock-dev/penstock/internal/exchange"
)

// Server is one generation of an engine serving one socket: a reload that
// changes a listener starts a new Server on the same socket and shuts the
// previous one down.
type Server interface {
	// Serve serves until Shutdown and returns nil then; any other return
	// is a failure of the socket.
	Serve() error
	// Shutdown stops taking new connections, lets the requests in flight
	// finish until ctx is done, then closes what is left. It returns
	// ctx's error when it had to cut requests.
	Shutdown(ctx context.Context) error
}

// ListenerServer is an engine that serves connections accepted from a
// net.Listener (engine/h1, engine/stdhttp).
type ListenerServer interface {
	Serve(ln net.Listener) error
	Shutdown(ctx context.Context) error
}

// On binds s to ln: the Server that serves ln with s.
func On(s ListenerServer, ln net.Listener) Server { return bound{s, ln} }

type bound struct {
	s  ListenerServer
	ln net.Listener
}

func (b bound) Serve() error                       { return b.s.Serve(b.ln) }
func (b bound) Shutdown(ctx context.Context) error { return b.s.Shutdown(ctx) }

// streamDrainKey is the context key of WithStreamDrain.
type streamDrainKey struct{}

// WithStreamDrain marks a Shutdown context of the old process of a binary
// upgrade: when ctx is done (the drain timeout), an engine that can tell
// long-lived streams (a server-sent event stream) from other requests ends
// only the others, and lets the streams run until until. Engines that
// cannot tell end everything when ctx is done, as always.
func WithStreamDrain(ctx context.Context, until time.Time) context.Context {
	return context.WithValue(ctx, streamDrainKey{}, until)
}

// StreamDrain returns the time until which long-lived streams may run
// after ctx is done, if ctx carries one (WithStreamDrain).
func StreamDrain(ctx context.Context) (time.Time, bool) {
	t, ok := ctx.Value(streamDrainKey{}).(time.Time)
	return t, ok
}

// eventStream is the media type of server-sent events.
const eventStream = "text/event-stream"

// IsEventStream reports whether a response's Content-Type names an event
// stream (parameters allowed): the long-lived responses that a binary
// upgrade's drain lets run past drain_timeout (WithStreamDrain).
func IsEventStream(contentType string) bool {
	return len(contentType) >= len(eventStream) && exchange.EqualFold(contentType[:len(eventStream)], eventStream)
}
