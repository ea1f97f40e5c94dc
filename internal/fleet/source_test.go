package fleet_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/fleet"
	"github.com/penstock-dev/penstock/internal/server"
)

// doc is a valid configuration whose one route is /NAME.
func doc(name string) []byte {
	return []byte(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams: [{name: up, endpoints: [{address: "127.0.0.1:9"}]}]
routes: [{name: r, match: {path: /` + name + `}, upstream: up}]
`)
}

// badDoc has an unknown upstream on line 3.
var badDoc = []byte(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams: [{name: up, endpoints: [{address: "127.0.0.1:9"}]}]
routes: [{name: r, match: {path: /x}, upstream: nope}]
`)

// applied records what a Source applied, refusing what CheckDocument
// refuses, as the server does.
type applied struct {
	mu    sync.Mutex
	docs  []string
	names []string
}

func (a *applied) apply(data []byte, name string) error {
	if err := server.CheckDocument(data, name); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.docs = append(a.docs, string(data))
	a.names = append(a.names, name)
	return nil
}

func (a *applied) last() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.docs) == 0 {
		return ""
	}
	return a.docs[len(a.docs)-1]
}

func push(t *testing.T, cli *clientv3.Client, tg fleet.Target, data []byte) int64 {
	t.Helper()
	res, err := fleet.Push(ctxT(t), cli, tg, data, -1, fleet.Meta{Source: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return res.Revision
}

// running is a Source whose Run goes on until stop.
type running struct {
	src  *fleet.Source
	reg  *prometheus.Registry
	done chan struct{}
	stop func()
}

func run(t *testing.T, o fleet.Options, a *applied) *running {
	t.Helper()
	return runLogged(t, o, a, io.Discard)
}

func runLogged(t *testing.T, o fleet.Options, a *applied, logTo io.Writer) *running {
	t.Helper()
	src, err := fleet.New(o)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := src.Load(context.Background(), server.CheckDocument); err != nil {
		src.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{src: src, reg: prometheus.NewRegistry(), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		src.Run(ctx, a.apply, slog.New(slog.NewTextHandler(logTo, nil)), r.reg)
	}()
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			cancel()
			<-r.done
			src.Close()
		})
	}
	t.Cleanup(r.stop)
	return r
}

