//go:build !unix

package upstream

// probe cannot read a socket without blocking on this platform: idle
// connections are trusted, and a dead one is caught by the retry rule.
func (hc *h1Conn) probe(fd uintptr) bool {
	hc.probeOK = true
	return true
}
