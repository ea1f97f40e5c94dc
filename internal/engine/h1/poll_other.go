//go:build !linux

package h1

import "crypto/tls"

// Without epoll every connection keeps its own goroutine.

type poller struct{}

func startPolling(*conn) bool { return false }

func (c *conn) unregister() {}

func (c *conn) idleExpired() {}

func (c *conn) watchHangup() {}

func (c *conn) unwatch() {}

func (c *conn) watchTLS(*tls.Conn) {}
