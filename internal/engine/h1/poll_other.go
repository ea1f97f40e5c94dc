//go:build !linux

package h1

// Without epoll every connection keeps its own goroutine.

type poller struct{}

func startPolling(*conn) bool { return false }

func (c *conn) unregister() {}

func (c *conn) idleExpired() {}

func (c *conn) watchHangup() {}