// TestSourceFollowsTheKey checks the whole life of a node's source: it
// starts from etcd, applies each pushed revision, refuses a bad one (the
// previous keeps serving, the refusal names the revision, field and line,
// and is counted), writes the cache after each good apply, registers its
// revision under nodes/, and leaves the list when it stops.
func TestSourceFollowsTheKey(t *testing.T) {
	tg, cli := newTarget(t)
	first := push(t, cli, tg, doc("one"))
	cache := filepath.Join(t.TempDir(), "cache.yaml")
	a := &applied{}
	r := run(t, fleet.Options{Target: tg, CacheFile: cache, NodeID: "n1", CheckInterval: 200 * time.Millisecond}, a)
	if st := r.src.Status(); st.Served.Revision != first || st.Served.From != "etcd" || !st.Connected {
		t.Fatalf("after load: %+v", st)
	}
	registered := func(rev int64) bool {
		l, err := fleet.Nodes(ctxT(t), cli, tg)
		return err == nil && len(l.Nodes) == 1 && l.Nodes[0].Node == "n1" && l.Nodes[0].Revision == rev
	}
	if !waitFor(10*time.Second, func() bool { return registered(first) }) {
		t.Fatal("node not registered with its first revision")
	}

	second := push(t, cli, tg, doc("two"))
	if !waitFor(10*time.Second, func() bool { return r.src.Status().Served.Revision == second }) {
		t.Fatalf("revision %d not applied: %+v", second, r.src.Status())
	}
	if !strings.Contains(a.last(), "/two") {
		t.Errorf("applied %q", a.last())
	}
	if !waitFor(10*time.Second, func() bool { return registered(second) }) {
		t.Error("node registration not updated to the new revision")
	}
	// The cache is written right after the apply.
	if !waitFor(10*time.Second, func() bool {
		b, _ := os.ReadFile(cache)
		st := r.src.Status()
		return strings.Contains(string(b), "/two") && strings.Contains(string(b), "revision "+itoa(second)+",") && st.Cache.Revision == second
	}) {
		b, _ := os.ReadFile(cache)
		t.Errorf("cache not rewritten:\n%s", b)
	}
	if st := r.src.Status(); st.Cache.Error != "" || st.Cache.Written.IsZero() {
		t.Errorf("cache status %+v", st.Cache)
	}

	bad := push(t, cli, tg, badDoc)
	if !waitFor(10*time.Second, func() bool {
		st := r.src.Status()
		return st.Refused != nil && st.Refused.Revision == bad
	}) {
		t.Fatalf("bad revision not refused: %+v", r.src.Status())
	}
	st := r.src.Status()
	if st.Served.Revision != second {
		t.Errorf("served %d after a refusal, want %d still", st.Served.Revision, second)
	}
	e := st.Refused.Errors[0]
	if e.Field != "routes[0].upstream" || e.Line != 3 || !strings.HasPrefix(e.Error, "etcd:"+tg.ConfigKey()+"@"+itoa(bad)+": routes[0].upstream (line 3)") {
		t.Errorf("refusal %+v does not name the revision, field and line", e)
	}
	if got := testutil.ToFloat64(counter(t, r.reg, "penstock_config_source_refused_total")); got != 1 {
		t.Errorf("refused_total = %v, want 1", got)
	}
	if got := testutil.ToFloat64(counter(t, r.reg, "penstock_config_source_revision")); got != float64(second) {
		t.Errorf("revision gauge = %v, want %d", got, second)
	}
	if err := r.src.Resync(); err == nil || !strings.Contains(err.Error(), "routes[0].upstream") {
		t.Errorf("Resync on a refused revision = %v, want its errors", err)
	}
	if b, _ := os.ReadFile(cache); strings.Contains(string(b), "nope") {
		t.Error("a refused revision reached the cache")
	}
	if !waitFor(10*time.Second, func() bool {
		l, _ := fleet.Nodes(ctxT(t), cli, tg)
		return len(l.Nodes) == 1 && l.Nodes[0].Refused == bad && !l.Converged()
	}) {
		t.Error("node record does not show the refused revision")
	}

	// The same document at a new revision is adopted without a reload.
	n := len(a.docs)
	again := push(t, cli, tg, doc("two"))
	if !waitFor(10*time.Second, func() bool { return r.src.Status().Served.Revision == again }) {
		t.Fatal("unchanged document at a new revision not adopted")
	}
	if len(a.docs) != n {
		t.Error("an unchanged document was applied again")
	}

	r.stop()
	l, err := fleet.Nodes(ctxT(t), cli, tg)
	if err != nil || len(l.Nodes) != 0 {
		t.Errorf("after stop, nodes = %+v, %v; want none (lease revoked)", l.Nodes, err)
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

// counter finds a metric with no labels in reg.
func counter(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: "copy"})
			m := mf.GetMetric()[0]
			if m.Counter != nil {
				g.Set(m.Counter.GetValue())
			} else {
				g.Set(m.Gauge.GetValue())
			}
			return g
		}
	}
	t.Fatalf("no metric %s", name)
	return nil
}

