package probe

import (
	"bufio"
	"container/heap"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/penstock-dev/penstock/internal/ratelimit"
	"github.com/penstock-dev/penstock/internal/reload"
	"github.com/prometheus/client_golang/prometheus"
)

// ScanConfig are a scanner's settings.
type ScanConfig struct {
	// Concurrency bounds the probes in flight. Default 1000.
	Concurrency int
	// Rate is the global pace in probe starts per second (a token
	// bucket); 0 is as fast as Concurrency allows.
	Rate float64
	// Burst is the bucket's size: how far the scanner may catch up after
	// falling behind (a busy machine, a collection). Default one second's
	// worth (Rate), at least 1. The bucket starts each pass empty, so the
	// burst never adds to the pace.
	Burst int64
	// PerDestination, when positive, is the most probes started per
	// destination (host, or /24 with PerPrefix) in any PerWindow.
	PerDestination int
	// PerWindow is that window. Default 1s.
	PerWindow time.Duration
	// PerPrefix limits per IPv4 /24 (IPv6 /64) instead of per address.
	PerPrefix bool
	// Backoff, when positive, holds a destination back after a probe of
	// it was refused, reset or timed out: Backoff after the first such
	// failure, doubling up to 64×Backoff, until one succeeds. Default 0
	// (off).
	Backoff time.Duration
	// Interval is how often a pass over the targets starts; 0 is one
	// pass.
	Interval time.Duration
	// Cycles, when positive, stops after that many passes.
	Cycles int
}

// Scanner probes a target list, once or continuously, and writes one JSON
// line per probe. The targets and modules are swapped whole (SetTargets,
// Watch) through an atomic pointer: a pass in progress keeps the set it
// started with, probes in flight are never stopped by a reload, and the
// next pass takes the new set.
type Scanner struct {
	cfg    ScanConfig
	prober *Prober
	set    atomic.Pointer[scanSet]

	outMu sync.Mutex
	out   *bufio.Writer

	global  *ratelimit.Local
	dests   *destLimit
	backoff *backoff

	started, done, failed, inFlight atomic.Int64
	passStart                       atomic.Int64 // unix nanoseconds
	passTotal, passDone             atomic.Int64
	reasonsMu                       sync.Mutex
	reasons                         map[Reason]int64

	results  *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

type scanSet struct {
	targets *Targets
	mods    *Modules
}

// NewScanner makes a scanner that writes JSON lines to out (nil: none) and
// registers its aggregates in reg (nil: none).
func NewScanner(cfg ScanConfig, prober *Prober, out io.Writer, reg prometheus.Registerer) (*Scanner, error) {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 1000
	}
	if cfg.PerWindow <= 0 {
		cfg.PerWindow = time.Second
	}
	if prober == nil {
		prober = &Prober{}
	}
	s := &Scanner{cfg: cfg, prober: prober, reasons: map[Reason]int64{}}
	if out != nil {
		s.out = bufio.NewWriterSize(out, 64<<10)
	}
	if cfg.Rate > 0 {
		if cfg.Burst <= 0 {
			cfg.Burst = max(1, int64(cfg.Rate))
		}
		l, err := ratelimit.NewLocal(ratelimit.Params{Algorithm: ratelimit.TokenBucket, Rate: cfg.Rate, Burst: cfg.Burst}, 1)
		if err != nil {
			return nil, fmt.Errorf("rate: %w", err)
		}
		s.global = l
	}
	if cfg.PerDestination > 0 {
		s.dests = newDestLimit(cfg.PerDestination, cfg.PerWindow, cfg.PerPrefix)
	}
	if cfg.Backoff > 0 {
		s.backoff = newBackoff(cfg.Backoff)
	}
	s.cfg = cfg
	s.results = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "penstock_probe_results_total", Help: "Probes finished by the scanner, by module and failure reason (empty: success)",
	}, []string{"module", "reason"})
	s.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "penstock_probe_scan_duration_seconds", Help: "Duration of the scanner's probes, by module",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
	}, []string{"module"})
	if reg != nil {
		reg.MustRegister(s.results, s.duration,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "penstock_probe_in_flight", Help: "Probes in flight"}, func() float64 { return float64(s.inFlight.Load()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "penstock_probe_targets", Help: "Targets in the current list, ranges expanded"}, func() float64 {
				if set := s.set.Load(); set != nil {
					return float64(set.targets.Len())
				}
				return 0
			}))
	}
	return s, nil
}

