package rollout

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// The arms a Rollout compares, as passed to Observe.
const (
	Baseline = 0
	Canary   = 1
)

// Step is one stage of a rollout.
type Step struct {
	// Weight is the canary's share of the traffic during the step, in percent
	// (1..100). A step of 100 is the promotion: reaching it ends the rollout.
	Weight int `json:"weight"`
	// Hold is how long the step lasts at least. Default: the Window.
	Hold time.Duration `json:"hold,omitempty"`
	// MinRequests is how many canary requests the step needs at least before
	// it may advance. Default 0 (Hold alone decides).
	MinRequests int64 `json:"min_requests,omitempty"`
}

// Definition describes a rollout. Its Hash identifies it: a restored state
// whose hash differs is discarded and the rollout starts anew.
type Definition struct {
	// Steps are the canary's weights, ascending. Default 1, 5, 25, 50, 100.
	Steps []Step `json:"steps"`
	// Window is the analysis window: every Window the last Window of
	// traffic of the current step is compared. Default 30 s.
	Window time.Duration `json:"window"`
	// Slot is the sub-window: the unit of the sliding window and of block
	// resampling. Default Window/60 (500 ms for 30 s): the block tests need
	// tens of sub-windows to reach a p-value below Alpha (60 sub-windows
	// make blocks of 8 and at least 3 432 distinct deals). Window/Slot
	// sub-windows are kept per arm.
	Slot time.Duration `json:"slot"`
	// SLO is what the canary must keep at every step.
	SLO SLO `json:"slo"`
	// Analysis tunes the tests.
	Analysis Analysis `json:"analysis"`
}

func (d Definition) withDefaults() (Definition, error) {
	if len(d.Steps) == 0 {
		d.Steps = []Step{{Weight: 1}, {Weight: 5}, {Weight: 25}, {Weight: 50}, {Weight: 100}}
	}
	if d.Window == 0 {
		d.Window = 30 * time.Second
	}
	if d.Slot == 0 {
		d.Slot = d.Window / 60
	}
	d.Analysis = d.Analysis.withDefaults()
	switch {
	case d.Slot <= 0 || d.Window < d.Slot:
		return d, fmt.Errorf("window %s, slot %s: want 0 < slot <= window", d.Window, d.Slot)
	case d.Window/d.Slot > 3600:
		return d, fmt.Errorf("window %s, slot %s: at most 3600 slots per window", d.Window, d.Slot)
	case !(d.Analysis.Alpha > 0 && d.Analysis.Alpha < 0.5):
		return d, fmt.Errorf("analysis.alpha %v: want a value between 0 and 0.5", d.Analysis.Alpha)
	case !(d.Analysis.KSAlpha > 0 && d.Analysis.KSAlpha < 0.5):
		return d, fmt.Errorf("analysis.ks_alpha %v: want a value between 0 and 0.5", d.Analysis.KSAlpha)
	case d.Analysis.MinRequests < 1:
		return d, fmt.Errorf("analysis.min_requests %d: want at least 1", d.Analysis.MinRequests)
	case d.Analysis.Resamples < 10:
		return d, fmt.Errorf("analysis.resamples %d: want at least 10", d.Analysis.Resamples)
	}
	steps := make([]Step, len(d.Steps))
	prev := 0
	for i, s := range d.Steps {
		if s.Weight <= prev || s.Weight > 100 {
			return d, fmt.Errorf("steps[%d].weight %d: want ascending weights in 1..100", i, s.Weight)
		}
		prev = s.Weight
		if s.Hold < 0 || s.MinRequests < 0 {
			return d, fmt.Errorf("steps[%d]: hold %s, min_requests %d: want 0 or more", i, s.Hold, s.MinRequests)
		}
		if s.Hold == 0 {
			s.Hold = d.Window
		}
		steps[i] = s
	}
	d.Steps = steps
	return d, nil
}

