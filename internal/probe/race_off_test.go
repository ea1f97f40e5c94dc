//go:build !race

package probe

import "testing"

func skipUnderRace(t testing.TB) { t.Helper() }
