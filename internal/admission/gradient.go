package admission

import (
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Gradient is an adaptive concurrency limit: the gradient controller of
// Envoy's adaptive_concurrency filter (envoyproxy.io/docs/envoy/latest/
// configuration/http/http_filters/adaptive_concurrency_filter), itself a
// variant of the gradient limit of Netflix's concurrency-limits library.
// It sets the limit of a Limiter from the latency of the requests it
// admits, so that a slowing upstream gets fewer requests at once and the
// excess is refused at once instead of waiting in a queue at the upstream.
//
// The algorithm:
//
//  1. minRTT, the upstream's latency without load, is measured by a probe:
//     the limit is pinned to MinLimit until MinRTTSamples requests admitted
//     during the probe have completed, and minRTT is the Percentile of their
//     latencies. Requests admitted before the probe began are not counted
//     (they saw the loaded upstream). The first probe runs at start; the next
//     after MinRTTInterval plus up to 15 % jitter (so that several gateways
//     do not all probe at once), or sooner when the limit has stayed at its
//     floor for 5 windows with the latency still above tolerance: within
//     twice MinLimit, since the square-root headroom keeps the limit's
//     lowest fixed point above MinLimit itself (with MinLimit 3 and an
//     upstream twice as slow as minRTT, 4 × 0.625 + √2.5 ≈ 4). The upstream
//     is then simply slower than when minRTT was measured, and without a
//     new measurement the limit would stay at its floor. At the end of a
//     probe the limit returns to its value before the probe. A probe lasts
//     at most 20 windows (2 s by default): requests that hold their slots
//     for long (streams admitted before it) must not pin the limit at
//     MinLimit for their whole length, so it then ends with the samples it
//     has, or none (minRTT stays as it was).
//
//  2. Outside probes, every Window (or 4 × minRTT if longer) the Percentile
//     of that window's latencies is sampleRTT, and
//
//     gradient = clamp(minRTT × Tolerance / sampleRTT, 0.5, 2)
//     limit    = clamp(limit × gradient + √(limit × gradient), MinLimit, MaxLimit)
//
//     The gradient is below 1 when latency exceeds the tolerated multiple of
//     the no-load latency (requests are queueing at the upstream), and the
//     limit shrinks, at most by half per window; the square-root headroom
//     lets a small queue form so that the limit keeps probing upwards when
//     latency is fine.
//
//  3. Unlike Envoy, and as Netflix's Gradient2 does, the limit does not grow
//     in a window where the peak in-flight count stayed below half of it:
//     low latency under light load says nothing about a higher limit, and a
//     limit grown without evidence would let a burst through unchecked.
//
// Why a probe rather than a long-window minimum (Netflix Gradient2 keeps an
// exponential average of latency instead): once the limit keeps a steady
// queue at the upstream, every latency it sees includes that queue, so a
// minimum or average over a window drifts upward and the limit with it. Only
// a moment without load shows the no-load latency; Envoy pays for it with a
// short period at MinLimit (more 503s while a probe runs), and so does
// penstock.
//
// A Gradient reads the time only through GradientConfig.Now, so tests drive it with
// a fake clock. Sample is safe for concurrent use and takes no lock except
// once per window (or per probe) to recompute the limit.
type Gradient struct {
	cfg  GradientConfig
	lim  *Limiter
	base time.Time // the clock's zero: times are nanoseconds since base

	hist    histogram
	samples atomic.Int64 // in hist since the last drain
	peak    atomic.Int64 // highest in-flight count seen this window
	probing atomic.Bool
	epoch   atomic.Uint32 // bumped when a probe starts
	minRTT  atomic.Int64  // nanoseconds; 0 until the first probe ends
	due     atomic.Int64  // when the window ends (ns since base)
	// probeEnd is the running probe's deadline (ns since base).
	probeEnd atomic.Int64

	mu        sync.Mutex // guards what follows, and every limit change
	limit     float64
	saved     float64 // the limit before the probe
	nextProbe int64   // ns since base
	atMinimum int     // consecutive windows that ended at the floor, still slow
	rand      func() float64
}

// GradientConfig configures a Gradient. Zero fields take the defaults
// given; NewGradient does not validate beyond that (the stage checks the
// configuration).
type GradientConfig struct {
	// MinLimit is the lowest limit, and the limit during a probe. Default 3.
	MinLimit int
	// MaxLimit is the highest limit. Default 1000.
	MaxLimit int
	// InitialLimit is the limit the first probe returns to. Default 20.
	InitialLimit int
	// Window is how often the limit is recomputed from the latencies of
	// the requests that completed since. Default 100ms.
	Window time.Duration
	// Tolerance is how many times the no-load latency a window's latency
	// may reach before the limit shrinks. Default 1.25 (Envoy's default
	// minRTT buffer of 25 %).
	Tolerance float64
	// Percentile (0 < p ≤ 1) of a window's latencies taken as its latency,
	// and of a probe's as minRTT. Default 0.5, as Envoy: the median of a
	// probe is not thrown off by a few outliers of a noisy host, which
	// would otherwise inflate minRTT, and the limit with it, until the
	// next probe.
	Percentile float64
	// MinRTTInterval is the time between probes. Default 60s.
	MinRTTInterval time.Duration
	// MinRTTSamples is how many requests a probe measures. Default 50, as Envoy.
	MinRTTSamples int
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Rand returns a number in [0, 1) for the probes' jitter. Default
	// math/rand/v2's Float64.
	Rand func() float64
}

// Defaults of GradientConfig.
const (
	DefaultMinLimit       = 3
	DefaultMaxLimit       = 1000
	DefaultInitialLimit   = 20
	DefaultWindow         = 100 * time.Millisecond
	DefaultTolerance      = 1.25
	DefaultPercentile     = 0.5
	DefaultMinRTTInterval = 60 * time.Second
	DefaultMinRTTSamples  = 50
)

const (
	probeJitter    = 0.15 // of MinRTTInterval, added at random
	minWindowsStop = 5    // windows at the floor that trigger a probe
	minGradient    = 0.5
	maxGradient    = 2.0
)

// NewGradient returns an adaptive limit that drives l's limit, starting
// with a probe (l's limit becomes cfg.MinLimit at once).
func NewGradient(l *Limiter, cfg GradientConfig) *Gradient {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&cfg.MinLimit, DefaultMinLimit)
	def(&cfg.MaxLimit, DefaultMaxLimit)
	def(&cfg.InitialLimit, DefaultInitialLimit)
	def(&cfg.MinRTTSamples, DefaultMinRTTSamples)
	cfg.MaxLimit = max(cfg.MaxLimit, cfg.MinLimit)
	cfg.InitialLimit = min(max(cfg.InitialLimit, cfg.MinLimit), cfg.MaxLimit)
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.Tolerance <= 0 {
		cfg.Tolerance = DefaultTolerance
	}
	if cfg.Percentile <= 0 || cfg.Percentile > 1 {
		cfg.Percentile = DefaultPercentile
	}
	if cfg.MinRTTInterval <= 0 {
		cfg.MinRTTInterval = DefaultMinRTTInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Float64
	}
	g := &Gradient{cfg: cfg, lim: l, base: cfg.Now(), rand: cfg.Rand, limit: float64(cfg.InitialLimit)}
	g.mu.Lock()
	g.startProbe(0)
	g.mu.Unlock()
	return g
}

