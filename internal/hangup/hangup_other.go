//go:build !linux

package hangup

// Watch reports whether the peer of one socket hung up. Without epoll it
// watches nothing: Start reports false.
type Watch struct{}

// Start reports false: the watch needs epoll.
func (w *Watch) Start(fd int) bool { return false }

// Watching reports false.
func (w *Watch) Watching() bool { return false }

// HungUp reports false.
func (w *Watch) HungUp() bool { return false }

// Stop does nothing.
func (w *Watch) Stop() {}
