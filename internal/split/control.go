package split

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/penstock-dev/penstock/internal/rollout"
)

// RolloutMetrics receives a rollout's events and analyses (a
// *metrics.Rollout). Its methods are called by the control goroutine and
// by manual actions, never per request.
type RolloutMetrics interface {
	Weight(percent int)
	Phase(phase string)
	Event(kind string)
	Analysis(v *rollout.Verdict)
}

// ControlOptions describe the rollout of one split route.
type ControlOptions struct {
	// Route is the split route's name; Baseline and Canary its two judged
	// arms' names.
	Route, Baseline, Canary string
	// Definition is the rollout's definition.
	Definition rollout.Definition
	// StateFile is where the state is saved at every event and analysis,
	// and read at start. "" keeps no state.
	StateFile string
	// Webhook, when set, receives every event as a JSON POST, from a
	// goroutine of its own (at most WebhookQueue events wait; more are
	// dropped and logged). WebhookTimeout bounds each POST.
	Webhook        string
	WebhookTimeout time.Duration
	// Logger gets one line per event. Nil means slog.Default().
	Logger *slog.Logger
	// Metrics, when set, follows the rollout.
	Metrics RolloutMetrics
	// Clock gives the time (tests). Default time.Now.
	Clock func() time.Time
	// Shared, when set, shares the rollout with a fleet (a node whose
	// configuration comes from etcd): one node judges it on every node's
	// figures, every node serves the state it committed, and manual
	// actions go through it. The webhook is posted by the node that made
	// the event; every node logs and counts the events it adopts.
	// Default nil: the rollout is this node's own.
	Shared rollout.Shared
}

// WebhookQueue bounds the events waiting for the webhook.
const WebhookQueue = 64