func (g *Gradient) now() int64 { return int64(g.cfg.Now().Sub(g.base)) }

// Limiter returns the limiter g drives.
func (g *Gradient) Limiter() *Limiter { return g.lim }

// Epoch is read before a request is admitted and passed to its Sample: it
// tells a probe which requests were admitted after it began.
func (g *Gradient) Epoch() uint32 { return g.epoch.Load() }

// Admitted notes the in-flight count after an admission, for the
// app-limited rule (rule 3 above). One load, and a compare-and-swap only
// when the peak rises.
func (g *Gradient) Admitted() {
	n := int64(g.lim.InFlight())
	for {
		p := g.peak.Load()
		if n <= p || g.peak.CompareAndSwap(p, n) {
			return
		}
	}
}

// Sample records the latency of a request admitted at epoch that
// completed, and recomputes the limit when a window or a probe is over. A
// request admitted before the latest probe began is not counted: during
// the probe it saw the loaded upstream, and after it, its latency belongs
// to a window already gone.
func (g *Gradient) Sample(epoch uint32, rtt time.Duration) {
	if epoch != g.epoch.Load() {
		return
	}
	if g.probing.Load() {
		g.hist.add(rtt)
		if g.samples.Add(1) >= int64(g.cfg.MinRTTSamples) {
			g.tryEndProbe(g.now(), true)
		} else {
			g.Refused()
		}
		return
	}
	g.hist.add(rtt)
	g.samples.Add(1)
	if now := g.now(); now >= g.due.Load() && g.mu.TryLock() {
		if !g.probing.Load() && now >= g.due.Load() {
			g.update(now)
		}
		g.mu.Unlock()
	}
}

