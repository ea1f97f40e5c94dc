//go:build !race

package rollout

import "testing"

func skipUnderRace(t *testing.T) { t.Helper() }
