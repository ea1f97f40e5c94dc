package split

import (
	"bytes"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/rollout"
)

// Canary is the data path of a split's rollout: it gives the canary arm
// the rollout's current weight (the rest of what the baseline and canary
// carry together goes to the baseline; other arms keep their weights) and
// reports every request of the two arms to the rollout's live comparison.
// It is built per configuration over a Rollout that outlives it (see
// Control).
type Canary struct {
	r *rollout.Rollout
	// armOf maps a split arm's index to rollout.Baseline, rollout.Canary or
	// -1 (an arm the rollout does not judge).
	armOf []int8
	// names and weights are the arms' names and configured weights;
	// baseline and canary index them.
	names            []string
	weights          []float64
	baseline, canary int
	cur              atomic.Pointer[weighted]
	writers          sync.Pool
}

// weighted is the selector of one canary weight.
type weighted struct {
	weight int
	sel    *Selector
}

// NewCanary returns the data path of r over a split's arms (names and
// configured weights, in order), baseline and canary being indexes into
// them.
func NewCanary(r *rollout.Rollout, names []string, weights []float64, baseline, canary int) *Canary {
	c := &Canary{r: r, names: names, weights: weights, baseline: baseline, canary: canary,
		armOf: make([]int8, len(names))}
	for i := range c.armOf {
		c.armOf[i] = -1
	}
	c.armOf[baseline], c.armOf[canary] = rollout.Baseline, rollout.Canary
	c.writers.New = func() any { return new(firstByteWriter) }
	c.selector()
	return c
}

// selector returns the selector of the rollout's current weight, building
// it when the weight changed (once per step, not per request).
func (c *Canary) selector() *Selector {
	w := c.r.Weight()
	p := c.cur.Load()
	if p != nil && p.weight == w {
		return p.sel
	}
	ws := append([]float64(nil), c.weights...)
	pair := c.weights[c.baseline] + c.weights[c.canary]
	ws[c.canary] = pair * float64(w) / 100
	ws[c.baseline] = pair - ws[c.canary]
	np := &weighted{weight: w, sel: NewSelector(c.names, ws)}
	c.cur.CompareAndSwap(p, np)
	return np.sel
}

// serve forwards x to next, the handler of split arm i, and reports the
// outcome to the rollout when i is one of its arms.
func (c *Canary) serve(x *exchange.Exchange, next exchange.Handler, i int) {
	arm := c.armOf[i]
	if arm < 0 {
		next.ServeExchange(x)
		return
	}
	start := x.Start
	if start.IsZero() {
		start = time.Now()
	}
	fw := c.writers.Get().(*firstByteWriter)
	fw.ResponseWriter = x.W
	x.W = fw
	next.ServeExchange(x)
	x.W = fw.ResponseWriter
	end := time.Now()
	var ttft time.Duration
	if fw.stream && !fw.first.IsZero() {
		ttft = fw.first.Sub(start)
		c.r.Monitor().ObserveStream(int(arm), fw.events-1, end.Sub(fw.first))
	}
	*fw = firstByteWriter{}
	c.writers.Put(fw)
	c.r.Observe(int(arm), end.Sub(start), failed(x), ttft)
}

// failed reports whether x counts as a failure for the comparison: a 5xx
// (which includes penstock's own 502, 503 and 504 for upstream failures and
// timeouts), a response cut after its status, no response at all, or a
// client that gave up waiting (499): both arms see the same clients, so an
// arm that makes them give up more often is worse.
func failed(x *exchange.Exchange) bool {
	s := x.State.Status
	return s >= 500 || s == 499 || s == 0 || x.State.Aborted
}

// firstByteWriter notes when the first body byte of a server-sent events
// response is written (the time to first token of a streamed completion)
// and counts the events that follow (the token rate): an event ends with a
// blank line (WHATWG HTML, server-sent events §9.2.6), counted as "\n\n"
// even when it spans two writes. Pooled per Canary, so a judged request
// allocates nothing.
type firstByteWriter struct {
	exchange.ResponseWriter
	first  time.Time
	stream bool
	seen   bool
	events int
	lastNL bool // the last byte written was '\n'
}

func (w *firstByteWriter) Write(p []byte) (int, error) {
	if !w.seen && len(p) > 0 {
		w.seen = true
		if ct, _ := w.Header().Get("Content-Type"); strings.HasPrefix(ct, "text/event-stream") {
			w.stream, w.first = true, time.Now()
		}
	}
	if w.stream && len(p) > 0 {
		if w.lastNL && p[0] == '\n' {
			w.events++
		}
		w.events += bytes.Count(p, eventEnd)
		w.lastNL = p[len(p)-1] == '\n'
	}
	return w.ResponseWriter.Write(p)
}

var eventEnd = []byte("\n\n")
