//go:build race

package rollout

import "testing"

// skipUnderRace skips a statistical simulation under the race detector: it
// runs hundreds of rollouts, ten times slower there, and tests no
// concurrency. scripts/test runs it once more without the race detector.
func skipUnderRace(t *testing.T) {
	t.Helper()
	t.Skip("statistical, no concurrency: scripts/test runs it without the race detector")
}
