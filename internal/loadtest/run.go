package loadtest

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/penstock-dev/penstock/internal/loadtest/runlog"
)

// runner is one run in progress.
type runner struct {
	o       Options
	targets []*target
	origins []*origin
	dialer  dialer
	rec     *recorder
	slots   []*slot
	workers []*worker

	ctx     context.Context // ends at the run's hard limit
	origin  time.Time       // intended times are offsets from here
	measure time.Time       // origin + warm-up
	end     time.Time       // measure + duration

	scheduled atomic.Int64 // open loop: measured requests handed to workers
	issued    atomic.Int64 // closed loop: measured requests started
	stopAt    time.Time    // when sending stopped
}

// slot holds the connections (one per origin) that its workers share: one
// worker for HTTP/1.1, Streams workers for HTTP/2 and HTTP/3.
type slot struct {
	mu    sync.Mutex
	conns []*connRef
}

type connRef struct {
	s        session
	origin   int
	uses     int
	inflight int
	retired  bool
}

type worker struct {
	id    int
	slot  *slot
	shard *shard
	out   outcome // reused: passed through an interface, it would escape
}

// job is one open-loop request: its intended time and its sequence number.
type job struct {
	at  time.Duration
	seq int64
}

// Run performs a run and returns its summary.
func Run(ctx context.Context, o Options) (*Result, error) {
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	base, err := tlsConfig(o.Insecure, o.Group)
	if err != nil {
		return nil, err
	}
	r := &runner{o: o}
	r.targets, r.origins, err = buildTargets(&r.o, base)
	if err != nil {
		return nil, err
	}
	switch o.Proto {
	case ProtoH1:
		r.dialer = h1Dialer{}
	case ProtoH2, ProtoH2C:
		r.dialer = newH2Dialer()
	case ProtoH3:
		r.dialer = newH3Dialer(o.Timeout)
	}
	return r.run(ctx)
}

func (r *runner) run(parent context.Context) (*Result, error) {
	o := &r.o
	nworkers := o.Connections * o.Streams
	if o.mode() == ModeClosed {
		nworkers = o.Concurrency
	}
	r.rec = newRecorder(min(nworkers, 4*runtime.GOMAXPROCS(0)))
	r.rec.warm.Store(o.Warmup > 0)
	if o.mode() != ModeHandshakes {
		r.slots = make([]*slot, o.Connections)
		for i := range r.slots {
			r.slots[i] = &slot{conns: make([]*connRef, len(r.origins))}
		}
	}
	r.workers = make([]*worker, nworkers)
	for i := range r.workers {
		w := &worker{id: i, shard: r.rec.shards[i%len(r.rec.shards)]}
		if r.slots != nil {
			w.slot = r.slots[i%len(r.slots)]
		}
		r.workers[i] = w
	}

	if r.slots != nil {
		// Opening the connections has its own bound; those not open by
		// then are opened by their first request.
		pctx, pcancel := context.WithTimeout(parent, 2*o.Timeout+10*time.Second)
		r.ctx = pctx
		err := r.predial()
		pcancel()
		if err != nil {
			return nil, err
		}
	}
	defer r.closeAll()

	// The hard limit: whatever the server does, the run ends a bounded
	// time after its planned end.
	limit := o.Warmup + o.Duration + 2*o.Timeout + 5*time.Second
	ctx, cancel := context.WithTimeout(parent, limit)
	defer cancel()
	r.ctx = ctx

	r.origin = time.Now()
	r.measure = r.origin.Add(o.Warmup)
	r.end = r.measure.Add(o.Duration)

	col := &collector{r: r, stop: make(chan struct{}), done: make(chan struct{})}
	if err := col.init(); err != nil {
		return nil, err
	}
	go col.loop()

	var wg sync.WaitGroup
	switch o.mode() {
	case ModeOpen, ModeHandshakes:
		queue := make(chan job, 1<<16)
		for _, w := range r.workers {
			wg.Go(func() {
				for j := range queue {
					if o.mode() == ModeHandshakes {
						r.handshake(w, j)
					} else {
						r.openRequest(w, j)
					}
				}
			})
		}
		r.dispatch(queue)
		close(queue)
	case ModeClosed:
		for _, w := range r.workers {
			wg.Go(func() { r.closedLoop(w) })
		}
	}

	// Bounded drain: in-flight requests get their timeout (and a margin);
	// then the connections are closed under them, which ends them.
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	waitUntil := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-done:
			return true
		case <-t.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
	if !waitUntil(time.Until(r.end) + o.Timeout + time.Second) {
		cancel()
		r.closeAll()
		waitUntil(2 * time.Second)
	}
	if r.stopAt.IsZero() || r.stopAt.After(r.end) {
		r.stopAt = time.Now()
		if r.stopAt.After(r.end) {
			r.stopAt = r.end
		}
	}
	close(col.stop)
	<-col.done
	if col.err != nil {
		return nil, fmt.Errorf("run log: %w", col.err)
	}
	res := r.result(col)
	if col.w != nil {
		if err := col.w.WriteMeta(res.meta()); err != nil {
			return nil, fmt.Errorf("run log: %w", err)
		}
	}
	return res, nil
}

