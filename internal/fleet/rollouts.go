package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/penstock-dev/penstock/internal/rollout"
)

// RolloutOptions configure a fleet's shared rollouts (NewRollouts).
type RolloutOptions struct {
	// Client is the node's etcd client and Target the fleet's prefix.
	// Required.
	Client *clientv3.Client
	Target Target
	// NodeID names this node in the election and its observations.
	// Required.
	NodeID string
	// LeaseTTL bounds how long a node that died keeps judging a rollout
	// (and its observations stay merged). Default 10s; at least 2s.
	LeaseTTL time.Duration
	// Timeout bounds each request to etcd. Default 2s.
	Timeout time.Duration
	// CheckInterval is how often the state key is read beside its watch,
	// and a lost link to etcd retried. Default 1s.
	CheckInterval time.Duration
	// Logger receives the sharing's log. Nil means slog.Default().
	Logger *slog.Logger
}

// Rollouts shares the rollouts of a node whose configuration comes from
// etcd with the rest of the fleet, through etcd only: per rollout, under
// PREFIX/rollouts/ROUTE/HASH/ (HASH: the definition's, so that nodes
// serving two configurations during a push never mix two rollouts),
//
//   - leader/: an election (etcd's concurrency.Election on a lease of
//     LeaseTTL): the node elected judges the rollout;
//   - obs/NODE/SLOT: each node's per-arm counts of one sub-window, bound
//     to its lease, written once the sub-window is complete and deleted a
//     window later; the leader merges those of the window;
//   - state: the rollout's state (phase, step, weight, last verdict,
//     history), written with a compare-and-swap on its revision by the
//     leader after each analysis and by any node for a manual action, and
//     watched by every node, which serves what it holds.
//
// It is a prometheus.Collector of its metrics.
type Rollouts struct {
	o RolloutOptions
	m *rolloutShareMetrics
}

