package rollout

import (
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Monitor holds the sliding windows of the arms of one split: per arm, a
// ring of sub-windows, each with its request count, error count, latency
// histogram and time-to-first-token histogram.
//
// Observe is called by the data path, once per request, from any number of
// goroutines: it takes no lock and does not allocate (it adds to atomic
// counters of the current sub-window). Advance rotates the ring; it is
// called by one control goroutine (the Rollout's Tick), at least once per
// sub-window. Observe does not read the clock: a request is counted in the
// sub-window current when it finished, as last set by Advance.
//
// Memory is fixed at construction: per arm, Slots sub-windows of 10 280
// bytes (the latency histogram's 2 560 counters and five words) plus
// 10 240 bytes more once the arm has reported a TTFT: 602 KiB per arm with a
// Rollout's 60 sub-windows, 1.2 MiB with TTFT.
type Monitor struct {
	slot  time.Duration
	epoch time.Time
	arms  [][]subWindow
	cur   atomic.Int64 // number of the current sub-window, counted from epoch
	mu    sync.Mutex   // serializes Advance
}

// subWindow is one arm's counts over one sub-window.
type subWindow struct {
	num      atomic.Int64 // the sub-window number held, -1 before first use
	requests atomic.Uint64
	errors   atomic.Uint64
	ttftN    atomic.Uint64
	ttft     atomic.Pointer[atomicHist] // allocated at the first TTFT
	lat      atomicHist
	// tokens and streamNs add up the events streamed after the first
	// and the time they took, for the token rate.
	tokens   atomic.Uint64
	streamNs atomic.Uint64
}

// NewMonitor returns a Monitor of arms arms whose windows span slots
// sub-windows of slot each, starting at epoch.
func NewMonitor(arms, slots int, slot time.Duration, epoch time.Time) *Monitor {
	m := &Monitor{slot: slot, epoch: epoch, arms: make([][]subWindow, arms)}
	for a := range m.arms {
		m.arms[a] = make([]subWindow, slots)
		for i := range m.arms[a] {
			m.arms[a][i].num.Store(-1)
		}
		m.arms[a][0].num.Store(0)
	}
	return m
}

// ObserveStream adds one streamed response of arm to its token rate:
// tokens events after the first, sent over d. It takes no lock and does
// not allocate.
func (m *Monitor) ObserveStream(arm int, tokens int, d time.Duration) {
	if uint(arm) >= uint(len(m.arms)) || tokens <= 0 || d <= 0 {
		return
	}
	ring := m.arms[arm]
	w := &ring[uint64(m.cur.Load())%uint64(len(ring))]
	w.tokens.Add(uint64(tokens))
	w.streamNs.Add(uint64(d))
}

// Observe counts one finished request of arm: its latency (recorded in the
// latency histogram only when the request did not fail, so that fast
// failures do not make an arm look faster), whether it failed (a 5xx, a
// timeout, a gateway failure) and its time to first byte or token (0: none).
// An arm out of range is ignored.
func (m *Monitor) Observe(arm int, latency time.Duration, failed bool, ttft time.Duration) {
	if uint(arm) >= uint(len(m.arms)) {
		return
	}
	ring := m.arms[arm]
	w := &ring[uint64(m.cur.Load())%uint64(len(ring))]
	w.requests.Add(1)
	if failed {
		w.errors.Add(1)
	} else {
		w.lat.record(latency)
	}
	if ttft > 0 {
		h := w.ttft.Load()
		if h == nil {
			w.ttft.CompareAndSwap(nil, new(atomicHist))
			h = w.ttft.Load()
		}
		h.record(ttft)
		w.ttftN.Add(1)
	}
}

// SlotAt is the number of the sub-window that holds time t.
func (m *Monitor) SlotAt(t time.Time) int64 {
	if t.Before(m.epoch) {
		return 0
	}
	return int64(t.Sub(m.epoch) / m.slot)
}

// Current is the number of the current sub-window.
func (m *Monitor) Current() int64 { return m.cur.Load() }

// Slots is the number of sub-windows in the ring.
func (m *Monitor) Slots() int { return len(m.arms[0]) }

// Advance makes the sub-window holding now current, emptying the
// sub-windows it reuses. Time never goes back: an earlier now does nothing.
func (m *Monitor) Advance(now time.Time) {
	if m.SlotAt(now) <= m.cur.Load() {
		return // the common case, without the lock: nothing to rotate
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	n, cur := m.SlotAt(now), m.cur.Load()
	if n <= cur {
		return
	}
	slots := int64(m.Slots())
	for k := max(cur+1, n-slots+1); k <= n; k++ {
		for a := range m.arms {
			w := &m.arms[a][k%slots]
			w.requests.Store(0)
			w.errors.Store(0)
			w.ttftN.Store(0)
			w.tokens.Store(0)
			w.streamNs.Store(0)
			w.lat.reset()
			if h := w.ttft.Load(); h != nil {
				h.reset()
			}
			w.num.Store(k)
		}
	}
	// Emptied before made current, so that a request never lands in a
	// sub-window about to be emptied (bar one that read the index a whole
	// ring ago).
	m.cur.Store(n)
}

// ArmWindow is one arm's counts over a range of sub-windows.
type ArmWindow struct {
	// Requests and Errors count the requests and failed requests.
	Requests int64 `json:"requests"`
	Errors   int64 `json:"errors"`
	// TTFTCount counts the requests that reported a time to first token.
	TTFTCount int64 `json:"ttft_count"`
	// Tokens counts the events streamed after the first, StreamTime the
	// time they took, over the streamed responses (ObserveStream).
	Tokens     int64         `json:"tokens"`
	StreamTime time.Duration `json:"stream_time_ns"`
	// Latency holds one histogram (µs) per sub-window, oldest first, of
	// requests that did not fail; TTFT likewise for the time to first token
	// (nil when no request reported one).
	Latency []*hdrhistogram.Histogram `json:"-"`
	TTFT    []*hdrhistogram.Histogram `json:"-"`
}

// ErrorRate is Errors/Requests, 0 without requests.
func (w *ArmWindow) ErrorRate() float64 {
	if w.Requests == 0 {
		return 0
	}
	return float64(w.Errors) / float64(w.Requests)
}

// Window returns arm's counts over the sub-windows numbered from..to
// (inclusive) that the ring still holds.
func (m *Monitor) Window(arm int, from, to int64) ArmWindow {
	var out ArmWindow
	if uint(arm) >= uint(len(m.arms)) {
		return out
	}
	ring := m.arms[arm]
	from = max(from, to-int64(len(ring))+1, 0)
	counts := make([]int64, histLen)
	for k := from; k <= to; k++ {
		w := &ring[k%int64(len(ring))]
		if w.num.Load() != k {
			continue
		}
		out.Requests += int64(w.requests.Load())
		out.Errors += int64(w.errors.Load())
		out.Tokens += int64(w.tokens.Load())
		out.StreamTime += time.Duration(w.streamNs.Load())
		clear(counts)
		if w.lat.addTo(counts) > 0 {
			out.Latency = append(out.Latency, export(counts))
		}
		if h := w.ttft.Load(); h != nil && w.ttftN.Load() > 0 {
			clear(counts)
			if h.addTo(counts) > 0 {
				out.TTFT = append(out.TTFT, export(counts))
				out.TTFTCount += int64(w.ttftN.Load())
			}
		}
	}
	return out
}

// TokenRate is the window's streamed events per second after the first
// (the output token rate of LLM streams), 0 without streams.
func (w *ArmWindow) TokenRate() float64 {
	if w.StreamTime <= 0 {
		return 0
	}
	return float64(w.Tokens) / w.StreamTime.Seconds()
}

// LatencyQuantile returns the q-quantile (0–1) of the window's latencies,
// false when it holds none.
func (w *ArmWindow) LatencyQuantile(q float64) (time.Duration, bool) { return quantile(w.Latency, q) }

// TTFTQuantile returns the q-quantile (0–1) of the window's times to first
// token, false when it holds none.
func (w *ArmWindow) TTFTQuantile(q float64) (time.Duration, bool) { return quantile(w.TTFT, q) }

func quantile(hs []*hdrhistogram.Histogram, q float64) (time.Duration, bool) {
	if len(hs) == 0 {
		return 0, false
	}
	all := hdrhistogram.New(hs[0].LowestTrackableValue(), hs[0].HighestTrackableValue(), int(hs[0].SignificantFigures()))
	for _, h := range hs {
		all.Merge(h)
	}
	if all.TotalCount() == 0 {
		return 0, false
	}
	return time.Duration(all.ValueAtQuantile(100*q)) * time.Microsecond, true
}
