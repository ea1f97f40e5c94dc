package fleet_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/penstock-dev/penstock/internal/fleet"
	"github.com/penstock-dev/penstock/internal/rollout"
	"github.com/penstock-dev/penstock/internal/split"
)

// sharedDef is the rollout the fleet tests share: 2 s windows of 100 ms
// sub-windows, judged on errors only. MinRequests is above what one node's
// canary gets in a window at the first step (about 80 requests at 20 % of
// 200 requests/s) and below what three nodes get together (about 240): an
// analysis is conclusive only on the merged figures.
func sharedDef(steps ...int) rollout.Definition {
	d := rollout.Definition{Window: 2 * time.Second, Slot: 100 * time.Millisecond,
		SLO:      rollout.SLO{MaxErrorRateIncrease: 0.02},
		Analysis: rollout.Analysis{MinRequests: 150, Resamples: 100}}
	for _, w := range steps {
		d.Steps = append(d.Steps, rollout.Step{Weight: w})
	}
	return d
}

// rolloutNode is one node of a test fleet: its own etcd client, its
// rollout Control shared through etcd, and a load loop recording requests
// into it as the data path does.
type rolloutNode struct {
	id   string
	cli  *clientv3.Client
	ctl  *split.Control
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// canaryErrors is the canary's error rate, for every node's load.
type canaryErrors struct {
	mu   sync.Mutex
	rate float64
}

func (c *canaryErrors) get() float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rate
}