// NewRollouts returns the sharing of o's fleet.
func NewRollouts(o RolloutOptions) (*Rollouts, error) {
	if o.Client == nil {
		return nil, errors.New("shared rollouts: no etcd client")
	}
	if err := CheckNodeID(o.NodeID); err != nil {
		return nil, err
	}
	if o.LeaseTTL == 0 {
		o.LeaseTTL = 10 * time.Second
	}
	if o.LeaseTTL < 2*time.Second {
		return nil, fmt.Errorf("lease TTL %s: must be at least 2s (etcd's granularity is a second)", o.LeaseTTL)
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultDialTimeout
	}
	if o.CheckInterval <= 0 {
		o.CheckInterval = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Rollouts{o: o, m: newRolloutShareMetrics()}, nil
}

// Rollouts returns the sharing of the source's fleet, as this node.
func (s *Source) Rollouts() *Rollouts {
	rs, _ := NewRollouts(RolloutOptions{Client: s.cli, Target: s.o.Target, NodeID: s.o.NodeID,
		LeaseTTL: s.o.LeaseTTL, Timeout: s.o.DialTimeout})
	return rs
}

// SetLogger sets the log of the rollouts shared from now on.
func (rs *Rollouts) SetLogger(l *slog.Logger) { rs.o.Logger = l }

// Describe and Collect make Rollouts a prometheus.Collector.
func (rs *Rollouts) Describe(ch chan<- *prometheus.Desc) { rs.m.describe(ch) }
func (rs *Rollouts) Collect(ch chan<- prometheus.Metric) { rs.m.collect(ch) }

// RolloutsPrefix is where a fleet's shared rollouts live.
func (t Target) RolloutsPrefix() string { return t.Prefix + "/rollouts/" }

// Share returns the sharing of route's rollout. It does nothing before
// Start.
func (rs *Rollouts) Share(route string) rollout.Shared {
	return &RolloutShare{rs: rs, route: route, log: rs.o.Logger.With("route", route)}
}

// RolloutShare is one rollout shared by the fleet (see Rollouts).
type RolloutShare struct {
	rs     *Rollouts
	route  string
	log    *slog.Logger
	r      *rollout.Rollout
	report func([]rollout.Event)
	base   string // PREFIX/rollouts/ROUTE/HASH/
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu sync.Mutex
	// lease is the current session's lease (0: none); leading is set while
	// this node holds the election under leaderKey, created at leaderRev.
	lease     clientv3.LeaseID
	leading   bool
	leaderKey string
	leaderRev int64
	// leader is the node judging, as last read.
	leader string
	// rev is the state key's revision this node's copy is (0: none yet).
	rev int64
	// connected is whether the last request to etcd succeeded.
	connected bool
	lastErr   string
	// waitFrom and waits count the ticks an analysis of the window
	// beginning at waitFrom waited for a node's observations.
	waitFrom int64
	waits    int
	nodes    int // observations merged by the last analysis
}

// errNotLeader skips an analysis on a node that does not judge.
var errNotLeader = errors.New("another node judges this rollout")

// maxWaits is how many ticks an analysis waits for a node whose
// observations lag behind the window; then it goes on with what the
// fleet published (a node stuck but still holding its lease).
const maxWaits = 10

// sharedState is the value of the state key.
type sharedState struct {
	State rollout.State `json:"state"`
	// Since is the sub-window after which the next analysis window begins.
	Since int64 `json:"since"`
	// Node wrote it, at At.
	Node string    `json:"node"`
	At   time.Time `json:"at"`
}

// Start follows the fleet's state for r: see rollout.Shared.
func (s *RolloutShare) Start(r *rollout.Rollout, report func([]rollout.Event)) {
	s.r, s.report = r, report
	s.base = s.rs.o.Target.RolloutsPrefix() + s.route + "/" + r.Definition().Hash() + "/"
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Go(func() { s.elect(ctx) })
	s.wg.Go(func() { s.follow(ctx) })
	s.wg.Go(func() { s.check(ctx) })
	s.wg.Go(func() { s.publish(ctx) })
}

// Close stops following; the lease is revoked, so another node judges at
// once and this node's observations leave the merge.
func (s *RolloutShare) Close() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.wg.Wait()
}

func (s *RolloutShare) stateKey() string  { return s.base + "state" }
func (s *RolloutShare) obsPrefix() string { return s.base + "obs/" }

func (s *RolloutShare) ctxT(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.rs.o.Timeout)
}

// failed records a failed request to etcd.
func (s *RolloutShare) failed(err error) {
	s.rs.m.etcdErrors.WithLabelValues(s.route).Inc()
	s.mu.Lock()
	was := s.connected
	s.connected, s.lastErr = false, err.Error()
	s.mu.Unlock()
	s.rs.m.connected.WithLabelValues(s.route).Set(0)
	if was {
		s.log.Warn("shared rollout: etcd unreachable; this node keeps its step and no analysis runs", "error", err)
	}
}

func (s *RolloutShare) ok() {
	s.mu.Lock()
	was := s.connected
	s.connected, s.lastErr = true, ""
	s.mu.Unlock()
	s.rs.m.connected.WithLabelValues(s.route).Set(1)
	if !was {
		s.log.Info("shared rollout: following the fleet's state in etcd", "key", s.stateKey())
	}
}

