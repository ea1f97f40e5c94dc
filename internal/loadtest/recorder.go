package loadtest

import (
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/penstock-dev/penstock/internal/loadtest/runlog"
)

// Phases, in the order of the run log's tags.
const (
	phaseTotal = iota
	phaseConnect
	phaseTLS
	phaseFirstByte
	phaseHandshake
	numPhases
)

var phaseNames = [numPhases]string{runlog.Total, runlog.Connect, runlog.TLS, runlog.FirstByte, runlog.Handshake}

// counters are a shard's running totals for the measured part of the run.
type counters struct {
	responses int64 // measured requests answered (any status)
	errors    [numErrKinds]int64
	// samples hold the first error message of each kind, to tell what
	// "other" was.
	samples  [numErrKinds]string
	late     int64 // measured requests that started late
	warmup   int64 // requests of the warm-up (any outcome)
	bytes    int64 // response bytes read (measured)
	conns    int64 // connections established (whole run)
	status   map[int]int64
	lastDone time.Time
}

func (c *counters) add(o *counters) {
	c.responses += o.responses
	for i := range c.errors {
		c.errors[i] += o.errors[i]
		if c.samples[i] == "" {
			c.samples[i] = o.samples[i]
		}
	}
	c.late += o.late
	c.warmup += o.warmup
	c.bytes += o.bytes
	c.conns += o.conns
	for k, v := range o.status {
		c.status[k] += v
	}
	if o.lastDone.After(c.lastDone) {
		c.lastDone = o.lastDone
	}
}

func (c *counters) failed() int64 {
	var n int64
	for i, e := range c.errors {
		if errKind(i) != errStatus5xx { // 5xx responses are in responses already
			n += e
		}
	}
	return n
}

// shard is one lock's worth of the recorder: a few workers share it, so
// the lock is rarely contended and memory stays bounded however many
// workers there are (an HDR histogram of the run log's range is ~140 KB).
type shard struct {
	mu    sync.Mutex
	hists [numPhases]*hdrhistogram.Histogram
	c     counters
}

// recorder collects latencies and counts from the workers. The collector
// empties the shards' histograms into one interval histogram per phase
// every interval.
type recorder struct {
	shards []*shard
	// warm is true while the warm-up runs: connection phases measured then
	// are not recorded (request outcomes are sorted by intended time).
	warm atomic.Bool
}

func newRecorder(n int) *recorder {
	r := &recorder{shards: make([]*shard, n)}
	for i := range r.shards {
		s := &shard{c: counters{status: map[int]int64{}}}
		for p := range s.hists {
			s.hists[p] = runlog.NewHistogram()
		}
		r.shards[i] = s
	}
	return r
}

func micros(d time.Duration) int64 {
	us := d.Microseconds()
	switch {
	case us < runlog.Lowest:
		return runlog.Lowest
	case us > runlog.Highest:
		return runlog.Highest
	}
	return us
}

// response records a measured request that got a response.
func (s *shard) response(total, firstByte time.Duration, status int, bytes int64, late bool, done time.Time) {
	s.mu.Lock()
	_ = s.hists[phaseTotal].RecordValue(micros(total))
	if firstByte > 0 {
		_ = s.hists[phaseFirstByte].RecordValue(micros(firstByte))
	}
	s.c.responses++
	s.c.status[status]++
	if status >= 500 {
		s.c.errors[errStatus5xx]++
	}
	s.c.bytes += bytes
	if late {
		s.c.late++
	}
	s.c.lastDone = done
	s.mu.Unlock()
}

// failure records a measured request that failed without a response.
func (s *shard) failure(kind errKind, err error, late bool, done time.Time) {
	s.mu.Lock()
	s.c.errors[kind]++
	if s.c.samples[kind] == "" && err != nil {
		s.c.samples[kind] = err.Error()
	}
	if late {
		s.c.late++
	}
	s.c.lastDone = done
	s.mu.Unlock()
}

// handshakeDone records the end of a measured handshake of a storm without
// requests (conn has recorded its phases).
func (s *shard) handshakeDone(late bool, done time.Time) {
	s.mu.Lock()
	if late {
		s.c.late++
	}
	s.c.lastDone = done
	s.mu.Unlock()
}

// warmupDone counts a request of the warm-up.
func (s *shard) warmupDone() {
	s.mu.Lock()
	s.c.warmup++
	s.mu.Unlock()
}

// conn records a new connection's phases; zero durations are not recorded.
func (s *shard) conn(r *recorder, connect, tls, handshake time.Duration) {
	s.mu.Lock()
	s.c.conns++
	if !r.warm.Load() {
		for p, d := range [...]time.Duration{phaseConnect: connect, phaseTLS: tls, phaseHandshake: handshake} {
			if d > 0 {
				_ = s.hists[p].RecordValue(micros(d))
			}
		}
	}
	s.mu.Unlock()
}

// drain moves every shard's histograms into into (one per phase, reset by
// the caller) and returns the running totals.
func (r *recorder) drain(into *[numPhases]*hdrhistogram.Histogram) counters {
	tot := counters{status: map[int]int64{}}
	for _, s := range r.shards {
		s.mu.Lock()
		for p, h := range s.hists {
			if h.TotalCount() > 0 {
				into[p].Merge(h)
				h.Reset()
			}
		}
		tot.add(&s.c)
		s.mu.Unlock()
	}
	return tot
}
