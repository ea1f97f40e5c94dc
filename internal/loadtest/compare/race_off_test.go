//go:build !race

package compare

import "testing"

func skipUnderRace(t *testing.T) { t.Helper() }
