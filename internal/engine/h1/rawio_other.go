//go:build !linux

package h1

// Without the poller there is no raw descriptor: c.raw is never set, so
// these are not reached.

func (c *conn) rawRead(p []byte) (int, bool, error) { return 0, true, nil }

func (c *conn) rawWrite(p []byte) (int, error) { return 0, nil }
