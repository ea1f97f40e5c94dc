package admin

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/penstock-dev/penstock/internal/rollout"
	"github.com/penstock-dev/penstock/internal/split"
)

// rolloutSummary is one rollout in GET /rollouts.
type rolloutSummary struct {
	Route    string        `json:"route"`
	Baseline string        `json:"baseline"`
	Canary   string        `json:"canary"`
	Phase    rollout.Phase `json:"phase"`
	Step     int           `json:"step"`
	Steps    int           `json:"steps"`
	Weight   int           `json:"weight"`
	// Last is the latest analysis's outcome and reason.
	Last   rollout.Outcome `json:"last_outcome,omitempty"`
	Reason string          `json:"last_reason,omitempty"`
	// Fleet is the rollout's sharing with the fleet (a node whose
	// configuration comes from etcd): the node judging it, the revision of
	// the state served, the link to etcd. Absent on a node of its own.
	Fleet *rollout.SharedStatus `json:"fleet,omitempty"`
}

// rolloutDetail is GET /rollouts/NAME.
type rolloutDetail struct {
	rolloutSummary
	Definition rollout.Definition `json:"definition"`
	StateFile  string             `json:"state_file,omitempty"`
	// Live are each arm's figures over the last window, as the next
	// analysis will see them so far.
	Live  map[string]armFigures `json:"live"`
	State rollout.State         `json:"state"`
}

// armFigures are one arm's counts and quantiles (milliseconds).
type armFigures struct {
	Requests  int64   `json:"requests"`
	Errors    int64   `json:"errors"`
	ErrorRate float64 `json:"error_rate"`
	P50ms     float64 `json:"p50_ms,omitempty"`
	P99ms     float64 `json:"p99_ms,omitempty"`
	TTFTCount int64   `json:"ttft_count,omitempty"`
	TTFTP50ms float64 `json:"ttft_p50_ms,omitempty"`
	TTFTP99ms float64 `json:"ttft_p99_ms,omitempty"`
	// TokensPerSecond is the rate of streamed events after the first.
	TokensPerSecond float64 `json:"tokens_per_second,omitempty"`
}

func summarize(c *split.Control, st rollout.State) rolloutSummary {
	o := c.Options()
	s := rolloutSummary{Route: o.Route, Baseline: o.Baseline, Canary: o.Canary, Phase: st.Phase,
		Step: st.Step, Steps: len(c.Rollout().Definition().Steps), Weight: st.Weight, Fleet: c.SharedStatus()}
	if st.Last != nil {
		s.Last, s.Reason = st.Last.Outcome, st.Last.Reason
	}
	return s
}

// rollouts lists the rollouts of the configuration being served.
func (a *api) rollouts(w http.ResponseWriter, r *http.Request) {
	out := []rolloutSummary{}
	for _, c := range a.o.Gateway.Snapshot().Rollouts() {
		out = append(out, summarize(c, c.Rollout().Snapshot()))
	}
	writeJSON(w, http.StatusOK, out)
}

// findRollout returns the rollout of the route named in the path, or
// answers 404.
func (a *api) findRollout(w http.ResponseWriter, r *http.Request) *split.Control {
	name := r.PathValue("name")
	var names []string
	for _, c := range a.o.Gateway.Snapshot().Rollouts() {
		if c.Options().Route == name {
			return c
		}
		names = append(names, c.Options().Route)
	}
	writeJSON(w, http.StatusNotFound, map[string]any{"error": "no rollout on a route named " + jsonString(name), "rollouts": names})
	return nil
}

// rollout shows one rollout: definition, state with history, and the live
// figures of each arm.
func (a *api) rollout(w http.ResponseWriter, r *http.Request) {
	c := a.findRollout(w, r)
	if c == nil {
		return
	}
	writeJSON(w, http.StatusOK, detail(c))
}

func detail(c *split.Control) rolloutDetail {
	ro := c.Rollout()
	st := ro.Snapshot()
	m := ro.Monitor()
	cur := m.Current()
	live := map[string]armFigures{}
	for name, arm := range map[string]int{"baseline": rollout.Baseline, "canary": rollout.Canary} {
		win := m.Window(arm, cur-int64(m.Slots())+1, cur)
		f := armFigures{Requests: win.Requests, Errors: win.Errors, ErrorRate: win.ErrorRate(), TTFTCount: win.TTFTCount,
			TokensPerSecond: win.TokenRate()}
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		if p, ok := win.LatencyQuantile(0.5); ok {
			p99, _ := win.LatencyQuantile(0.99)
			f.P50ms, f.P99ms = ms(p), ms(p99)
		}
		if p, ok := win.TTFTQuantile(0.5); ok {
			p99, _ := win.TTFTQuantile(0.99)
			f.TTFTP50ms, f.TTFTP99ms = ms(p), ms(p99)
		}
		live[name] = f
	}
	return rolloutDetail{rolloutSummary: summarize(c, st), Definition: ro.Definition(),
		StateFile: c.Options().StateFile, Live: live, State: st}
}

// rolloutAction runs POST /rollouts/NAME/{pause,resume,promote,abort}. The
// body may be {"reason": "..."}; the reason goes to the history, the log
// and the webhook.
func (a *api) rolloutAction(w http.ResponseWriter, r *http.Request) {
	c := a.findRollout(w, r)
	if c == nil {
		return
	}
	var body struct {
		Reason string `json:"reason"`
	}
	if b, _ := io.ReadAll(io.LimitReader(r.Body, 4096)); len(b) > 0 {
		if err := json.Unmarshal(b, &body); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": `the body must be JSON such as {"reason": "..."}: ` + err.Error()})
			return
		}
	}
	action := r.PathValue("action")
	err := c.Act(action, body.Reason)
	switch {
	case errors.Is(err, split.ErrAction):
		writeJSON(w, http.StatusNotFound, map[string]string{"error": err.Error()})
		return
	case errors.Is(err, rollout.ErrPhase), errors.Is(err, rollout.ErrStale):
		writeJSON(w, http.StatusConflict, map[string]string{"error": action + ": " + err.Error()})
		return
	case errors.Is(err, rollout.ErrUnavailable):
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": action + ": " + err.Error()})
		return
	case err != nil:
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	a.log.Info("admin: rollout "+action, "route", c.Options().Route, "remote", r.RemoteAddr, "reason", body.Reason)
	writeJSON(w, http.StatusOK, detail(c))
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// mirrors shows each split mirror: its counts and the comparison of the
// shadow's answers with the arms' over the last minute.
func (a *api) mirrors(w http.ResponseWriter, r *http.Request) {
	out := []split.MirrorStats{}
	for _, m := range a.o.Gateway.Snapshot().Mirrors() {
		out = append(out, m.Stats())
	}
	writeJSON(w, http.StatusOK, out)
}