// elect keeps this node a candidate: a session (a lease of LeaseTTL,
// kept alive) and a campaign; elected, it judges until the session ends
// (etcd out of reach for longer than the TTL) or Close.
func (s *RolloutShare) elect(ctx context.Context) {
	retry := time.NewTicker(s.rs.o.CheckInterval)
	defer retry.Stop()
	for ctx.Err() == nil {
		gctx, cancel := s.ctxT(ctx)
		g, err := s.rs.o.Client.Grant(gctx, int64(s.rs.o.LeaseTTL/time.Second))
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				s.failed(err)
			}
			select {
			case <-ctx.Done():
			case <-retry.C:
			}
			continue
		}
		sess, err := concurrency.NewSession(s.rs.o.Client, concurrency.WithLease(g.ID), concurrency.WithContext(ctx))
		if err != nil {
			select {
			case <-ctx.Done():
			case <-retry.C:
			}
			continue
		}
		s.mu.Lock()
		s.lease = sess.Lease()
		s.mu.Unlock()
		s.campaign(ctx, sess)
		s.mu.Lock()
		s.lease, s.leading = 0, false
		s.mu.Unlock()
		s.rs.m.leader.WithLabelValues(s.route).Set(0)
		// Revoked: the election key and the observations go at once.
		rctx, cancel := context.WithTimeout(context.Background(), s.rs.o.Timeout)
		s.rs.o.Client.Revoke(rctx, sess.Lease())
		cancel()
		sess.Close()
	}
}

// campaign runs for the election until elected, then holds it until the
// session or ctx ends.
func (s *RolloutShare) campaign(ctx context.Context, sess *concurrency.Session) {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-sess.Done():
		case <-cctx.Done():
		}
		cancel()
	}()
	e := concurrency.NewElection(sess, s.base+"leader")
	if err := e.Campaign(cctx, s.rs.o.NodeID); err != nil {
		return
	}
	s.mu.Lock()
	s.leading, s.leaderKey, s.leaderRev, s.leader = true, e.Key(), e.Rev(), s.rs.o.NodeID
	s.mu.Unlock()
	s.rs.m.leader.WithLabelValues(s.route).Set(1)
	s.log.Info("shared rollout: this node judges the rollout for the fleet", "node", s.rs.o.NodeID)
	<-cctx.Done()
	if s.rs.o.Client.Ctx().Err() == nil && ctx.Err() == nil {
		s.log.Warn("shared rollout: lease lost (etcd out of reach); this node no longer judges the rollout")
	}
}

// follow reads the state key (creating it from this node's state when no
// node has yet), adopts it, and watches it.
func (s *RolloutShare) follow(ctx context.Context) {
	retry := time.NewTicker(s.rs.o.CheckInterval)
	defer retry.Stop()
	for ctx.Err() == nil {
		rev, err := s.read(ctx, true)
		if err == nil {
			wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
			// Watch itself waits for etcd: check, beside, keeps reading.
			for resp := range s.rs.o.Client.Watch(wctx, s.stateKey(), clientv3.WithRev(rev+1)) {
				if resp.Err() != nil {
					break
				}
				for _, ev := range resp.Events {
					if ev.Type == clientv3.EventTypePut {
						s.adopt(ev.Kv.Value, ev.Kv.ModRevision)
					}
				}
			}
			cancel()
		}
		select {
		case <-ctx.Done():
		case <-retry.C:
		}
	}
}

// check reads the state key and the node judging every CheckInterval,
// beside the watch: it tracks the link to etcd, and catches up with a
// state the watch missed.
func (s *RolloutShare) check(ctx context.Context) {
	tick := time.NewTicker(s.rs.o.CheckInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		s.read(ctx, false)
	}
}