// SetTargets swaps in a target list and its modules.
func (s *Scanner) SetTargets(t *Targets, mods *Modules) {
	s.set.Store(&scanSet{targets: t, mods: mods})
}

// Watch reloads the targets and modules files when either changes, until
// the returned stop is called. A file that fails to load is logged and the
// set in use stays.
func (s *Scanner) Watch(targetsPath, modulesPath, defaultModule string, log *slog.Logger) (stop func(), err error) {
	paths := []string{targetsPath}
	if modulesPath != "" {
		paths = append(paths, modulesPath)
	}
	w, err := reload.WatchFiles(paths, 100*time.Millisecond, 0, log, func() {
		mods := s.set.Load().mods
		if modulesPath != "" {
			m, err := LoadModulesFile(modulesPath)
			if err != nil {
				log.Error("modules not reloaded", "error", err)
				return
			}
			mods = m
		}
		t, err := LoadTargetsFile(targetsPath, defaultModule, mods)
		if err != nil {
			log.Error("targets not reloaded", "error", err)
			return
		}
		s.SetTargets(t, mods)
		log.Info("targets reloaded", "targets", t.Len())
	})
	if err != nil {
		return nil, err
	}
	return w.Close, nil
}

// Run probes the targets: one pass, or a pass every Interval until ctx is
// done (or Cycles passes). It returns when the last probe has finished.
func (s *Scanner) Run(ctx context.Context) error {
	if s.set.Load() == nil {
		return fmt.Errorf("no targets")
	}
	flushDone := make(chan struct{})
	flushStop := make(chan struct{})
	go func() {
		// Lines reach the reader within half a second, without a write
		// per probe.
		defer close(flushDone)
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-flushStop:
				return
			case <-t.C:
				s.flush()
			}
		}
	}()
	defer func() { close(flushStop); <-flushDone; s.flush() }()
	for cycle := 1; ; cycle++ {
		start := time.Now()
		s.pass(ctx, s.set.Load())
		if s.cfg.Interval <= 0 || ctx.Err() != nil || (s.cfg.Cycles > 0 && cycle >= s.cfg.Cycles) {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Until(start.Add(s.cfg.Interval))):
		}
	}
}

// deferred is a target the per-destination limit held back, and when it
// may go.
type deferred struct {
	at  time.Time
	idx uint64
}

type deferredHeap []deferred

func (h deferredHeap) Len() int           { return len(h) }
func (h deferredHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h deferredHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *deferredHeap) Push(x any)        { *h = append(*h, x.(deferred)) }
func (h *deferredHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// pass probes every target of set once. The order of admission: a slot
// (Concurrency), then a global token, then the destination's window; a
// target its destination refuses waits in a heap while the others go on,
// and its token is given back.
func (s *Scanner) pass(ctx context.Context, set *scanSet) {
	n := set.targets.Len()
	s.passStart.Store(time.Now().UnixNano())
	s.passTotal.Store(int64(n))
	s.passDone.Store(0)
	if s.global != nil {
		// Start with an empty bucket: the burst is room to catch up, not
		// a rush of probes at the start of every pass.
		s.global.Add("", s.cfg.Burst, time.Now().UnixNano())
	}
	sem := make(chan struct{}, s.cfg.Concurrency)
	var wg sync.WaitGroup
	var held deferredHeap
	next := uint64(0)
	for next < n || held.Len() > 0 {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return
		}
		launched := false
		for !launched {
			var tok ratelimit.Decision
			if s.global != nil {
				for {
					tok = s.global.Take("", 1, time.Now().UnixNano())
					if tok.Allowed {
						break
					}
					if !sleepCtx(ctx, time.Duration(tok.RetryAfter)) {
						<-sem
						wg.Wait()
						return
					}
				}
			}
			now := time.Now()
			var idx uint64
			switch {
			case held.Len() > 0 && !held[0].at.After(now):
				idx = heap.Pop(&held).(deferred).idx
			case next < n:
				idx = next
				next++
			default:
				// Only held targets remain, none due yet.
				if s.global != nil {
					s.global.Refund(tok)
				}
				if !sleepCtx(ctx, held[0].at.Sub(now)) {
					<-sem
					wg.Wait()
					return
				}
				continue
			}
			t := set.targets.At(idx)
			dest := destOf(t.Target, s.cfg.PerPrefix)
			if s.backoff != nil {
				if wait := s.backoff.wait(dest, now); wait > 0 {
					if s.global != nil {
						s.global.Refund(tok)
					}
					heap.Push(&held, deferred{at: now.Add(wait), idx: idx})
					continue
				}
			}
			if s.dests != nil {
				if ok, wait := s.dests.take(dest, now); !ok {
					if s.global != nil {
						s.global.Refund(tok)
					}
					heap.Push(&held, deferred{at: now.Add(wait), idx: idx})
					continue
				}
			}
			launched = true
			wg.Add(1)
			s.started.Add(1)
			s.inFlight.Add(1)
			s.probe(ctx, t, set.mods, func(r *Result) {
				if s.backoff != nil {
					s.backoff.record(dest, r.Reason, time.Now())
				}
				s.inFlight.Add(-1)
				<-sem
				wg.Done()
			})
		}
	}
	wg.Wait()
}

