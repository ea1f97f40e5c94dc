package proxy

import (
	"sync"
	"time"
)

// Failure lines per forwarder (route): warnBurst at once, then
// warnPerSecond. An outage of a busy route otherwise writes a line per
// request (a thousand a second) and buries everything else in the log; the
// access log still has every request, with its error kind.
const (
	warnBurst     = 10
	warnPerSecond = 1
)

// logLimiter is a token bucket for log lines. Only failures consult it, so
// its lock is never taken on the success path. The zero value is ready,
// with a full bucket.
type logLimiter struct {
	mu         sync.Mutex
	last       time.Time
	tokens     float64
	suppressed int
}

// allow reports whether a line may be written at now, and how many were
// suppressed since the last one written (to be reported with it).
func (l *logLimiter) allow(now time.Time) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last.IsZero() {
		l.tokens = warnBurst
	} else if d := now.Sub(l.last); d > 0 {
		l.tokens = min(warnBurst, l.tokens+d.Seconds()*warnPerSecond)
	}
	l.last = now
	if l.tokens < 1 {
		l.suppressed++
		return false, 0
	}
	l.tokens--
	suppressed, l.suppressed = l.suppressed, 0
	return true, suppressed
}