// read reads the state key and the election's leader, adopting a newer
// state; create makes the key from this node's state when it is missing.
// It returns the cluster's revision.
func (s *RolloutShare) read(ctx context.Context, create bool) (int64, error) {
	rctx, cancel := s.ctxT(ctx)
	defer cancel()
	resp, err := s.rs.o.Client.Txn(rctx).Then(
		clientv3.OpGet(s.stateKey()),
		clientv3.OpGet(s.base+"leader/", clientv3.WithFirstCreate()...),
	).Commit()
	if err != nil {
		if ctx.Err() == nil {
			s.failed(err)
		}
		return 0, err
	}
	s.ok()
	leader := ""
	if kvs := resp.Responses[1].GetResponseRange().Kvs; len(kvs) > 0 {
		leader = string(kvs[0].Value)
	}
	s.mu.Lock()
	s.leader = leader
	s.mu.Unlock()
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
		s.adopt(kvs[0].Value, kvs[0].ModRevision)
		return resp.Header.Revision, nil
	}
	if !create {
		return resp.Header.Revision, nil
	}
	// The first node to serve the rollout writes its state; the others
	// find it there.
	b, _ := json.Marshal(sharedState{State: s.r.Snapshot(), Since: s.r.Since(), Node: s.rs.o.NodeID, At: time.Now().UTC()})
	tresp, err := s.rs.o.Client.Txn(rctx).
		If(clientv3.Compare(clientv3.CreateRevision(s.stateKey()), "=", 0)).
		Then(clientv3.OpPut(s.stateKey(), string(b))).
		Else(clientv3.OpGet(s.stateKey())).Commit()
	if err != nil {
		s.failed(err)
		return 0, err
	}
	if tresp.Succeeded {
		s.setRev(tresp.Header.Revision)
	} else if kvs := tresp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
		s.adopt(kvs[0].Value, kvs[0].ModRevision)
	}
	return tresp.Header.Revision, nil
}

func (s *RolloutShare) setRev(rev int64) {
	s.mu.Lock()
	s.rev = max(s.rev, rev)
	rev = s.rev
	s.mu.Unlock()
	s.rs.m.revision.WithLabelValues(s.route).Set(float64(rev))
}

// adopt makes the state of revision rev this node's, unless it has it.
func (s *RolloutShare) adopt(value []byte, rev int64) {
	s.mu.Lock()
	known := rev <= s.rev
	s.mu.Unlock()
	if known {
		return
	}
	var st sharedState
	if err := json.Unmarshal(value, &st); err != nil {
		s.log.Error("shared rollout: unreadable state in etcd; keeping this node's", "key", s.stateKey(), "revision", rev, "error", err)
		s.setRev(rev)
		return
	}
	evs, err := s.r.Adopt(st.State, st.Since)
	s.setRev(rev)
	if err != nil {
		s.log.Error("shared rollout: state in etcd refused; keeping this node's", "key", s.stateKey(), "revision", rev, "error", err)
		return
	}
	s.report(evs)
}

// Refresh reads the state key now and adopts it (after ErrStale).
func (s *RolloutShare) Refresh() error {
	_, err := s.read(context.Background(), false)
	return err
}

// publish writes this node's observations once per sub-window, under its
// lease: one key per complete sub-window (obs/NODE/SLOT, written once, a
// few KiB at most), the sub-windows older than a window deleted in the same
// transaction. A sub-window without requests is written too (empty): the
// newest key of a node says how far it has published.
func (s *RolloutShare) publish(ctx context.Context) {
	m := s.r.Monitor()
	tick := time.NewTicker(s.r.Definition().Slot)
	defer tick.Stop()
	var lastLease clientv3.LeaseID
	sent := int64(-1)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		s.mu.Lock()
		lease := s.lease
		s.mu.Unlock()
		if lease == 0 {
			continue
		}
		if lease != lastLease {
			// The keys of a lost lease are gone: the whole window again.
			lastLease, sent = lease, -1
		}
		// The sub-window may have ended before the rollout's tick rotated it.
		m.Advance(time.Now())
		through := m.Current() - 1
		oldest := through - int64(m.Slots()) + 1
		for from := max(sent+1, oldest); from <= through; {
			// etcd takes at most 128 operations per transaction.
			hi := min(from+63, through)
			var ops []clientv3.Op
			for k := from; k <= hi; k++ {
				b, _ := json.Marshal(slotObservations{Baseline: one(m.Export(rollout.Baseline, k, k)), Canary: one(m.Export(rollout.Canary, k, k))})
				ops = append(ops, clientv3.OpPut(s.slotKey(k), string(b), clientv3.WithLease(lease)))
			}
			if hi == through {
				ops = append(ops, clientv3.OpDelete(s.slotKey(0), clientv3.WithRange(s.slotKey(oldest))))
			}
			rctx, cancel := s.ctxT(ctx)
			_, err := s.rs.o.Client.Txn(rctx).Then(ops...).Commit()
			cancel()
			if err != nil {
				if ctx.Err() == nil {
					s.failed(err)
				}
				break
			}
			s.rs.m.published.WithLabelValues(s.route).Add(float64(hi - from + 1))
			sent, from = hi, hi+1
		}
	}
}