// probe starts one probe; its result is recorded, then passed to done.
func (s *Scanner) probe(ctx context.Context, t Target, mods *Modules, done func(*Result)) {
	m := mods.Modules[t.Module]
	if m == nil {
		r := &Result{Target: t.Target, Module: t.Module, Start: time.Now(), Reason: ReasonOther, Error: fmt.Sprintf("unknown module %q", t.Module)}
		go func() { s.record(t.Module, r); done(r) }()
		return
	}
	s.prober.Start(ctx, t.Target, t.Module, m, func(r *Result) { s.record(t.Module, r); done(r) })
}

// record counts a finished probe and writes its line.
func (s *Scanner) record(module string, r *Result) {
	s.done.Add(1)
	s.passDone.Add(1)
	if !r.Success {
		s.failed.Add(1)
		s.reasonsMu.Lock()
		s.reasons[r.Reason]++
		s.reasonsMu.Unlock()
	}
	s.results.WithLabelValues(module, string(r.Reason)).Inc()
	s.duration.WithLabelValues(module).Observe(time.Duration(r.Duration).Seconds())
	if s.out != nil {
		if line, err := json.Marshal(r); err == nil {
			s.outMu.Lock()
			s.out.Write(line)
			s.out.WriteByte('\n')
			s.outMu.Unlock()
		}
	}
}

func (s *Scanner) flush() {
	if s.out == nil {
		return
	}
	s.outMu.Lock()
	s.out.Flush()
	s.outMu.Unlock()
}

// Stats are the scanner's counts so far.
type Stats struct {
	Started, Done, Failed, InFlight int64
	// Reasons counts failures by reason.
	Reasons map[Reason]int64
}

// Stats returns the counts so far.
func (s *Scanner) Stats() Stats {
	st := Stats{Started: s.started.Load(), Done: s.done.Load(), Failed: s.failed.Load(), InFlight: s.inFlight.Load(), Reasons: map[Reason]int64{}}
	s.reasonsMu.Lock()
	for k, v := range s.reasons {
		st.Reasons[k] = v
	}
	s.reasonsMu.Unlock()
	return st
}

// Progress writes a one-line status to w every period until ctx is done:
// probes per second, in flight, done, failures by reason and the pass's
// ETA. On a terminal each line overwrites the last.
func (s *Scanner) Progress(ctx context.Context, w io.Writer, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	lastDone, last := int64(0), time.Now()
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(w)
			return
		case now := <-t.C:
			st := s.Stats()
			rate := float64(st.Done-lastDone) / now.Sub(last).Seconds()
			lastDone, last = st.Done, now
			fmt.Fprintf(w, "\r%s", progressLine(st, rate, s.passTotal.Load()-s.passDone.Load()))
		}
	}
}

// progressLine spells the status; left is what the pass has still to
// probe, for the ETA at the current rate.
func progressLine(st Stats, rate float64, left int64) string {
	var reasons []string
	for k, v := range st.Reasons {
		reasons = append(reasons, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(reasons)
	eta := "-"
	if rate > 0 && left > 0 {
		eta = time.Duration(float64(left) / rate * float64(time.Second)).Round(time.Second).String()
	}
	return fmt.Sprintf("%.0f probes/s  in flight %d  done %d  failed %d [%s]  eta %s   ",
		rate, st.InFlight, st.Done, st.Failed, strings.Join(reasons, " "), eta)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