// Refused is called when a request was refused: while a probe runs, most
// requests are, and a probe whose requests do not complete in time (long
// streams still holding the slots it needs) is ended here, so that it
// cannot pin the limit for longer than its deadline. Outside probes it
// costs one atomic load.
func (g *Gradient) Refused() {
	if g.probing.Load() {
		if now := g.now(); now >= g.probeEnd.Load() {
			g.tryEndProbe(now, false)
		}
	}
}

// tryEndProbe ends the probe if it is still running and has its samples
// (full) or is past its deadline, unless another request is already at it.
func (g *Gradient) tryEndProbe(now int64, full bool) {
	if !g.mu.TryLock() {
		return
	}
	if g.probing.Load() && (full && g.samples.Load() >= int64(g.cfg.MinRTTSamples) || now >= g.probeEnd.Load()) {
		g.endProbe(now)
	}
	g.mu.Unlock()
}

// probeWindows bounds a probe: it ends after this many sample windows
// (2 s by default; 80 × the previous minRTT if longer) with the samples it
// has.
const probeWindows = 20

// startProbe pins the limit to MinLimit and starts counting the latencies
// of the requests admitted from now on. g.mu is held.
func (g *Gradient) startProbe(now int64) {
	g.probeEnd.Store(now + probeWindows*g.window())
	g.saved = g.limit
	g.epoch.Add(1)
	g.hist.reset()
	g.samples.Store(0)
	g.probing.Store(true)
	g.setLimit(float64(g.cfg.MinLimit))
}

// endProbe takes minRTT from the probe's samples and restores the limit.
// g.mu is held.
func (g *Gradient) endProbe(now int64) {
	rtt, n := g.hist.drain(g.cfg.Percentile)
	g.samples.Store(0)
	if n > 0 {
		g.minRTT.Store(int64(max(rtt, 1)))
	}
	g.atMinimum = 0
	interval := float64(g.cfg.MinRTTInterval)
	g.nextProbe = now + int64(interval+interval*probeJitter*g.rand())
	if g.minRTT.Load() == 0 {
		// Nothing measured yet: the limit stays as it was, and the next
		// probe comes after as long as this one lasted.
		g.nextProbe = now + probeWindows*int64(g.cfg.Window)
	}
	g.due.Store(now + g.window())
	g.peak.Store(int64(g.lim.InFlight()))
	g.setLimit(g.saved)
	g.probing.Store(false)
}

// update ends a window: it recomputes the limit from the window's latency,
// or starts a probe when one is due. g.mu is held.
func (g *Gradient) update(now int64) {
	if now >= g.nextProbe || g.atMinimum >= minWindowsStop {
		g.startProbe(now)
		return
	}
	g.due.Store(now + g.window())
	sampleRTT, n := g.hist.drain(g.cfg.Percentile)
	g.samples.Store(0)
	peak := g.peak.Swap(int64(g.lim.InFlight()))
	if n == 0 || g.minRTT.Load() == 0 {
		return
	}
	gradient := g.cfg.Tolerance * float64(g.minRTT.Load()) / float64(max(sampleRTT, 1))
	gradient = min(max(gradient, minGradient), maxGradient)
	if gradient > 1 && float64(peak) < g.limit/2 {
		// Light load: keep the limit (rule 3).
		return
	}
	limit := g.limit * gradient
	limit += math.Sqrt(limit)
	g.setLimit(limit)
	if int(g.limit) <= 2*g.cfg.MinLimit && gradient < 1 {
		g.atMinimum++
	} else {
		g.atMinimum = 0
	}
}

// setLimit bounds limit and applies it. g.mu is held.
func (g *Gradient) setLimit(limit float64) {
	g.limit = min(max(limit, float64(g.cfg.MinLimit)), float64(g.cfg.MaxLimit))
	g.lim.SetLimit(int(g.limit))
}

// windowsPerRTT is how many minRTTs a window lasts at least.
const windowsPerRTT = 4

// window returns the length of the next window: Window, or 4 × minRTT if
// that is longer, so that a window sees several round trips. A limit
// changed once per round trip or faster would react to latencies its
// previous change has not shaped yet, and oscillate.
func (g *Gradient) window() int64 {
	return max(int64(g.cfg.Window), windowsPerRTT*g.minRTT.Load())
}

// MinRTT returns the no-load latency of the last probe, 0 before the first
// has ended.
func (g *Gradient) MinRTT() time.Duration { return time.Duration(g.minRTT.Load()) }

// Probing reports whether a minRTT probe is running.
func (g *Gradient) Probing() bool { return g.probing.Load() }
