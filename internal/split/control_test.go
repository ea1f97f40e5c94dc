package split

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/exchange/exchangetest"
	"github.com/penstock-dev/penstock/internal/rollout"
)

// slowDef is a definition whose analyses never come during a test: the
// tests below drive the rollout by hand.
func slowDef(steps ...int) rollout.Definition {
	d := rollout.Definition{Window: time.Hour, Slot: time.Minute}
	for _, w := range steps {
		d.Steps = append(d.Steps, rollout.Step{Weight: w})
	}
	return d
}

func newControl(t *testing.T, o ControlOptions) *Control {
	t.Helper()
	if testing.Verbose() {
		o.Logger = slog.Default()
	} else {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	c, err := NewControl(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestControlState checks that a rollout's state survives a restart through
// its state file, that a changed definition starts anew, and that a
// Control made only to check a configuration writes nothing.
func TestControlState(t *testing.T) {
	file := filepath.Join(t.TempDir(), "penstock.yaml.rollout.predict.json")
	o := ControlOptions{Route: "predict", Baseline: "stable", Canary: "canary", Definition: slowDef(10, 50, 100), StateFile: file}

	checked := newControl(t, o)
	checked.Close()
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatalf("a Control never started wrote its state file (%v)", err)
	}

	first := newControl(t, o)
	first.Start()
	if err := first.Act("pause", "looking at the dashboards"); err != nil {
		t.Fatal(err)
	}
	first.Close()

	again := newControl(t, o)
	again.Start()
	st := again.Rollout().Snapshot()
	if st.Phase != rollout.Paused || st.Weight != 10 {
		t.Fatalf("restored rollout is %s at %d %%, want paused at 10 %%", st.Phase, st.Weight)
	}
	if last := st.History[len(st.History)-1]; last.Kind != rollout.EventRestored {
		t.Fatalf("last event %s, want restored", last.Kind)
	}
	if err := again.Act("resume", ""); err != nil {
		t.Fatal(err)
	}
	again.Close()

	o.Definition = slowDef(5, 100)
	changed := newControl(t, o)
	changed.Start()
	if st := changed.Rollout().Snapshot(); st.Phase != rollout.Progressing || st.Weight != 5 || len(st.History) != 1 {
		t.Fatalf("a changed definition restored a state: %s at %d %%, %d events", st.Phase, st.Weight, len(st.History))
	}
	var f stateFile
	b, _ := os.ReadFile(file)
	if err := json.Unmarshal(b, &f); err != nil || f.State.Definition != changed.Rollout().Snapshot().Definition {
		t.Fatalf("state file not taken over by the new definition: %v %s", err, b)
	}
}

// TestControlOwnership checks that once a newer Control (a new process
// after a binary upgrade) starts on the same state file, the older one stops
// writing it.
func TestControlOwnership(t *testing.T) {
	file := filepath.Join(t.TempDir(), "state.json")
	o := ControlOptions{Route: "predict", Baseline: "stable", Canary: "canary", Definition: slowDef(10, 50, 100), StateFile: file}
	old := newControl(t, o)
	old.Start()
	newer := newControl(t, o)
	newer.Start()
	if err := old.Act("abort", "from the old process"); err != nil {
		t.Fatal(err)
	}
	var f stateFile
	b, _ := os.ReadFile(file)
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	if f.Owner != newer.owner || f.State.Phase != rollout.Progressing {
		t.Fatalf("the superseded Control wrote the state file: owner %s (newer %s), phase %s", f.Owner, newer.owner, f.State.Phase)
	}
}

// TestControlWebhook checks that events are posted to the webhook, in order.
func TestControlWebhook(t *testing.T) {
	var mu sync.Mutex
	var got []hookEvent
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var h hookEvent
		json.NewDecoder(r.Body).Decode(&h)
		mu.Lock()
		got = append(got, h)
		mu.Unlock()
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	c := newControl(t, ControlOptions{Route: "predict", Baseline: "stable", Canary: "canary", Definition: slowDef(10, 100),
		Webhook: "http://" + ln.Addr().String() + "/hook", WebhookTimeout: 5 * time.Second})
	c.Start()
	if err := c.Act("promote", "looks fine"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 || got[0].Event.Kind != rollout.EventStarted || got[1].Event.Kind != rollout.EventPromoted ||
		got[1].Event.Reason != "looks fine" || got[1].Route != "predict" || got[1].Canary != "canary" || got[1].Phase != rollout.Promoted {
		t.Fatalf("webhook got %+v", got)
	}
}

// TestControlActions checks the manual actions' names and phases.
func TestControlActions(t *testing.T) {
	c := newControl(t, ControlOptions{Route: "r", Definition: slowDef(10, 100)})
	c.Start()
	for _, tc := range []struct {
		action string
		ok     bool
	}{{"resume", false}, {"pause", true}, {"pause", false}, {"resume", true}, {"promote", true}, {"abort", false}, {"reboot", false}} {
		if err := c.Act(tc.action, ""); (err == nil) != tc.ok {
			t.Errorf("%s: error %v, want ok=%v", tc.action, err, tc.ok)
		}
	}
}

// TestCanaryWeight checks that the canary gets the rollout's weight of the
// traffic of the baseline and canary arms, that a third arm keeps its own
// share, that judged requests are observed and forced ones are not.
func TestCanaryWeight(t *testing.T) {
	cfg := &config.RouteSplit{By: config.SplitByWeight, Force: &config.SplitForce{Header: "x-arm"}, Arms: []config.SplitArm{
		{Name: "stable", Upstream: "a", Weight: 60}, {Name: "canary", Upstream: "b", Weight: 20}, {Name: "other", Upstream: "c", Weight: 20}}}
	r, err := rollout.New(rollout.Definition{Window: time.Hour, Slot: time.Minute, Steps: []rollout.Step{{Weight: 25}, {Weight: 100}}}, rollout.Options{})
	if err != nil {
		t.Fatal(err)
	}
	canary := NewCanary(r, []string{"stable", "canary", "other"}, []float64{60, 20, 20}, 0, 1)
	arms := make([]Arm, 3)
	for i, a := range cfg.Arms {
		arms[i] = Arm{Name: a.Name, Next: ok(a.Name)}
	}
	s := New(cfg, arms, nil, canary)
	const n = 40000
	counts := map[string]int{}
	for range n {
		x, _ := exchangetest.NewExchange(t, "GET")
		s.ServeExchange(x)
		counts[x.State.Arm]++
	}
	// Stable and canary carry 80 % together, 25 % of it to the canary.
	want := map[string]float64{"stable": 0.6, "canary": 0.2, "other": 0.2}
	for arm, p := range want {
		// Five standard deviations of a binomial share.
		if got := float64(counts[arm]) / n; math.Abs(got-p) > 5*math.Sqrt(p*(1-p)/n) {
			t.Errorf("%s: %.4f of requests, want %.2f", arm, got, p)
		}
	}
	m := r.Monitor()
	judged := m.Window(rollout.Baseline, 0, m.Current()).Requests + m.Window(rollout.Canary, 0, m.Current()).Requests
	if want := int64(counts["stable"] + counts["canary"]); judged != want {
		t.Errorf("observed %d requests, want the %d of the two judged arms", judged, want)
	}
	x, _ := exchangetest.NewExchange(t, "GET")
	x.Req.Header.Add("X-Arm", "canary")
	s.ServeExchange(x)
	if got := m.Window(rollout.Canary, 0, m.Current()).Requests; got != int64(counts["canary"]) {
		t.Errorf("a forced request was observed: %d canary requests, want %d", got, counts["canary"])
	}
}

// TestCanaryFirstByte checks that the time to first byte is measured on
// event streams only, and that failures are told from successes.
func TestCanaryFirstByte(t *testing.T) {
	r, err := rollout.New(rollout.Definition{Window: time.Hour, Slot: time.Minute, Steps: []rollout.Step{{Weight: 50}, {Weight: 100}}}, rollout.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := NewCanary(r, []string{"stable", "canary"}, []float64{1, 1}, 0, 1)
	serve := func(h exchange.Handler) {
		x, _ := exchangetest.NewExchange(t, "POST")
		c.serve(x, h, 1)
	}
	serve(stream{status: 200, ctype: "text/event-stream"})
	serve(stream{status: 200, ctype: "application/json"})
	serve(stream{status: 503, ctype: "application/json"})
	w := r.Monitor().Window(rollout.Canary, 0, r.Monitor().Current())
	if w.Requests != 3 || w.Errors != 1 || w.TTFTCount != 1 || w.Tokens != 2 || w.StreamTime <= 0 {
		t.Fatalf("window %d requests, %d errors, %d with a first token, %d tokens after it in %v; want 3, 1, 1, 2",
			w.Requests, w.Errors, w.TTFTCount, w.Tokens, w.StreamTime)
	}
}

type ok string

func (n ok) ServeExchange(x *exchange.Exchange) {
	x.State.Status = 200
	x.W.WriteHeader(200)
	x.W.Write([]byte(n))
}

type stream struct {
	status int
	ctype  string
}

func (s stream) ServeExchange(x *exchange.Exchange) {
	x.State.Status = s.status
	x.W.Header().Set("Content-Type", s.ctype)
	x.W.WriteHeader(s.status)
	for _, ev := range []string{"data: a\n\n", "data: b\n", "\ndata: c\n\n"} {
		x.W.Write([]byte(ev))
	}
}

// bodyArm reads n bytes of the request body (all of it when n < 0), then
// answers.
type bodyArm int

func (n bodyArm) ServeExchange(x *exchange.Exchange) {
	if n < 0 {
		io.ReadAll(x.Req.Body)
	} else {
		io.ReadFull(x.Req.Body, make([]byte, n))
	}
	x.State.Status = 200
	x.W.WriteHeader(200)
}

// shadowBodies records the bodies the shadow receives.
type shadowBodies struct{ got chan string }

func (s shadowBodies) ServeExchange(x *exchange.Exchange) {
	b, _ := io.ReadAll(x.Req.Body)
	x.State.Status = 200
	s.got <- fmt.Sprintf("%s %d", b, x.Req.ContentLength)
}

// TestMirrorBody checks that a copy carries the request body the arm read,
// and that a body over max_body (announced or not) or one the arm did not
// read to its end is not copied, whatever its length.
func TestMirrorBody(t *testing.T) {
	for _, tc := range []struct {
		name   string
		body   string
		length int64 // Content-Length, -1 for chunked
		arm    bodyArm
		want   string // what the shadow got, "" for no copy
	}{
		{name: "within max_body", body: "payload", length: 7, arm: -1, want: "payload 7"},
		{name: "chunked within max_body", body: "payload", length: -1, arm: -1, want: "payload 7"},
		{name: "announced over max_body", body: "0123456789abcdef!", length: 17, arm: -1},
		{name: "chunked over max_body", body: "0123456789abcdef!", length: -1, arm: -1},
		{name: "not read to its end", body: "payload", length: 7, arm: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			shadow := shadowBodies{got: make(chan string, 1)}
			m := NewMirror(shadow, 100, 4, time.Second, 16)
			var copied, skipped counter
			m.Copied, m.Skipped = &copied, &skipped
			x, _ := exchangetest.NewExchange(t, "POST")
			x.Req.Body = io.NopCloser(strings.NewReader(tc.body))
			x.Req.ContentLength = tc.length
			cp, chosen := m.Offer(x)
			tc.arm.ServeExchange(x)
			m.Send(cp, x, chosen)
			var got string
			select {
			case got = <-shadow.got:
			case <-time.After(200 * time.Millisecond):
			}
			if got != tc.want {
				t.Errorf("shadow got %q, want %q", got, tc.want)
			}
			if want := int64(0); tc.want == "" && (copied.n.Load() != 0 || skipped.n.Load() != 1) ||
				tc.want != "" && (copied.n.Load() != 1 || skipped.n.Load() != want) {
				t.Errorf("copied %d, skipped %d", copied.n.Load(), skipped.n.Load())
			}
			deadline := time.Now().Add(5 * time.Second)
			for m.Pending() > 0 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			if m.Pending() != 0 {
				t.Errorf("%d copies still pending", m.Pending())
			}
		})
	}
}

// TestMirrorComparison checks that the shadow is compared with the arm:
// a shadow that fails is judged failing.
func TestMirrorComparison(t *testing.T) {
	m := NewMirror(stream{status: 503, ctype: "text/plain"}, 100, 1000, time.Second, 0)
	for range 200 {
		x, _ := exchangetest.NewExchange(t, "GET")
		x.Start = time.Now()
		cp, chosen := m.Offer(x)
		ok("arm").ServeExchange(x)
		m.Send(cp, x, chosen)
	}
	deadline := time.Now().Add(5 * time.Second)
	for m.Pending() > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	st := m.Stats()
	if st.Copied != 200 || st.Comparison.Outcome != rollout.Fail || st.Comparison.Canary.Errors != 200 || st.Comparison.Baseline.Errors != 0 {
		t.Fatalf("stats %+v", st)
	}
}