// TestSourceLoad checks where a node starts from: etcd when it answers with
// a valid revision, else the cache, else an error that says why.
func TestSourceLoad(t *testing.T) {
	tg, cli := newTarget(t)
	dir := t.TempDir()
	unreachable, _ := fleet.ParseURL("etcd://127.0.0.1:1" + tg.Prefix)

	load := func(o fleet.Options) (*fleet.Source, string, string, error) {
		t.Helper()
		src, err := fleet.New(o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { src.Close() })
		data, name, err := src.Load(context.Background(), server.CheckDocument)
		return src, string(data), name, err
	}

	// Nothing in etcd, no cache.
	_, _, _, err := load(fleet.Options{Target: tg, CacheFile: filepath.Join(dir, "none.yaml")})
	if err == nil || !strings.Contains(err.Error(), "does not exist in etcd") || !strings.Contains(err.Error(), "penstock config push") {
		t.Errorf("missing key, no cache: %v", err)
	}
	// etcd unreachable, no cache.
	_, _, _, err = load(fleet.Options{Target: unreachable, CacheFile: filepath.Join(dir, "none.yaml"), DialTimeout: 300 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "unreachable") || !strings.Contains(err.Error(), "no cached configuration") {
		t.Errorf("unreachable, no cache: %v", err)
	}

	// A node that served revision R leaves a cache behind.
	rev := push(t, cli, tg, doc("cached"))
	cache := filepath.Join(dir, "cache.yaml")
	r := run(t, fleet.Options{Target: tg, CacheFile: cache, NodeID: "c1"}, &applied{})
	r.stop()

	src, data, name, err := load(fleet.Options{Target: unreachable, CacheFile: cache, DialTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatalf("unreachable with a cache: %v", err)
	}
	if !strings.Contains(data, "/cached") || !strings.HasPrefix(name, "cache "+cache) {
		t.Errorf("loaded %q as %q", data, name)
	}
	if st := src.Status(); st.Served.From != "cache" || st.Served.Revision != rev || st.Connected {
		t.Errorf("status %+v, want served from the cache at %d, not connected", st, rev)
	}
	// The cache is a configuration file in its own right.
	if _, err := config.Load(cache); err != nil {
		t.Errorf("cache is not a valid configuration file: %v", err)
	}

	// A bad revision in etcd at start: the cache serves, the refusal shows.
	bad := push(t, cli, tg, badDoc)
	src, data, _, err = load(fleet.Options{Target: tg, CacheFile: cache})
	if err != nil || !strings.Contains(data, "/cached") {
		t.Fatalf("bad revision at start with a good cache: %q, %v", data, err)
	}
	if st := src.Status(); st.Refused == nil || st.Refused.Revision != bad || !st.Connected {
		t.Errorf("status %+v, want revision %d refused", st, bad)
	}
	// Without the cache the bad revision's own errors are the answer.
	_, _, _, err = load(fleet.Options{Target: tg, CacheFile: filepath.Join(dir, "none.yaml")})
	var errs config.Errors
	if !errors.As(err, &errs) || !strings.Contains(err.Error(), "etcd:"+tg.ConfigKey()+"@"+itoa(bad)+": routes[0].upstream (line 3)") {
		t.Errorf("bad revision, no cache: %v", err)
	}
	// A cache of another key is not used.
	other, _ := fleet.ParseURL("etcd://127.0.0.1:1/elsewhere")
	_, _, _, err = load(fleet.Options{Target: other, CacheFile: cache, DialTimeout: 300 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "holds "+tg.ConfigKey()) {
		t.Errorf("cache of another key: %v", err)
	}
}

// cutProxy forwards TCP connections to an address until cut, which closes
// them all and refuses new ones until restored: a network partition
// between one node and etcd, while others still write to it.
type cutProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  map[net.Conn]struct{}
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	t.Cleanup(func() { ln.Close(); p.setCut(true) })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			if p.cut {
				p.mu.Unlock()
				c.Close()
				continue
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				p.mu.Unlock()
				c.Close()
				continue
			}
			p.conns[c], p.conns[u] = struct{}{}, struct{}{}
			p.mu.Unlock()
			go func() { io.Copy(u, c); u.Close() }()
			go func() { io.Copy(c, u); c.Close() }()
		}
	}()
	return p
}

func (p *cutProxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for c := range p.conns {
			c.Close()
		}
		clear(p.conns)
	}
}

// TestSourceThroughAPartition checks that a node cut off from etcd keeps
// serving, shows itself disconnected, and applies what was pushed meanwhile
// once it reaches etcd again; its lease, lost during the cut, is renewed.
func TestSourceThroughAPartition(t *testing.T) {
	tg, cli := newTarget(t)
	push(t, cli, tg, doc("before"))
	p := newCutProxy(t, testEtcd.Addr)
	viaProxy, _ := fleet.ParseURL("etcd://" + p.ln.Addr().String() + tg.Prefix)
	a := &applied{}
	r := run(t, fleet.Options{Target: viaProxy, CacheFile: filepath.Join(t.TempDir(), "c.yaml"), NodeID: "p1",
		CheckInterval: 200 * time.Millisecond, DialTimeout: 500 * time.Millisecond, LeaseTTL: 2 * time.Second}, a)

	p.setCut(true)
	if !waitFor(10*time.Second, func() bool { return !r.src.Status().Connected }) {
		t.Fatal("source did not notice the partition")
	}
	if got := testutil.ToFloat64(counter(t, r.reg, "penstock_config_source_connected")); got != 0 {
		t.Errorf("connected gauge = %v during the partition", got)
	}
	// The lease expires during the cut: the node leaves the list.
	if !waitFor(10*time.Second, func() bool {
		l, _ := fleet.Nodes(ctxT(t), cli, tg)
		return len(l.Nodes) == 0
	}) {
		t.Error("registration outlived its lease during the partition")
	}
	during := push(t, cli, tg, doc("during"))
	time.Sleep(500 * time.Millisecond)
	if r.src.Status().Served.Revision == during {
		t.Fatal("applied a revision through a cut link")
	}

	p.setCut(false)
	if !waitFor(15*time.Second, func() bool { return r.src.Status().Served.Revision == during }) {
		t.Fatalf("revision pushed during the partition not applied after it: %+v", r.src.Status())
	}
	if !strings.Contains(a.last(), "/during") || !r.src.Status().Connected {
		t.Errorf("after the partition: applied %q, status %+v", a.last(), r.src.Status())
	}
	if !waitFor(15*time.Second, func() bool {
		l, _ := fleet.Nodes(ctxT(t), cli, tg)
		return len(l.Nodes) == 1 && l.Nodes[0].Revision == during
	}) {
		t.Error("node not registered again after the partition")
	}
}

