package rollout

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
)

// quiet is a steady arm for the state-machine tests: 100 requests/s.
func quiet() armModel {
	return armModel{Rate: 100, Median: 20 * time.Millisecond, ErrRate: 0.001}
}

func newRollout(t *testing.T, clk *fakeClock, def Definition, events *[]Event) *Rollout {
	t.Helper()
	r, err := New(def, Options{Clock: clk.now, OnEvent: func(e Event) {
		if events != nil {
			*events = append(*events, e)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func kinds(evs []Event) string {
	var s []string
	for _, e := range evs {
		s = append(s, string(e.Kind))
	}
	return strings.Join(s, ",")
}

func weights(evs []Event) []int {
	var w []int
	for _, e := range evs {
		w = append(w, e.Weight)
	}
	return w
}

func TestStateMachine(t *testing.T) {
	def := Definition{Window: 10 * time.Second, SLO: simSLO}
	for _, tc := range []struct {
		name string
		// run drives the rollout; it returns nothing and checks itself.
		run func(t *testing.T, rng *rand.Rand, clk *fakeClock, r *Rollout, events *[]Event)
	}{
		{"healthy canary is promoted through every step", func(t *testing.T, rng *rand.Rand, clk *fakeClock, r *Rollout, events *[]Event) {
			b, c := quiet(), quiet()
			elapsed, _ := simulate(rng, clk, r, &b, &c, 300, nil)
			if got, want := kinds(*events), "started,advanced,advanced,advanced,promoted"; got != want {
				t.Fatalf("events %s, want %s (last verdict %+v)", got, want, r.Snapshot().Last)
			}
			if got := weights(*events); !equal(got, []int{1, 5, 25, 50, 100}) {
				t.Errorf("weights %v", got)
			}
			if elapsed != 40 || r.Weight() != 100 {
				t.Errorf("promoted after %d s at weight %d, want 40 s (four 10 s windows) and 100", elapsed, r.Weight())
			}
		}},
		{"errors after two steps roll back within one window", func(t *testing.T, rng *rand.Rand, clk *fakeClock, r *Rollout, events *[]Event) {
			b, c := quiet(), quiet()
			const breach = 25 // seconds: in the third step
			elapsed, _ := simulate(rng, clk, r, &b, &c, 300, func(sec int) {
				if sec == breach {
					c.ErrRate = 0.05
				}
			})
			s := r.Snapshot()
			if s.Phase != RolledBack || r.Weight() != 0 {
				t.Fatalf("phase %s weight %d, want rolled back to 0", s.Phase, r.Weight())
			}
			if elapsed-breach > 10 {
				t.Errorf("rolled back %d s after the breach, want within one 10 s window", elapsed-breach)
			}
			last := (*events)[len(*events)-1]
			if last.Kind != EventRolledBack || !strings.Contains(last.Reason, "error rate") || last.Step != 2 {
				t.Errorf("last event %+v, want a rollback at step 2 naming the error rate", last)
			}
			if s.Last.Baseline.ErrorRate() > 0.01 {
				t.Errorf("baseline error rate %.3f", s.Last.Baseline.ErrorRate())
			}
		}},
		{"latency regression rolls back", func(t *testing.T, rng *rand.Rand, clk *fakeClock, r *Rollout, events *[]Event) {
			b, c := quiet(), quiet()
			c.Shift = 30 * time.Millisecond
			simulate(rng, clk, r, &b, &c, 300, nil)
			if s := r.Snapshot(); s.Phase != RolledBack || s.Step != 0 || !strings.Contains(s.Last.Reason, "latency") {
				t.Fatalf("phase %s step %d reason %q, want rolled back at step 0 for latency", s.Phase, s.Step, s.Last.Reason)
			}
		}},
		{"too little traffic holds the step", func(t *testing.T, rng *rand.Rand, clk *fakeClock, r *Rollout, events *[]Event) {
			b, c := quiet(), quiet()
			c.Rate = 5 // 50 requests per window < 200
			simulate(rng, clk, r, &b, &c, 60, nil)
			s := r.Snapshot()
			if s.Phase != Progressing || s.Step != 0 || s.Last.Outcome != Inconclusive || !strings.Contains(s.Last.Reason, "too few") {
				t.Fatalf("phase %s step %d verdict %s %q, want progressing at step 0, inconclusive", s.Phase, s.Step, s.Last.Outcome, s.Last.Reason)
			}
		}},
		{"pause holds, resume restarts the step, promote ends", func(t *testing.T, rng *rand.Rand, clk *fakeClock, r *Rollout, events *[]Event) {
			b, c := quiet(), quiet()
			simulate(rng, clk, r, &b, &c, 10, nil) // step 1 (5 %)
			if err := r.Pause("looking"); err != nil {
				t.Fatal(err)
			}
			simulate(rng, clk, r, &b, &c, 40, nil)
			if s := r.Snapshot(); s.Phase != Paused || s.Step != 1 || r.Weight() != 5 {
				t.Fatalf("paused: phase %s step %d weight %d", s.Phase, s.Step, r.Weight())
			}
			if err := r.Pause(""); !errors.Is(err, ErrPhase) {
				t.Errorf("pause twice: %v, want ErrPhase", err)
			}
			if err := r.Resume("ok"); err != nil {
				t.Fatal(err)
			}
			simulate(rng, clk, r, &b, &c, 9, nil)
			if s := r.Snapshot(); s.Step != 1 {
				t.Errorf("9 s after resume at step %d, want still 1 (hold restarts)", s.Step)
			}
			if err := r.Promote("go"); err != nil {
				t.Fatal(err)
			}
			if r.Weight() != 100 || r.Snapshot().Phase != Promoted {
				t.Errorf("promote: weight %d phase %s", r.Weight(), r.Snapshot().Phase)
			}
			if err := r.Abort(""); !errors.Is(err, ErrPhase) {
				t.Errorf("abort after promotion: %v, want ErrPhase", err)
			}
			if got, want := kinds(*events), "started,advanced,paused,resumed,promoted"; got != want {
				t.Errorf("events %s, want %s", got, want)
			}
		}},
		{"abort sends all traffic to the baseline", func(t *testing.T, rng *rand.Rand, clk *fakeClock, r *Rollout, events *[]Event) {
			b, c := quiet(), quiet()
			simulate(rng, clk, r, &b, &c, 20, nil)
			if err := r.Abort("bad build"); err != nil {
				t.Fatal(err)
			}
			if s := r.Snapshot(); s.Phase != Aborted || r.Weight() != 0 || s.History[len(s.History)-1].Reason != "bad build" {
				t.Fatalf("phase %s weight %d history %+v", s.Phase, r.Weight(), s.History)
			}
			simulate(rng, clk, r, &b, &c, 30, nil)
			if r.Weight() != 0 {
				t.Errorf("weight %d after abort", r.Weight())
			}
		}},
		{"history is bounded", func(t *testing.T, rng *rand.Rand, clk *fakeClock, r *Rollout, events *[]Event) {
			for range 100 {
				if err := r.Pause(""); err != nil {
					t.Fatal(err)
				}
				if err := r.Resume(""); err != nil {
					t.Fatal(err)
				}
			}
			if s := r.Snapshot(); len(s.History) != HistoryLen || s.History[0].Kind == EventStarted {
				t.Errorf("history of %d events starting %s, want the last %d", len(s.History), s.History[0].Kind, HistoryLen)
			}
			if len(*events) != 201 {
				t.Errorf("%d events to the hook, want 201", len(*events))
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			var events []Event
			r := newRollout(t, clk, def, &events)
			tc.run(t, rand.New(rand.NewPCG(1, 2)), clk, r, &events)
		})
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestRestore(t *testing.T) {
	def := Definition{Window: 10 * time.Second, SLO: simSLO}
	rng := rand.New(rand.NewPCG(3, 4))
	clk := newClock()
	r := newRollout(t, clk, def, nil)
	b, c := quiet(), quiet()
	simulate(rng, clk, r, &b, &c, 20, nil) // at step 2 (25 %)
	data, err := json.Marshal(r.Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	var saved State
	if err := json.Unmarshal(data, &saved); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name     string
		def      Definition
		restored bool
		weight   int
	}{
		{"same definition resumes at its step", def, true, 25},
		{"changed definition starts anew", Definition{Window: 20 * time.Second, SLO: simSLO}, false, 1},
		{"changed SLO starts anew", Definition{Window: 10 * time.Second}, false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var events []Event
			r2 := newRollout(t, clk, tc.def, &events)
			ok, why := r2.Restore(saved)
			if ok != tc.restored || r2.Weight() != tc.weight {
				t.Fatalf("restored %v (%s), weight %d; want %v, %d", ok, why, r2.Weight(), tc.restored, tc.weight)
			}
			if !ok && !strings.Contains(why, "definition changed") {
				t.Errorf("reason %q", why)
			}
			if ok {
				s := r2.Snapshot()
				if s.Step != 2 || len(s.History) != len(saved.History)+1 || s.History[len(s.History)-1].Kind != EventRestored {
					t.Errorf("restored step %d, history %s", s.Step, kinds(s.History))
				}
				// It carries on: two more windows, two more steps.
				simulate(rng, clk, r2, &b, &c, 25, nil)
				if s := r2.Snapshot(); s.Phase != Promoted {
					t.Errorf("after restore: phase %s step %d, want promoted", s.Phase, s.Step)
				}
			}
		})
	}
}

func TestDefinitionErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		def  Definition
		want string
	}{
		{"descending weights", Definition{Steps: []Step{{Weight: 5}, {Weight: 1}}}, "steps[1].weight"},
		{"weight above 100", Definition{Steps: []Step{{Weight: 150}}}, "steps[0].weight"},
		{"slot longer than window", Definition{Window: time.Second, Slot: 2 * time.Second}, "slot"},
		{"alpha", Definition{Analysis: Analysis{Alpha: 0.7}}, "analysis.alpha"},
		{"negative hold", Definition{Steps: []Step{{Weight: 5, Hold: -time.Second}}}, "steps[0]"},
		{"negative min requests", Definition{Analysis: Analysis{MinRequests: -1}}, "analysis.min_requests"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.def, Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one naming %s", err, tc.want)
			}
		})
	}
}

func TestObserveDoesNotAllocate(t *testing.T) {
	skipUnderRace(t)
	r, err := New(Definition{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	r.Observe(Canary, time.Millisecond, false, time.Millisecond) // allocates the TTFT histogram
	if n := testing.AllocsPerRun(1000, func() {
		r.Observe(Canary, 12*time.Millisecond, false, 3*time.Millisecond)
		r.Observe(Baseline, 12*time.Millisecond, true, 0)
	}); n != 0 {
		t.Errorf("Observe allocates %v times per call", n)
	}
}

// BenchmarkObserve times Observe from parallel goroutines (GOMAXPROCS of
// them) on the same arm, the worst case for contention.
func BenchmarkObserve(b *testing.B) {
	r, err := New(Definition{}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			r.Observe(Canary, time.Duration(i%5000)*time.Microsecond+10*time.Millisecond, i%1000 == 0, 0)
		}
	})
}

// TestConcurrentObserveAndTick records from several goroutines while the
// windows rotate and analyses run (for the race detector), then checks that
// no request was lost from the sub-windows that were not reused.
func TestConcurrentObserveAndTick(t *testing.T) {
	clk := newClock()
	var mu sync.Mutex
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clk.now() }
	r, err := New(Definition{Window: 10 * time.Second, Analysis: Analysis{Resamples: 20}}, Options{Clock: now})
	if err != nil {
		t.Fatal(err)
	}
	const goroutines, each = 4, 2000
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				r.Observe(g%2, time.Duration(i)*time.Microsecond, i%100 == 0, time.Millisecond)
			}
		}()
	}
	for range 5 { // 5 of the 60 sub-windows: nothing is reused
		mu.Lock()
		clk.add(r.Definition().Slot)
		mu.Unlock()
		r.Tick()
	}
	wg.Wait()
	cur := r.Monitor().Current()
	var total int64
	for arm := range 2 {
		w := r.Monitor().Window(arm, 0, cur)
		total += w.Requests
		if w.TTFTCount != w.Requests {
			t.Errorf("arm %d: %d TTFTs of %d requests", arm, w.TTFTCount, w.Requests)
		}
	}
	if total != goroutines*each {
		t.Errorf("counted %d requests, want %d", total, goroutines*each)
	}
}

// TestTTFTCheckOnPlainRoute checks that a time-to-first-token SLO does not
// hold a rollout on a route whose responses are not event streams (no arm
// reports a first token), and that it does when one arm streams.
func TestTTFTCheckOnPlainRoute(t *testing.T) {
	slo := SLO{MaxTTFTIncrease: 0.5}
	opt := Analysis{MinRequests: 10}
	plain := ArmWindow{Requests: 100}
	if v := Analyze(plain, plain, slo, opt, 1); v.Outcome != Pass {
		t.Errorf("plain route: %s (%s), want pass", v.Outcome, v.Reason)
	}
	streamed := ArmWindow{Requests: 100, TTFTCount: 3}
	if v := Analyze(plain, streamed, slo, opt, 1); v.Outcome != Inconclusive {
		t.Errorf("one arm with 3 first tokens: %s, want inconclusive", v.Outcome)
	}
}