// startRolloutNode starts node id of the fleet under tg with def, and its
// load: one request every 5 ms (200/s), sent to the canary at the
// rollout's weight; the canary fails at bad's rate.
func startRolloutNode(t *testing.T, tg fleet.Target, id string, def rollout.Definition, bad *canaryErrors, seed uint64) *rolloutNode {
	t.Helper()
	cli, err := fleet.Dial(tg, 0)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := fleet.NewRollouts(fleet.RolloutOptions{Client: cli, Target: tg, NodeID: id,
		LeaseTTL: 2 * time.Second, CheckInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctl, err := split.NewControl(split.ControlOptions{Route: "generate", Baseline: "v1", Canary: "v2",
		Definition: def, Shared: rs.Share("generate")})
	if err != nil {
		t.Fatal(err)
	}
	ctl.Start()
	n := &rolloutNode{id: id, cli: cli, ctl: ctl, stop: make(chan struct{}), done: make(chan struct{})}
	go n.load(bad, seed)
	t.Cleanup(n.close)
	return n
}

// close stops the node as a shutdown does: its lease is revoked, so
// another node judges at once.
func (n *rolloutNode) close() {
	n.once.Do(func() {
		close(n.stop)
		<-n.done
		n.ctl.Close()
		n.cli.Close()
	})
}

func (n *rolloutNode) load(bad *canaryErrors, seed uint64) {
	defer close(n.done)
	rng := rand.New(rand.NewPCG(seed, 7))
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	r := n.ctl.Rollout()
	start, sent := time.Now(), 0
	for {
		select {
		case <-n.stop:
			return
		case <-tick.C:
		}
		// The requests due by now at 200/s: a late tick (a loaded
		// machine) catches up rather than lowering the rate.
		for due := int(time.Since(start) / (5 * time.Millisecond)); sent < due; sent++ {
			latency := 10*time.Millisecond + time.Duration(rng.IntN(2000))*time.Microsecond
			if rng.IntN(100) < r.Weight() {
				r.Observe(rollout.Canary, latency, rng.Float64() < bad.get(), 0)
			} else {
				r.Observe(rollout.Baseline, latency, false, 0)
			}
		}
	}
}

// kill stops the node as a crash would look to the fleet: its etcd client
// goes first, so its lease is not revoked and expires after its TTL.
func (n *rolloutNode) kill() {
	n.once.Do(func() {
		close(n.stop)
		<-n.done
		n.cli.Close()
		n.ctl.Close()
	})
}

func (n *rolloutNode) status() rollout.SharedStatus {
	return *n.ctl.SharedStatus()
}

// agreed reports whether every node serves the same state revision, phase
// and weight, and that phase.
func agreed(nodes []*rolloutNode, phase rollout.Phase) bool {
	st0 := nodes[0].ctl.Rollout().Snapshot()
	rev0 := nodes[0].status().Revision
	for _, n := range nodes {
		st := n.ctl.Rollout().Snapshot()
		if st.Phase != phase || st.Weight != st0.Weight || n.ctl.Rollout().Weight() != st0.Weight || n.status().Revision != rev0 {
			return false
		}
	}
	return true
}

func describe(nodes []*rolloutNode) string {
	s := ""
	for _, n := range nodes {
		st := n.ctl.Rollout().Snapshot()
		last := ""
		if st.Last != nil {
			last = string(st.Last.Outcome) + " " + st.Last.Reason
		}
		s += fmt.Sprintf("\n  %s: %s step %d weight %d, %+v, last: %s", n.id, st.Phase, st.Step, n.ctl.Rollout().Weight(), n.status(), last)
	}
	return s
}

func startFleet(t *testing.T, def rollout.Definition, bad *canaryErrors) []*rolloutNode {
	tg, _ := newTarget(t)
	var nodes []*rolloutNode
	for i := range 3 {
		nodes = append(nodes, startRolloutNode(t, tg, fmt.Sprintf("node-%d", i), def, bad, uint64(i+1)))
	}
	return nodes
}

// leaderOf returns the node judging, once exactly one does.
func leaderOf(t *testing.T, nodes []*rolloutNode) *rolloutNode {
	t.Helper()
	var leader *rolloutNode
	ok := waitFor(20*time.Second, func() bool {
		leader = nil
		count := 0
		for _, n := range nodes {
			if n.status().Leading {
				leader, count = n, count+1
			}
		}
		return count == 1
	})
	if !ok {
		t.Fatalf("no single node judges the rollout:%s", describe(nodes))
	}
	return leader
}

func TestSharedRolloutBadCanaryRolledBackFleetWide(t *testing.T) {
	start := time.Now()
	nodes := startFleet(t, sharedDef(20, 50, 100), &canaryErrors{rate: 0.10})
	leader := leaderOf(t, nodes)
	if !waitFor(30*time.Second, func() bool { return agreed(nodes, rollout.RolledBack) }) {
		t.Fatalf("not rolled back on every node:%s", describe(nodes))
	}
	for _, n := range nodes {
		if w := n.ctl.Rollout().Weight(); w != 0 {
			t.Errorf("%s serves the canary at %d%% after the rollback", n.id, w)
		}
	}
	st := nodes[0].ctl.Rollout().Snapshot()
	if st.Last == nil || st.Last.Outcome != rollout.Fail {
		t.Fatalf("last verdict %+v, want a failure", st.Last)
	}
	// The verdict was judged on the fleet's figures: more canary requests
	// than one node's share of a window, and the node judging merged three.
	if st.Last.Canary.Requests < 150 {
		t.Errorf("verdict on %d canary requests, want the merged figures (at least 150)", st.Last.Canary.Requests)
	}
	if got := leader.status().Merged; got != 3 {
		t.Errorf("the judging node merged %d nodes' observations, want 3", got)
	}
	t.Logf("rolled back %s after the start: %s (canary %d requests, %d errors; baseline %d requests)", time.Since(start).Round(time.Millisecond), st.Last.Reason,
		st.Last.Canary.Requests, st.Last.Canary.Errors, st.Last.Baseline.Requests)
}

func TestSharedRolloutHealthyPromotedEverywhere(t *testing.T) {
	nodes := startFleet(t, sharedDef(20, 50, 100), &canaryErrors{})
	if !waitFor(40*time.Second, func() bool { return agreed(nodes, rollout.Promoted) }) {
		t.Fatalf("not promoted on every node:%s", describe(nodes))
	}
	for _, n := range nodes {
		st := n.ctl.Rollout().Snapshot()
		var kinds []rollout.EventKind
		for _, e := range st.History {
			kinds = append(kinds, e.Kind)
		}
		if n.ctl.Rollout().Weight() != 100 || fmt.Sprint(kinds) != "[started advanced promoted]" {
			t.Errorf("%s: weight %d, history %v, want 100 and [started advanced promoted]", n.id, n.ctl.Rollout().Weight(), kinds)
		}
	}
}

func TestSharedRolloutLeaderKilledAnotherTakesOver(t *testing.T) {
	nodes := startFleet(t, sharedDef(20, 30, 40, 50, 100), &canaryErrors{})
	// Killed once the rollout has advanced at least once.
	if !waitFor(30*time.Second, func() bool { return nodes[0].ctl.Rollout().Snapshot().Step >= 1 }) {
		t.Fatalf("the rollout did not advance:%s", describe(nodes))
	}
	leader := leaderOf(t, nodes)
	step := leader.ctl.Rollout().Snapshot().Step
	leader.kill()
	var rest []*rolloutNode
	for _, n := range nodes {
		if n != leader {
			rest = append(rest, n)
		}
	}
	next := leaderOf(t, rest)
	t.Logf("%s killed at step %d; %s judges now", leader.id, step, next.id)
	if !waitFor(40*time.Second, func() bool { return agreed(rest, rollout.Promoted) }) {
		t.Fatalf("the rollout did not go on to the promotion after the leader died:%s", describe(rest))
	}
	if st := rest[0].ctl.Rollout().Snapshot(); st.Step <= step {
		t.Errorf("ended at step %d, want past %d", st.Step, step)
	}
}

func TestSharedRolloutPauseOnOneNodePausesAll(t *testing.T) {
	nodes := startFleet(t, sharedDef(20, 50, 100), &canaryErrors{})
	// Every node follows the state before the action.
	if !waitFor(20*time.Second, func() bool { return agreed(nodes, rollout.Progressing) && nodes[0].status().Revision > 0 }) {
		t.Fatalf("the nodes do not agree:%s", describe(nodes))
	}
	if err := nodes[2].ctl.Act("pause", "waiting for the on-call"); err != nil {
		t.Fatal(err)
	}
	if !waitFor(10*time.Second, func() bool { return agreed(nodes, rollout.Paused) }) {
		t.Fatalf("not paused on every node:%s", describe(nodes))
	}
	weight := nodes[0].ctl.Rollout().Weight()
	// Paused: two windows go by without a step.
	time.Sleep(4 * time.Second)
	if !agreed(nodes, rollout.Paused) || nodes[1].ctl.Rollout().Weight() != weight {
		t.Fatalf("the pause did not hold:%s", describe(nodes))
	}
	last := nodes[0].ctl.Rollout().Snapshot().History
	if e := last[len(last)-1]; e.Kind != rollout.EventPaused || e.Reason != "waiting for the on-call" {
		t.Errorf("last event %+v, want the pause with its reason", e)
	}
	// A second pause is refused by the fleet's phase, on any node.
	if err := nodes[0].ctl.Act("pause", ""); !errors.Is(err, rollout.ErrPhase) {
		t.Errorf("pausing a paused rollout: %v, want ErrPhase", err)
	}
	if err := nodes[1].ctl.Act("resume", ""); err != nil {
		t.Fatal(err)
	}
	if !waitFor(40*time.Second, func() bool { return agreed(nodes, rollout.Promoted) }) {
		t.Fatalf("not promoted after the resume:%s", describe(nodes))
	}
}

func TestSharedRolloutHoldsItsStepWhileEtcdIsDown(t *testing.T) {
	nodes := startFleet(t, sharedDef(20, 50, 100), &canaryErrors{})
	if !waitFor(20*time.Second, func() bool { return agreed(nodes, rollout.Progressing) && nodes[0].status().Revision > 0 }) {
		t.Fatalf("the nodes do not agree:%s", describe(nodes))
	}
	testEtcd.Stop()
	restarted := false
	defer func() {
		if !restarted {
			testEtcd.Restart()
		}
	}()
	before := map[string]rollout.State{}
	for _, n := range nodes {
		before[n.id] = n.ctl.Rollout().Snapshot()
	}
	if !waitFor(10*time.Second, func() bool {
		for _, n := range nodes {
			if n.status().Connected {
				return false
			}
		}
		return true
	}) {
		t.Fatalf("the nodes do not report etcd unreachable:%s", describe(nodes))
	}
	// A manual action cannot reach the fleet: refused on the node asked.
	if err := nodes[1].ctl.Act("promote", ""); !errors.Is(err, rollout.ErrUnavailable) {
		t.Errorf("promote while etcd is down: %v, want ErrUnavailable", err)
	}
	// Three windows of traffic go by: no node moves on partial figures.
	time.Sleep(6 * time.Second)
	for _, n := range nodes {
		st, was := n.ctl.Rollout().Snapshot(), before[n.id]
		if st.Phase != was.Phase || st.Step != was.Step || n.ctl.Rollout().Weight() != was.Weight {
			t.Errorf("%s moved while etcd was down: %s step %d weight %d, was %s step %d weight %d",
				n.id, st.Phase, st.Step, n.ctl.Rollout().Weight(), was.Phase, was.Step, was.Weight)
		}
	}
	if err := testEtcd.Restart(); err != nil {
		t.Fatal(err)
	}
	restarted = true
	if !waitFor(40*time.Second, func() bool { return agreed(nodes, rollout.Promoted) }) {
		t.Fatalf("the rollout did not go on once etcd was back:%s", describe(nodes))
	}
}