// predial opens every slot's connections before the clock starts, a few
// at a time, so that the first requests do not pay for them.
func (r *runner) predial() error {
	var (
		wg       sync.WaitGroup
		sem      = make(chan struct{}, 32)
		failures atomic.Int64
		firstErr atomic.Value
	)
	for i, sl := range r.slots {
		for oi := range r.origins {
			if r.ctx.Err() != nil {
				break
			}
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				if _, err := r.connect(r.workers[i%len(r.workers)], sl, oi); err != nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			})
		}
	}
	wg.Wait()
	if n := failures.Load(); n == int64(len(r.slots)*len(r.origins)) {
		return fmt.Errorf("no connection could be opened: %v", firstErr.Load())
	}
	return nil
}

// connect dials a new connection for sl (its lock held or not yet shared).
func (r *runner) connect(w *worker, sl *slot, oi int) (*connRef, error) {
	var ct connTimes
	ctx, cancel := context.WithTimeout(r.ctx, r.o.Timeout)
	s, err := r.dialer.dial(ctx, r.origins[oi], &ct)
	cancel()
	if err != nil {
		return nil, err
	}
	w.shard.conn(r.rec, ct.connect, ct.tls, 0)
	c := &connRef{s: s, origin: oi}
	sl.conns[oi] = c
	return c, nil
}

// acquire returns a connection of w's slot to origin oi, dialing when there
// is none or the current one is spent.
func (r *runner) acquire(w *worker, oi int) (*connRef, error) {
	sl := w.slot
	sl.mu.Lock()
	defer sl.mu.Unlock()
	c := sl.conns[oi]
	if c != nil && (!c.s.usable() || (r.o.Churn > 0 && c.uses >= r.o.Churn)) {
		sl.conns[oi] = nil
		c.retire()
		c = nil
	}
	if c == nil {
		var err error
		if c, err = r.connect(w, sl, oi); err != nil {
			return nil, err
		}
	}
	c.uses++
	c.inflight++
	return c, nil
}

func (r *runner) release(w *worker, c *connRef) {
	sl := w.slot
	sl.mu.Lock()
	c.inflight--
	if !c.retired && !c.s.usable() {
		if sl.conns[c.origin] == c {
			sl.conns[c.origin] = nil
		}
		c.retire()
	} else if c.retired && c.inflight == 0 {
		c.s.close()
	}
	sl.mu.Unlock()
}

// retire closes the connection once its last request is done.
func (c *connRef) retire() {
	c.retired = true
	if c.inflight == 0 {
		c.s.close()
	}
}

func (r *runner) closeAll() {
	for _, sl := range r.slots {
		sl.mu.Lock()
		for i, c := range sl.conns {
			if c != nil {
				c.s.close()
				sl.conns[i] = nil
			}
		}
		sl.mu.Unlock()
	}
}

// dispatch hands out open-loop jobs at their intended times until the end
// of the run, the request count or the hard limit.
func (r *runner) dispatch(queue chan<- job) {
	o := &r.o
	rate := o.Profile
	if o.mode() == ModeHandshakes {
		rate = Constant(o.Handshakes)
	}
	sched := schedule{profile: rate, warmup: o.Warmup}
	sl := newSleeper()
	defer sl.close()
	stop := o.Warmup + o.Duration
	var seq, measured int64
	for {
		at := sched.peek()
		if at >= stop || (o.Requests > 0 && measured >= o.Requests) {
			r.stopAt = r.origin.Add(min(at, stop))
			return
		}
		if d := time.Until(r.origin.Add(at)); d > dueWithin {
			if r.ctx.Err() != nil {
				return
			}
			sl.sleep(d)
			continue
		}
		if seq&1023 == 0 && r.ctx.Err() != nil {
			return // interrupted, or behind schedule until the hard limit
		}
		sched.advance()
		if at >= o.Warmup {
			measured++
			r.scheduled.Add(1)
		}
		j := job{at: at, seq: seq}
		seq++
		select {
		case queue <- j:
		default:
			// The queue is full: the workers are far behind. Waiting here
			// does not move any intended time, so the delay still counts.
			select {
			case queue <- j:
			case <-r.ctx.Done():
				return
			}
		}
	}
}

func (r *runner) openRequest(w *worker, j job) {
	intended := r.origin.Add(j.at)
	r.request(w, intended, time.Now(), j.at >= r.o.Warmup, j.seq)
}

// request sends one request on w's slot and records it.
func (r *runner) request(w *worker, intended, start time.Time, measured bool, seq int64) {
	late := start.Sub(intended) > r.o.Late
	t := r.targets[seq%int64(len(r.targets))]
	out := &w.out
	*out = outcome{}
	c, err := r.acquire(w, t.origin)
	if err == nil {
		err = c.s.roundTrip(t, start, r.o.Timeout, out)
		r.release(w, c)
	}
	// The server's GOAWAY came first: nothing was sent, and a client that
	// honours GOAWAY sends it again on another connection. Each refusal
	// marks its connection unusable, so after at most one try per
	// connection of the pool (all of them may have had the same GOAWAY)
	// a new connection takes it.
	var ns *notSentError
	for try := 0; try <= r.o.Connections && errors.As(err, &ns); try++ {
		*out = outcome{}
		if c, err = r.acquire(w, t.origin); err == nil {
			err = c.s.roundTrip(t, start, r.o.Timeout, out)
			r.release(w, c)
		}
	}
	r.record(w, intended, measured, late, out, err)
}

