//go:build race

package compare

import "testing"

// skipUnderRace skips a statistical test under the race detector: resampling
// thousands of times runs ten times slower there and tests no concurrency.
// scripts/test runs this package once more without the race detector.
func skipUnderRace(t *testing.T) {
	t.Helper()
	t.Skip("statistical, no concurrency: scripts/test runs it without the race detector")
}
