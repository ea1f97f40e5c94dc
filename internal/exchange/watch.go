package exchange

// Watcher is implemented by exchange contexts that can run a function when
// they end without allocating (the native HTTP/1.1 engine's). Code that
// watches the exchange's context on every request (the upstream client
// failing a blocked read when the client hangs up) asks for it first:
// context.AfterFunc allocates twice per call.
type Watcher interface {
	// Watch arranges for f to run once the context is done, on the
	// goroutine that ends it, so f must be quick and must not block. If
	// the context is already done, f runs at once and the token is 0.
	Watch(f func()) (token uint64)
	// Unwatch removes a watch. It reports false if f already ran (or is
	// running), as the stop function of context.AfterFunc does.
	Unwatch(token uint64) bool
}