// TestSourceRegistersAgain checks that a node whose record is deleted (by
// hand, or with the lease of another process of the same node id) writes it
// again.
func TestSourceRegistersAgain(t *testing.T) {
	tg, cli := newTarget(t)
	rev := push(t, cli, tg, doc("x"))
	run(t, fleet.Options{Target: tg, NodeID: "r1", CheckInterval: 100 * time.Millisecond}, &applied{})
	listed := func() bool {
		l, _ := fleet.Nodes(ctxT(t), cli, tg)
		return len(l.Nodes) == 1 && l.Nodes[0].Revision == rev && l.Converged()
	}
	if !waitFor(10*time.Second, listed) {
		t.Fatal("not registered")
	}
	if _, err := cli.Delete(ctxT(t), tg.NodeKey("r1")); err != nil {
		t.Fatal(err)
	}
	if !waitFor(10*time.Second, listed) {
		t.Error("record not written again after it was deleted")
	}
}

// TestSourceBeforeRun checks that a resync before Run has started is
// refused, not a crash.
func TestSourceBeforeRun(t *testing.T) {
	tg, cli := newTarget(t)
	push(t, cli, tg, doc("x"))
	src, err := fleet.New(fleet.Options{Target: tg})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if _, _, err := src.Load(context.Background(), server.CheckDocument); err != nil {
		t.Fatal(err)
	}
	push(t, cli, tg, doc("y"))
	if err := src.Resync(); err == nil || !strings.Contains(err.Error(), "not running yet") {
		t.Errorf("Resync before Run = %v", err)
	}
}

// TestSourceLeavesNoGoroutine checks that a stopped and closed Source
// leaves no goroutine behind (watch, keepalive, registration, the client).
func TestSourceLeavesNoGoroutine(t *testing.T) {
	tg, cli := newTarget(t)
	push(t, cli, tg, doc("x"))
	before := runtime.NumGoroutine()
	for range 3 {
		r := run(t, fleet.Options{Target: tg, NodeID: "g1", CheckInterval: 50 * time.Millisecond}, &applied{})
		if !waitFor(10*time.Second, func() bool { return r.src.Status().Registered }) {
			t.Fatal("not registered")
		}
		r.stop()
	}
	if !waitFor(10*time.Second, func() bool { return runtime.NumGoroutine() <= before }) {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines before, %d after three runs:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
	}
}

// lockedBuffer is a log both a test and a Source's goroutines use.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestSourceNodeIDTwins checks that two processes with one node id do not
// fight over the record (no write unless something changes) and that the
// one that finds the other's record says so.
func TestSourceNodeIDTwins(t *testing.T) {
	tg, cli := newTarget(t)
	push(t, cli, tg, doc("x"))
	var logs [2]lockedBuffer
	for i := range logs {
		runLogged(t, fleet.Options{Target: tg, NodeID: "twin", CheckInterval: 50 * time.Millisecond}, &applied{}, &logs[i])
	}
	if !waitFor(10*time.Second, func() bool {
		return strings.Contains(logs[0].String()+logs[1].String(), "another process registers this node id")
	}) {
		t.Error("no warning about two processes with one node id")
	}
	time.Sleep(100 * time.Millisecond) // both registered and settled
	resp, err := cli.Get(ctxT(t), tg.NodeKey("twin"))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatal(resp, err)
	}
	before := resp.Kvs[0].Version
	time.Sleep(500 * time.Millisecond) // ten checks each
	resp, _ = cli.Get(ctxT(t), tg.NodeKey("twin"))
	if after := resp.Kvs[0].Version; after != before {
		t.Errorf("the record was rewritten %d times in 500ms with nothing changed", after-before)
	}
}
