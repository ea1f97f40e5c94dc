package pipeline

import (
	"slices"
	"testing"
)

type closer struct{ closed bool }

func (c *closer) Close() error { c.closed = true; return nil }

func TestStateKeepsValuesAcrossConfigurations(t *testing.T) {
	made := 0
	mk := func() (any, error) { made++; return &closer{}, nil }
	first := NewState(nil)
	a, _ := first.Keep("limit/a", mk)
	b, _ := first.Keep("limit/b", mk)
	if again, _ := first.Keep("limit/a", mk); again != a {
		t.Fatal("a key asked twice in one configuration gave two values")
	}
	first.Forget()

	second := NewState(first)
	if kept, _ := second.Keep("limit/a", mk); kept != a {
		t.Fatal("an unchanged key did not keep its value across a reload")
	}
	c, _ := second.Keep("limit/c", mk)
	second.Forget()
	if made != 3 {
		t.Fatalf("made %d values, want 3", made)
	}

	leaving := first.Leaving(second)
	if len(leaving) != 1 || leaving[0] != b {
		t.Fatalf("leaving = %v, want only the value second no longer asks for", leaving)
	}
	if err := Close(leaving); err != nil || !b.(*closer).closed || a.(*closer).closed {
		t.Fatal("Close must close exactly what is leaving")
	}
	all := second.Leaving(nil)
	if len(all) != 2 || !slices.Contains(all, any(c).(interface{ Close() error })) {
		t.Fatalf("at shutdown every value leaves, got %d", len(all))
	}
}