// slotObservations is the value of an obs/NODE/SLOT key: each arm's counts
// of the sub-window, nil without requests.
type slotObservations struct {
	Baseline *rollout.SlotCounts `json:"baseline,omitempty"`
	Canary   *rollout.SlotCounts `json:"canary,omitempty"`
}

func one(sc []rollout.SlotCounts) *rollout.SlotCounts {
	if len(sc) == 0 {
		return nil
	}
	return &sc[0]
}

// slotKey is this node's key of sub-window k: zero-padded, so that the
// keys of a node sort by sub-window and a range deletes the old ones.
func (s *RolloutShare) slotKey(k int64) string {
	return fmt.Sprintf("%s%s/%020d", s.obsPrefix(), s.rs.o.NodeID, max(k, 0))
}

// observations are one node's counts of a window.
type observations struct {
	Node string
	// Through is the newest sub-window published.
	Through int64
	Arms    [2][]rollout.SlotCounts
}

// local is this node's observations of the window, through the last
// complete sub-window.
func (s *RolloutShare) local() observations {
	m := s.r.Monitor()
	m.Advance(time.Now())
	through := m.Current() - 1
	from := through - int64(m.Slots()) + 1
	return observations{Node: s.rs.o.NodeID, Through: through,
		Arms: [2][]rollout.SlotCounts{m.Export(rollout.Baseline, from, through), m.Export(rollout.Canary, from, through)}}
}

// Windows merges the fleet's observations of from..to: see rollout.Shared.
func (s *RolloutShare) Windows(from, to int64) (rollout.ArmWindow, rollout.ArmWindow, error) {
	s.mu.Lock()
	leading := s.leading
	s.mu.Unlock()
	if !leading {
		return rollout.ArmWindow{}, rollout.ArmWindow{}, errNotLeader
	}
	rctx, cancel := s.ctxT(context.Background())
	resp, err := s.rs.o.Client.Get(rctx, s.obsPrefix(), clientv3.WithPrefix())
	cancel()
	if err != nil {
		s.failed(err)
		return rollout.ArmWindow{}, rollout.ArmWindow{}, err
	}
	others := map[string]*observations{}
	for _, kv := range resp.Kvs {
		node, slot, ok := strings.Cut(strings.TrimPrefix(string(kv.Key), s.obsPrefix()), "/")
		k, perr := strconv.ParseInt(slot, 10, 64)
		if !ok || perr != nil || node == s.rs.o.NodeID {
			continue
		}
		var so slotObservations
		if err := json.Unmarshal(kv.Value, &so); err != nil {
			s.log.Warn("shared rollout: unreadable observations left out", "key", string(kv.Key), "error", err)
			continue
		}
		o := others[node]
		if o == nil {
			o = &observations{Node: node, Through: k}
			others[node] = o
		}
		o.Through = max(o.Through, k)
		for i, sc := range []*rollout.SlotCounts{so.Baseline, so.Canary} {
			if sc != nil {
				sc.Slot = k
				o.Arms[i] = append(o.Arms[i], *sc)
			}
		}
	}
	parts := []observations{s.local()}
	// Each node publishes once per sub-window, at its own phase: the node
	// judging may read a node whose last sub-window is not out yet. The
	// window then ends one sub-window early for every node alike (a
	// sub-window still filling is left out of an analysis anyway); a node
	// further behind is waited for, up to maxWaits ticks.
	end, lagging := to, ""
	for _, o := range others {
		if o.Through < to-1 {
			lagging = o.Node
		}
		end = min(end, max(o.Through, to-1))
		parts = append(parts, *o)
	}
	s.mu.Lock()
	if from != s.waitFrom {
		s.waitFrom, s.waits = from, 0
	}
	s.waits++
	wait := lagging != "" && s.waits <= maxWaits
	if !wait {
		s.nodes = len(parts)
	}
	s.mu.Unlock()
	if wait {
		return rollout.ArmWindow{}, rollout.ArmWindow{}, fmt.Errorf("node %s has not published the window yet", lagging)
	}
	var b, c [][]rollout.SlotCounts
	for _, p := range parts {
		b, c = append(b, p.Arms[0]), append(c, p.Arms[1])
	}
	s.rs.m.merged.WithLabelValues(s.route).Add(float64(len(parts)))
	return rollout.Merge(from, end, b...), rollout.Merge(from, end, c...), nil
}