// Hash identifies the definition (after defaults).
func (d Definition) Hash() string {
	b, _ := json.Marshal(d)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// Phase is where a rollout stands.
type Phase string

const (
	Progressing Phase = "progressing"
	Paused      Phase = "paused"
	RolledBack  Phase = "rolled_back"
	Promoted    Phase = "promoted"
	Aborted     Phase = "aborted"
)

// EventKind names what happened.
type EventKind string

const (
	EventStarted    EventKind = "started"
	EventAdvanced   EventKind = "advanced"
	EventRolledBack EventKind = "rolled_back"
	EventPaused     EventKind = "paused"
	EventResumed    EventKind = "resumed"
	EventPromoted   EventKind = "promoted"
	EventAborted    EventKind = "aborted"
	EventRestored   EventKind = "restored"
)

// Event is one entry of a rollout's history.
type Event struct {
	At   time.Time `json:"at"`
	Kind EventKind `json:"kind"`
	// Step is the index of the step after the event; Weight the canary's
	// weight after it, percent.
	Step   int `json:"step"`
	Weight int `json:"weight"`
	// Reason says why (the breached check, the manual action, ...).
	Reason string `json:"reason,omitempty"`
}

// HistoryLen bounds a rollout's history; older events are dropped.
const HistoryLen = 64

// Options are the hooks of a Rollout. Nil fields take safe defaults.
type Options struct {
	// Clock gives the time. Default time.Now.
	Clock func() time.Time
	// OnEvent is called with every event, after the rollout's lock is
	// released, from the goroutine that caused it (Tick or a manual action).
	// It must not block for long. Default nil.
	OnEvent func(Event)
	// Shared, when set, keeps the state where a fleet of nodes shares it:
	// analyses judge the windows it merges from every node (and are skipped
	// when it gives none: on a node that does not judge, or while the store
	// is out of reach), and every change of state is committed to it before
	// it takes effect (a change it refuses is discarded). The sub-windows
	// are then numbered from the Unix epoch, so that every node's line up.
	// Default nil: the state is the rollout's own.
	Shared Shared
}

// Rollout moves a canary's weight through the steps of a Definition,
// judging the canary against the baseline on live traffic, and rolls it back
// at the first breach of the SLO.
//
// The data path calls Observe for every request of either arm and reads
// Weight; a control goroutine calls Tick once per Slot. All methods are safe
// for concurrent use.
type Rollout struct {
	def     Definition
	hash    string
	opt     Options
	monitor *Monitor
	weight  atomic.Int32

	mu    sync.Mutex
	st    State
	seed  uint64
	since int64 // the sub-window in which the current analysis window began
}

// State is a rollout's persistent state, as JSON.
type State struct {
	// Definition is the hash of the definition it belongs to.
	Definition string `json:"definition"`
	Phase      Phase  `json:"phase"`
	// Step is the index of the current step; Weight the canary's weight.
	Step   int `json:"step"`
	Weight int `json:"weight"`
	// StepStarted is when the current step began.
	StepStarted time.Time `json:"step_started"`
	// StepRequests counts the canary's requests seen by analyses of the
	// current step.
	StepRequests int64 `json:"step_requests"`
	// Last is the latest verdict, nil before the first analysis.
	Last    *Verdict `json:"last,omitempty"`
	History []Event  `json:"history"`
}

// New starts a rollout of def at its first step.
func New(def Definition, opt Options) (*Rollout, error) {
	def, err := def.withDefaults()
	if err != nil {
		return nil, err
	}
	if opt.Clock == nil {
		opt.Clock = time.Now
	}
	now := opt.Clock()
	r := &Rollout{def: def, hash: def.Hash(), opt: opt}
	epoch := now
	if opt.Shared != nil {
		epoch = time.Unix(0, 0)
	}
	r.monitor = NewMonitor(2, int(def.Window/def.Slot), def.Slot, epoch)
	r.monitor.Advance(now)
	var evs []Event
	r.mu.Lock()
	r.st = State{Definition: r.hash}
	evs = r.enterStep(now, 0, EventStarted, "")
	r.weight.Store(int32(r.st.Weight))
	r.mu.Unlock()
	r.emit(evs)
	return r, nil
}

// Definition returns the definition, with defaults filled in.
func (r *Rollout) Definition() Definition { return r.def }

// Observe counts one request of arm (Baseline or Canary); see
// Monitor.Observe. It takes no lock and does not allocate.
func (r *Rollout) Observe(arm int, latency time.Duration, failed bool, ttft time.Duration) {
	r.monitor.Observe(arm, latency, failed, ttft)
}

// Weight is the canary's current share of the traffic, in percent.
func (r *Rollout) Weight() int { return int(r.weight.Load()) }

// Monitor returns the rollout's sliding windows.
func (r *Rollout) Monitor() *Monitor { return r.monitor }

// Tick rotates the sliding windows and, when a window has passed since the
// last analysis, analyses it: a failed verdict rolls back at once; a passed
// one advances the step once it has been held long enough. It returns the
// verdict when it analysed (nil otherwise).
func (r *Rollout) Tick() *Verdict {
	now := r.opt.Clock()
	r.monitor.Advance(now)
	r.mu.Lock()
	// Time is counted in whole sub-windows, so that a Slot that does not
	// divide the Window evenly does not delay an analysis by one tick.
	cur := r.monitor.Current()
	if r.st.Phase != Progressing || cur-r.since < int64(r.monitor.Slots()) {
		r.mu.Unlock()
		return nil
	}
	// The sub-windows since the analysis window began, bar the current one
	// (still filling) and the first (which may hold traffic from before it).
	from, to := r.since+1, cur-1
	var b, c ArmWindow
	if sh := r.opt.Shared; sh != nil {
		var err error
		if b, c, err = sh.Windows(from, to); err != nil {
			// Not this node's to judge, or not every node's figures: the
			// window is judged at a later tick, or by another node.
			r.mu.Unlock()
			return nil
		}
	} else {
		b, c = r.monitor.Window(Baseline, from, to), r.monitor.Window(Canary, from, to)
	}
	prev, prevSince := r.saved()
	r.since = cur
	r.seed++
	v := Analyze(b, c, r.def.SLO, r.def.Analysis, r.seed)
	v.Finite()
	r.st.Last = &v
	var evs []Event
	switch v.Outcome {
	case Fail:
		r.st.Phase = RolledBack
		r.setWeight(0)
		evs = append(evs, r.record(now, EventRolledBack, v.Reason))
	case Pass:
		r.st.StepRequests += c.Requests
		step := r.def.Steps[r.st.Step]
		held := now.Sub(r.st.StepStarted) + r.def.Slot/2 // to the nearest sub-window
		if held >= step.Hold && r.st.StepRequests >= step.MinRequests {
			evs = r.enterStep(now, r.st.Step+1, EventAdvanced, "")
		}
	}
	if r.commit(prev, prevSince) != nil {
		r.mu.Unlock()
		return nil
	}
	r.mu.Unlock()
	r.emit(evs)
	return &v
}

// enterStep moves to step i (promoting past the last step or at weight
// 100). Called with r.mu held.
func (r *Rollout) enterStep(now time.Time, i int, kind EventKind, reason string) []Event {
	if i >= len(r.def.Steps) || r.def.Steps[i].Weight == 100 {
		r.st.Step = min(i, len(r.def.Steps)-1)
		r.st.Phase = Promoted
		r.setWeight(100)
		return []Event{r.record(now, EventPromoted, reason)}
	}
	r.st.Step, r.st.Phase = i, Progressing
	r.st.StepStarted, r.st.StepRequests = now, 0
	r.since = r.monitor.SlotAt(now)
	r.setWeight(r.def.Steps[i].Weight)
	return []Event{r.record(now, kind, reason)}
}

// setWeight sets the state's weight; commit makes it the data path's.
func (r *Rollout) setWeight(w int) {
	r.st.Weight = w
}

// saved returns a copy of the state and the analysis window's start, for
// commit to put back if the change is refused. Called with r.mu held.
func (r *Rollout) saved() (State, int64) {
	s := r.st
	if r.opt.Shared != nil {
		s.History = append([]Event(nil), r.st.History...)
	}
	return s, r.since
}

// commit makes the change of state since prev take effect: committed to
// the Shared first, when there is one, and put back to prev if it refuses.
// Called with r.mu held.
func (r *Rollout) commit(prev State, prevSince int64) error {
	if sh := r.opt.Shared; sh != nil {
		st := r.st
		st.History = append([]Event(nil), r.st.History...)
		if err := sh.Commit(st, r.since); err != nil {
			r.st, r.since = prev, prevSince
			return err
		}
	}
	r.weight.Store(int32(r.st.Weight))
	return nil
}

func (r *Rollout) record(now time.Time, kind EventKind, reason string) Event {
	e := Event{At: now, Kind: kind, Step: r.st.Step, Weight: r.st.Weight, Reason: reason}
	if len(r.st.History) >= HistoryLen {
		r.st.History = append(r.st.History[:0], r.st.History[1:]...)
	}
	r.st.History = append(r.st.History, e)
	return e
}

func (r *Rollout) emit(evs []Event) {
	if r.opt.OnEvent == nil {
		return
	}
	for _, e := range evs {
		r.opt.OnEvent(e)
	}
}

// ErrPhase is returned by a manual action the rollout's phase does not allow.
var ErrPhase = errors.New("not allowed in this phase")

func (r *Rollout) act(allowed []Phase, do func(now time.Time) []Event) error {
	now := r.opt.Clock()
	r.mu.Lock()
	ok := false
	for _, p := range allowed {
		ok = ok || r.st.Phase == p
	}
	if !ok {
		p := r.st.Phase
		r.mu.Unlock()
		return fmt.Errorf("rollout is %s: %w", p, ErrPhase)
	}
	prev, prevSince := r.saved()
	evs := do(now)
	if err := r.commit(prev, prevSince); err != nil {
		r.mu.Unlock()
		return err
	}
	r.mu.Unlock()
	r.emit(evs)
	return nil
}

// Pause stops the analysis and holds the current weight.
func (r *Rollout) Pause(reason string) error {
	return r.act([]Phase{Progressing}, func(now time.Time) []Event {
		r.st.Phase = Paused
		return []Event{r.record(now, EventPaused, reason)}
	})
}

// Resume restarts a paused rollout; the current step is held anew from now.
func (r *Rollout) Resume(reason string) error {
	return r.act([]Phase{Paused}, func(now time.Time) []Event {
		return r.enterStep(now, r.st.Step, EventResumed, reason)
	})
}

// Promote sends all traffic to the canary and ends the rollout.
func (r *Rollout) Promote(reason string) error {
	return r.act([]Phase{Progressing, Paused}, func(now time.Time) []Event {
		return r.enterStep(now, len(r.def.Steps), EventPromoted, reason)
	})
}

// Abort sends all traffic to the baseline and ends the rollout.
func (r *Rollout) Abort(reason string) error {
	return r.act([]Phase{Progressing, Paused}, func(now time.Time) []Event {
		r.st.Phase = Aborted
		r.setWeight(0)
		return []Event{r.record(now, EventAborted, reason)}
	})
}

// Snapshot returns the rollout's state (a copy), to persist as JSON.
func (r *Rollout) Snapshot() State {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.st
	s.History = append([]Event(nil), r.st.History...)
	return s
}

// Restore replaces the rollout's state by s, saved by Snapshot of a rollout
// of the same definition. A state of another definition (or of a step the
// definition does not have) is not restored: the rollout keeps its fresh
// start and Restore returns false and says why, for the log. The sliding
// windows start empty: the next analysis comes one Window after Restore.
func (r *Rollout) Restore(s State) (bool, string) {
	s, why := r.check(s)
	if why != "" {
		return false, why + ": starting anew"
	}
	now := r.opt.Clock()
	r.mu.Lock()
	r.st = s
	r.setWeight(s.Weight)
	r.weight.Store(int32(s.Weight))
	r.since = r.monitor.SlotAt(now)
	e := r.record(now, EventRestored, "")
	r.mu.Unlock()
	r.emit([]Event{e})
	return true, ""
}

// check returns s fit to be this rollout's state (its weight following
// from its phase and step, its history bounded), or why it is not.
func (r *Rollout) check(s State) (State, string) {
	if s.Definition != r.hash {
		return s, fmt.Sprintf("definition changed (%s → %s)", s.Definition, r.hash)
	}
	if s.Step < 0 || s.Step >= len(r.def.Steps) {
		return s, fmt.Sprintf("step %d out of range", s.Step)
	}
	switch s.Phase {
	case Progressing, Paused, RolledBack, Promoted, Aborted:
	default:
		return s, fmt.Sprintf("unknown phase %q", s.Phase)
	}
	// The weight follows from the phase and the step, not from the file.
	switch s.Phase {
	case RolledBack, Aborted:
		s.Weight = 0
	case Promoted:
		s.Weight = 100
	default:
		s.Weight = r.def.Steps[s.Step].Weight
	}
	if len(s.History) > HistoryLen {
		s.History = s.History[len(s.History)-HistoryLen:]
	}
	s.History = append([]Event(nil), s.History...)
	return s, ""
}

// Adopt makes s, a state the fleet committed (seen by a Shared's watch),
// this rollout's state, since being the sub-window after which its next
// analysis window begins. It reports no event of its own and calls no
// OnEvent: it returns the events of s's history newer than this rollout's
// last, for the log. A state of another definition is refused.
func (r *Rollout) Adopt(s State, since int64) ([]Event, error) {
	s, why := r.check(s)
	if why != "" {
		return nil, errors.New(why)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var last time.Time
	if n := len(r.st.History); n > 0 {
		last = r.st.History[n-1].At
	}
	var fresh []Event
	for _, e := range s.History {
		if e.At.After(last) {
			fresh = append(fresh, e)
		}
	}
	r.st, r.since = s, since
	r.weight.Store(int32(s.Weight))
	return fresh, nil
}

// Since is the sub-window after which the next analysis window begins.
func (r *Rollout) Since() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.since
}
