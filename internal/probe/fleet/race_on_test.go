//go:build race

package fleet

import "testing"

// skipUnderRace skips the full-size run of a scenario: the race detector
// slows the probes several times. scripts/test runs it once more without
// the race detector; a smaller run of the same scenario runs in both modes.
func skipUnderRace(t testing.TB) {
	t.Helper()
	t.Skip("30,000 targets: scripts/test runs it without the race detector")
}
