//go:build race

package probe

import "testing"

// skipUnderRace skips a test of pacing accuracy or memory: the race
// detector slows the dispatcher and inflates memory several times.
// scripts/test runs it once more without the race detector.
func skipUnderRace(t testing.TB) {
	t.Helper()
	t.Skip("timing/memory measurement: scripts/test runs it without the race detector")
}
