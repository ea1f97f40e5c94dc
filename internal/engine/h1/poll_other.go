//go:build !linux

package h1

import "crypto/tls"

// Without epoll every connection keeps its own goroutine, and hang-ups are
// noticed only when a read or write fails.

type poller struct{}

func startPolling(*conn) bool { return false }

func (c *conn) unregister() {}

func (c *conn) idleExpired() {}

func (c *conn) watchTLS(*tls.Conn) {}