// Control runs one split route's rollout: it ticks it once per slot,
// reports its events (log, metrics, webhook) and keeps its state in the
// state file. A Control is kept across reloads while its route's rollout
// definition is unchanged (pipeline.State), so a reload neither resets nor
// pauses it; a changed definition gets a new Control, which finds the old
// state under another definition hash and starts anew, saying so in the
// log. Close stops it.
type Control struct {
	opt  ControlOptions
	r    *rollout.Rollout
	log  *slog.Logger
	hook chan hookEvent

	// owner names this Control in the state file. Before each save the
	// file's owner is read: a newer process (after a binary upgrade) or a
	// newer definition that took the file over stops this one from
	// writing, and from judging (its traffic is draining away).
	owner  string
	saveMu sync.Mutex
	saved  bool
	lost   bool

	// mu guards started and pending: events before Start (a restore) wait
	// in pending.
	mu        sync.Mutex
	started   bool
	pending   []rollout.Event
	notice    []any // a log line for Start: why the saved state was not restored
	startOnce sync.Once

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// hookEvent is one webhook POST body.
type hookEvent struct {
	Route    string        `json:"route"`
	Baseline string        `json:"baseline"`
	Canary   string        `json:"canary"`
	Event    rollout.Event `json:"event"`
	Phase    rollout.Phase `json:"phase"`
}

// stateFile is the state file's content.
type stateFile struct {
	// Owner is the Control that last wrote it: its process and start.
	Owner string        `json:"owner"`
	Route string        `json:"route"`
	State rollout.State `json:"state"`
}

// ownerSeq tells apart the Controls of one process.
var ownerSeq struct {
	sync.Mutex
	n int
}

// NewControl makes the rollout of o.Definition, restored from the state
// file when it holds a state of the same definition. It only reads the
// file: Start claims it and starts the rollout's goroutines, once the
// configuration it belongs to serves (a configuration compiled only to be
// checked, or refused, never starts its rollouts).
func NewControl(o ControlOptions) (*Control, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	ownerSeq.Lock()
	ownerSeq.n++
	seq := ownerSeq.n
	ownerSeq.Unlock()
	c := &Control{
		opt:   o,
		log:   o.Logger.With("route", o.Route, "canary", o.Canary),
		owner: strconv.Itoa(os.Getpid()) + "/" + strconv.FormatInt(time.Now().UnixNano(), 36) + "/" + strconv.Itoa(seq),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	if o.Webhook != "" {
		c.hook = make(chan hookEvent, WebhookQueue)
	}
	// Events are reported once the Control is complete: the rollout emits
	// its first (started) from New, which is recorded in its history and
	// reported below.
	var ready bool
	r, err := rollout.New(o.Definition, rollout.Options{Clock: o.Clock, Shared: o.Shared, OnEvent: func(e rollout.Event) {
		if !ready {
			return
		}
		c.mu.Lock()
		if !c.started {
			c.pending = append(c.pending, e)
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		c.event(e, true)
	}})
	if err != nil {
		return nil, err
	}
	c.r = r
	ready = true
	saved, ok, err := c.load()
	restored := false
	switch {
	case err != nil:
		c.notice = []any{"rollout state file unreadable: starting anew", "file", o.StateFile, "error", err}
	case ok:
		// Restore reports its own event (restored) through OnEvent.
		var why string
		if restored, why = r.Restore(saved); !restored {
			c.notice = []any{"rollout state not restored: " + why, "file", o.StateFile}
		}
	}
	if !restored {
		// The started event is reported when the Control starts.
		st := r.Snapshot()
		c.pending = append(c.pending, st.History[len(st.History)-1])
	}
	return c, nil
}

// Start claims the state file, reports the events of the rollout's making
// and starts ticking. It does nothing the second time.
func (c *Control) Start() {
	c.startOnce.Do(func() {
		c.mu.Lock()
		c.started = true
		pending := c.pending
		c.pending = nil
		c.mu.Unlock()
		if c.notice != nil {
			c.log.Warn(c.notice[0].(string), c.notice[1:]...)
		}
		if c.hook != nil {
			go c.webhook()
		}
		for _, e := range pending {
			c.event(e, true)
		}
		c.save()
		if sh := c.opt.Shared; sh != nil {
			sh.Start(c.r, c.adopted)
		}
		go c.run()
	})
}

// adopted reports the events of a state the fleet committed: logged and
// counted here, posted to the webhook by the node that made them.
func (c *Control) adopted(evs []rollout.Event) {
	for _, e := range evs {
		c.event(e, false)
	}
	if m := c.opt.Metrics; m != nil {
		st := c.r.Snapshot()
		m.Weight(st.Weight)
		m.Phase(string(st.Phase))
	}
	c.save()
}

// SharedStatus is what the admin API shows of the rollout's sharing with
// the fleet, nil when it is this node's own.
func (c *Control) SharedStatus() *rollout.SharedStatus {
	if c.opt.Shared == nil {
		return nil
	}
	st := c.opt.Shared.Status()
	return &st
}

// Rollout returns the rollout.
func (c *Control) Rollout() *rollout.Rollout { return c.r }

// Options returns what the Control was started with.
func (c *Control) Options() ControlOptions { return c.opt }

// run ticks the rollout once per slot until Close.
func (c *Control) run() {
	defer close(c.done)
	t := time.NewTicker(c.r.Definition().Slot)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		if c.superseded() {
			continue
		}
		v := c.r.Tick()
		if v == nil {
			continue
		}
		if m := c.opt.Metrics; m != nil {
			m.Analysis(v)
		}
		if v.Outcome == rollout.Inconclusive {
			c.log.Debug("rollout analysis inconclusive", "reason", v.Reason)
		}
		c.save()
	}
}

// event reports e: log, metrics, state file, and the webhook when hook is
// set.
func (c *Control) event(e rollout.Event, hook bool) {
	st := c.r.Snapshot()
	attrs := []any{"event", string(e.Kind), "step", e.Step, "weight", e.Weight, "phase", string(st.Phase)}
	if e.Reason != "" {
		attrs = append(attrs, "reason", e.Reason)
	}
	level := slog.LevelInfo
	if e.Kind == rollout.EventRolledBack || e.Kind == rollout.EventAborted {
		level = slog.LevelWarn
	}
	c.log.Log(context.Background(), level, "rollout "+string(e.Kind), attrs...)
	if m := c.opt.Metrics; m != nil {
		m.Event(string(e.Kind))
		m.Weight(e.Weight)
		m.Phase(string(st.Phase))
	}
	if c.hook != nil && hook {
		select {
		case c.hook <- hookEvent{Route: c.opt.Route, Baseline: c.opt.Baseline, Canary: c.opt.Canary, Event: e, Phase: st.Phase}:
		default:
			c.log.Warn("rollout webhook queue full: event not posted", "event", string(e.Kind), "queue", WebhookQueue)
		}
	}
	c.save()
}

// webhook posts queued events until Close, in order.
func (c *Control) webhook() {
	client := &http.Client{Timeout: c.opt.WebhookTimeout}
	for {
		select {
		case <-c.stop:
			return
		case h := <-c.hook:
			body, _ := json.Marshal(h)
			resp, err := client.Post(c.opt.Webhook, "application/json", bytes.NewReader(body))
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode >= 300 {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			if err != nil {
				c.log.Warn("rollout webhook failed", "event", string(h.Event.Kind), "url", c.opt.Webhook, "error", err)
			}
		}
	}
}

// Act runs the manual action named action (pause, resume, promote, abort)
// with reason.
func (c *Control) Act(action, reason string) error {
	if reason == "" {
		reason = "manual " + action
	}
	err := c.act(action, reason)
	// A fleet's state that changed meanwhile (another node's analysis or
	// action) is read again, and the action tried on it.
	for i := 0; i < 3 && errors.Is(err, rollout.ErrStale); i++ {
		if f, ok := c.opt.Shared.(interface{ Refresh() error }); ok {
			f.Refresh()
		}
		err = c.act(action, reason)
	}
	return err
}

func (c *Control) act(action, reason string) error {
	switch action {
	case "pause":
		return c.r.Pause(reason)
	case "resume":
		return c.r.Resume(reason)
	case "promote":
		return c.r.Promote(reason)
	case "abort":
		return c.r.Abort(reason)
	}
	return fmt.Errorf("unknown action %q (pause, resume, promote or abort): %w", action, ErrAction)
}

// ErrAction is returned by Act for an unknown action.
var ErrAction = errors.New("unknown rollout action")

// Close stops the rollout's goroutines. The state file keeps the last
// event's and analysis's state; Close does not write it (a newer owner may
// have it by now).
func (c *Control) Close() error {
	c.startOnce.Do(func() {}) // a Control never started stays so
	c.once.Do(func() {
		close(c.stop)
		c.mu.Lock()
		started := c.started
		c.mu.Unlock()
		if started {
			<-c.done
			if sh := c.opt.Shared; sh != nil {
				sh.Close()
			}
		}
	})
	return nil
}

// load reads the state file; ok is false when there is none (or no file
// is configured).
func (c *Control) load() (rollout.State, bool, error) {
	if c.opt.StateFile == "" {
		return rollout.State{}, false, nil
	}
	b, err := os.ReadFile(c.opt.StateFile)
	if errors.Is(err, fs.ErrNotExist) {
		return rollout.State{}, false, nil
	}
	if err != nil {
		return rollout.State{}, false, err
	}
	var f stateFile
	if err := json.Unmarshal(b, &f); err != nil {
		return rollout.State{}, false, fmt.Errorf("%s: %w", c.opt.StateFile, err)
	}
	return f.State, true, nil
}

// superseded reports whether another Control owns the state file now.
func (c *Control) superseded() bool {
	c.saveMu.Lock()
	defer c.saveMu.Unlock()
	return c.lostLocked()
}

func (c *Control) lostLocked() bool {
	if c.lost || c.opt.StateFile == "" {
		return c.lost
	}
	b, err := os.ReadFile(c.opt.StateFile)
	if err != nil {
		return false
	}
	var f struct {
		Owner string `json:"owner"`
	}
	if json.Unmarshal(b, &f) == nil && f.Owner != "" && f.Owner != c.owner {
		c.lost = true
		c.log.Info("rollout state file taken over by a newer configuration or process: this one stops judging", "file", c.opt.StateFile)
	}
	return c.lost
}

// save writes the state file (atomically: a temporary file renamed over
// it), unless another Control took it over.
func (c *Control) save() {
	if c.opt.StateFile == "" || c.r == nil {
		return
	}
	c.saveMu.Lock()
	defer c.saveMu.Unlock()
	// The first save claims the file (it is this Control's start); later
	// ones check that no newer one claimed it since.
	if c.saved && c.lostLocked() {
		return
	}
	c.saved = true
	b, err := json.MarshalIndent(stateFile{Owner: c.owner, Route: c.opt.Route, State: c.r.Snapshot()}, "", "  ")
	if err == nil {
		err = writeFileAtomic(c.opt.StateFile, b)
	}
	if err != nil {
		c.log.Warn("rollout state not saved", "file", c.opt.StateFile, "error", err)
	}
}

func writeFileAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(append(b, '\n'))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}