// notSentError is a request a connection refused to send because the
// server had announced its end (GOAWAY); the connection is then unusable.
type notSentError struct{ err error }

func (e *notSentError) Error() string { return "not sent: " + e.err.Error() }
func (e *notSentError) Unwrap() error { return e.err }

func (r *runner) record(w *worker, intended time.Time, measured, late bool, out *outcome, err error) {
	done := time.Now()
	switch {
	case !measured:
		w.shard.warmupDone()
	case err != nil:
		w.shard.failure(classify(err), err, late, done)
	default:
		var fb time.Duration
		if !out.firstByte.IsZero() {
			fb = out.firstByte.Sub(intended)
		}
		w.shard.response(done.Sub(intended), fb, out.status, out.bytes, late, done)
	}
}

// closedLoop is one closed-loop worker: its next request starts when the
// previous one ends (paced to Rate/Concurrency when Rate is set). Latency
// is measured from the actual send: this is the mode that hides stalls.
func (r *runner) closedLoop(w *worker) {
	o := &r.o
	var period time.Duration
	if o.Rate > 0 {
		period = time.Duration(float64(o.Concurrency) / o.Rate * 1e9)
	}
	next := r.origin.Add(period * time.Duration(w.id) / time.Duration(o.Concurrency))
	seq := int64(w.id)
	for {
		now := time.Now()
		if period > 0 {
			if d := next.Sub(now); d > 0 {
				if now.Add(d).After(r.end) {
					return
				}
				time.Sleep(d)
				now = time.Now()
			}
			next = next.Add(period)
			if next.Before(now) {
				next = now
			}
		}
		if !now.Before(r.end) || r.ctx.Err() != nil {
			return
		}
		measured := !now.Before(r.measure)
		if measured && o.Requests > 0 && r.issued.Add(1) > o.Requests {
			return
		}
		r.request(w, now, now, measured, seq)
		seq += int64(o.Concurrency)
	}
}

// collector closes an interval every Interval of measured time: it drains
// the shards, writes the interval's histograms to the run log and keeps the
// whole run's histograms.
type collector struct {
	r     *runner
	stop  chan struct{}
	done  chan struct{}
	w     *runlog.Writer
	iv    [numPhases]*hdrhistogram.Histogram
	total [numPhases]*hdrhistogram.Histogram
	last  counters
	k     int // intervals closed
	err   error
}

func (c *collector) init() error {
	for p := range c.iv {
		c.iv[p] = runlog.NewHistogram()
		c.total[p] = runlog.NewHistogram()
	}
	c.last.status = map[int]int64{}
	if c.r.o.Log == nil {
		return nil
	}
	w, err := runlog.NewWriter(c.r.o.Log, c.r.measure, c.r.startMeta())
	if err != nil {
		return fmt.Errorf("run log: %w", err)
	}
	c.w = w
	return nil
}

func (c *collector) loop() {
	defer close(c.done)
	r := c.r
	t := time.NewTimer(time.Until(r.measure))
	defer t.Stop()
	select {
	case <-t.C:
	case <-c.stop:
	}
	r.rec.warm.Store(false)
	for {
		next := r.measure.Add(time.Duration(c.k+1) * r.o.Interval)
		t.Reset(time.Until(next))
		select {
		case <-t.C:
			c.flush(time.Duration(c.k+1) * r.o.Interval)
		case <-c.stop:
			end := max(time.Since(r.measure), time.Duration(c.k)*r.o.Interval)
			c.flush(end)
			return
		}
	}
}

func (c *collector) flush(end time.Duration) {
	r := c.r
	start := time.Duration(c.k) * r.o.Interval
	if end <= start && c.k > 0 {
		end = start + time.Millisecond
	}
	tot := r.rec.drain(&c.iv)
	if c.w != nil && c.err == nil {
		for p, h := range c.iv {
			if p == phaseTotal || h.TotalCount() > 0 {
				if err := c.w.Write(runlog.Interval{Phase: phaseNames[p], Start: start, End: end, Hist: h}); err != nil {
					c.err = err
				}
			}
		}
	}
	if r.o.OnInterval != nil {
		secs := (end - start).Seconds()
		r.o.OnInterval(Progress{
			Elapsed:   end,
			Rate:      float64(tot.responses-c.last.responses) / max(secs, 1e-3),
			Responses: tot.responses,
			Errors:    tot.failed() + tot.errors[errStatus5xx],
			Late:      tot.late,
			P99:       time.Duration(c.iv[phaseTotal].ValueAtQuantile(99)) * time.Microsecond,
		})
	}
	for p, h := range c.iv {
		c.total[p].Merge(h)
		h.Reset()
	}
	c.last = tot
	c.k++
}