// Commit writes st with a compare-and-swap on the state key's revision
// (and, on the node judging, on its election key): see rollout.Shared.
func (s *RolloutShare) Commit(st rollout.State, since int64) error {
	s.mu.Lock()
	rev, leading, lkey, lrev := s.rev, s.leading, s.leaderKey, s.leaderRev
	s.mu.Unlock()
	b, err := json.Marshal(sharedState{State: st, Since: since, Node: s.rs.o.NodeID, At: time.Now().UTC()})
	if err != nil {
		return err
	}
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(s.stateKey()), "=", rev)}
	if leading {
		// A leader whose lease expired unnoticed must not overwrite
		// what its successor judged.
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(lkey), "=", lrev))
	}
	rctx, cancel := s.ctxT(context.Background())
	defer cancel()
	resp, err := s.rs.o.Client.Txn(rctx).If(cmps...).Then(clientv3.OpPut(s.stateKey(), string(b))).Commit()
	if err != nil {
		s.failed(err)
		return fmt.Errorf("etcd %s: %w: %w", s.rs.o.Target, rollout.ErrUnavailable, err)
	}
	if !resp.Succeeded {
		return rollout.ErrStale
	}
	s.setRev(resp.Header.Revision)
	return nil
}

// Status is shown by the admin API.
func (s *RolloutShare) Status() rollout.SharedStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return rollout.SharedStatus{Key: s.stateKey(), Revision: s.rev, Node: s.rs.o.NodeID, Leader: s.leader,
		Leading: s.leading, Connected: s.connected, LastError: s.lastErr, Merged: s.nodes}
}

// rolloutShareMetrics are the shared rollouts' metrics, by route.
type rolloutShareMetrics struct {
	leader, connected, revision   *prometheus.GaugeVec
	published, merged, etcdErrors *prometheus.CounterVec
}

func newRolloutShareMetrics() *rolloutShareMetrics {
	g := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, []string{"route"})
	}
	c := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"route"})
	}
	m := &rolloutShareMetrics{
		leader:    g("penstock_rollout_fleet_leader", "1 while this node judges the route's rollout for the fleet."),
		connected: g("penstock_rollout_fleet_connected", "1 while the last request to etcd for the route's shared rollout succeeded."),
		revision:  g("penstock_rollout_fleet_state_revision", "The etcd revision of the shared rollout state this node serves."),
		published: c("penstock_rollout_fleet_observations_published_total", "Observations of the window this node published to etcd."),
		merged:    c("penstock_rollout_fleet_observations_merged_total", "Nodes' observations merged into analyses judged by this node."),
		etcdErrors: c("penstock_rollout_fleet_etcd_errors_total",
			"Requests to etcd for the route's shared rollout that failed."),
	}
	return m
}

func (m *rolloutShareMetrics) all() []prometheus.Collector {
	return []prometheus.Collector{m.leader, m.connected, m.revision, m.published, m.merged, m.etcdErrors}
}

func (m *rolloutShareMetrics) describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.all() {
		c.Describe(ch)
	}
}

func (m *rolloutShareMetrics) collect(ch chan<- prometheus.Metric) {
	for _, c := range m.all() {
		c.Collect(ch)
	}
}
