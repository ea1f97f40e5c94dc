package proxy

import (
	"testing"
	"time"
)

func TestLogLimiter(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	type step struct {
		at         time.Duration // after t0
		lines      int           // failures at that moment
		allowed    int           // lines let through
		suppressed int           // reported by the first line let through
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{name: "a burst passes", steps: []step{{lines: warnBurst, allowed: warnBurst}}},
		{name: "past the burst lines are suppressed", steps: []step{{lines: 1000, allowed: warnBurst}}},
		{name: "the next line says how many were suppressed", steps: []step{
			{lines: warnBurst + 25, allowed: warnBurst},
			{at: time.Second, lines: 1, allowed: 1, suppressed: 25},
		}},
		{name: "the bucket refills at warnPerSecond", steps: []step{
			{lines: warnBurst, allowed: warnBurst},
			{at: 3 * time.Second, lines: 10, allowed: 3 * warnPerSecond, suppressed: 0},
		}},
		{name: "the bucket holds at most a burst", steps: []step{
			{lines: 1, allowed: 1},
			{at: time.Hour, lines: 1000, allowed: warnBurst},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l logLimiter
			for i, s := range tt.steps {
				allowed, suppressed := 0, -1
				for range s.lines {
					ok, n := l.allow(t0.Add(s.at))
					if ok {
						allowed++
						if suppressed < 0 {
							suppressed = n
						}
					}
				}
				if allowed != s.allowed {
					t.Errorf("step %d: %d lines allowed, want %d", i, allowed, s.allowed)
				}
				if s.allowed > 0 && suppressed != s.suppressed {
					t.Errorf("step %d: first line reports %d suppressed, want %d", i, suppressed, s.suppressed)
				}
			}
		})
	}
}
