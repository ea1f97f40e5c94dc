package grpccall

import (
	"math"
	"time"
)

// ParseTimeout reads a grpc-timeout value: 1 to 8 ASCII digits and a unit,
// H (hours), M (minutes), S (seconds), m (milliseconds), u (microseconds)
// or n (nanoseconds) (PROTOCOL-HTTP2.md, "Timeout"). ok is false for
// anything else, including a zero-length value; a value too long for a
// time.Duration (99999999H) is capped at the largest one.
func ParseTimeout(s string) (d time.Duration, ok bool) {
	if len(s) < 2 || len(s) > 9 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s)-1; i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	var unit time.Duration
	switch s[len(s)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, false
	}
	if n > math.MaxInt64/int64(unit) {
		return math.MaxInt64, true
	}
	return time.Duration(n) * unit, true
}
