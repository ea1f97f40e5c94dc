package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/fleet"
	"github.com/penstock-dev/penstock/internal/fleet/etcdtest"
)

// fleetEtcd is the package's etcd (scripts/test installs etcd-server),
// started once by TestMain; nil when etcd is not installed.
var fleetEtcd *etcdtest.Etcd

func startFleetEtcd() {
	if !etcdtest.Installed() {
		return
	}
	e, err := etcdtest.Start("")
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcd:", err)
		os.Exit(1)
	}
	fleetEtcd = e
}

func stopFleetEtcd() {
	if fleetEtcd != nil {
		fleetEtcd.Close()
	}
}

func needEtcd(t *testing.T) *etcdtest.Etcd {
	t.Helper()
	if fleetEtcd == nil {
		t.Skip("etcd is not installed (scripts/test installs etcd-server)")
	}
	return fleetEtcd
}

var fleetPrefixes atomic.Int64

func etcdURL(t *testing.T) string {
	return needEtcd(t).URL(fmt.Sprintf("/fleet%d", fleetPrefixes.Add(1)))
}

// fleetOutage is how long etcd stays down in the acceptance test: the
// issue's 30 s; 5 s with -short.
func fleetOutage() time.Duration {
	if testing.Short() {
		return 5 * time.Second
	}
	return 30 * time.Second
}

// fleetDoc is the fleet's configuration, generation gen: a stable route
// for the clients, and /genN, which exists from generation N on only, to
// see which generation a node serves. Every address is port 0, so three
// nodes on one machine can share one configuration (on separate hosts a
// fleet uses fixed ports).
func fleetDoc(upstream string, gen int) string {
	return fmt.Sprintf(`listeners: [{name: main, address: "127.0.0.1:0", protocols: [h1]}]
admin: {address: "127.0.0.1:0"}
upstreams: [{name: up, endpoints: [{address: %q}]}]
routes:
  - {name: stable, match: {path_prefix: /stable}, upstream: up}
  - {name: gen, match: {path: /gen%d}, upstream: up}
logging: {format: text}
`, upstream, gen)
}

// node is one penstock serve process of the fleet.
type node struct {
	id, log   string
	cmd       *exec.Cmd
	exited    chan struct{}
	addr      string // the listener
	adminAddr string
}

var (
	listeningRE = regexp.MustCompile(`msg=listening listener=main address=(\S+)`)
	adminRE     = regexp.MustCompile(`msg="admin listening" address=(\S+)`)
)

// startNode starts penstock serve --config-source url as node id and waits
// until it serves, reading its addresses from its log.
func startNode(t *testing.T, bin, url, dir, id string, run int) *node {
	t.Helper()
	n := &node{id: id, log: filepath.Join(dir, fmt.Sprintf("%s.%d.log", id, run)), exited: make(chan struct{})}
	logFile, err := os.Create(n.log)
	if err != nil {
		t.Fatal(err)
	}
	n.cmd = exec.Command(bin, "serve", "--config-source", url, "--config-cache", filepath.Join(dir, id+".cache.yaml"), "--node-id", id)
	n.cmd.Stdout, n.cmd.Stderr = logFile, logFile
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { n.cmd.Wait(); logFile.Close(); close(n.exited) }()
	t.Cleanup(func() { n.stop(t) })
	ok := waitFor(20*time.Second, func() bool {
		b, _ := os.ReadFile(n.log)
		l, a := listeningRE.FindSubmatch(b), adminRE.FindSubmatch(b)
		if l != nil && a != nil {
			n.addr, n.adminAddr = string(l[1]), string(a[1])
			return true
		}
		return false
	})
	if !ok {
		b, _ := os.ReadFile(n.log)
		t.Fatalf("node %s did not start:\n%s", id, b)
	}
	return n
}

// stop ends the node with SIGTERM and waits for it to exit.
func (n *node) stop(t *testing.T) {
	select {
	case <-n.exited:
		return
	default:
	}
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-time.After(15 * time.Second):
		n.cmd.Process.Kill()
		<-n.exited
		t.Errorf("node %s did not exit within 15s of SIGTERM", n.id)
	}
}

var nodeClient = &http.Client{Timeout: 5 * time.Second}

func (n *node) status(path string) int {
	resp, err := nodeClient.Get("http://" + n.addr + path)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// source is the node's GET /config/source.
func (n *node) source() fleet.Status {
	var st fleet.Status
	resp, err := nodeClient.Get("http://" + n.adminAddr + "/config/source")
	if err != nil {
		return st
	}
	defer resp.Body.Close()
	json.NewDecoder(resp.Body).Decode(&st)
	return st
}

func (n *node) metric(name string) string {
	resp, err := nodeClient.Get("http://" + n.adminAddr + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == name {
			return f[1]
		}
	}
	return ""
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// buildPenstock builds the binary once for the package's fleet tests.
func buildPenstock(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "penstock-fleet-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "penstock")
		if out, err := exec.Command("go", "build", "-o", builtBin, ".").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	t.Cleanup(func() {}) // the binary's directory goes with the test run's temp files
	return builtBin
}

// pushFile writes doc to a file and pushes it with penstock config push,
// returning the new revision.
func pushFile(t *testing.T, dir, url, doc string) int64 {
	t.Helper()
	file := filepath.Join(dir, "push.yaml")
	if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI("config", "push", "-c", file, url)
	if code != 0 {
		t.Fatalf("config push: exit %d\n%s%s", code, out, errOut)
	}
	var rev int64
	if _, err := fmt.Sscanf(out[strings.Index(out, "revision "):], "revision %d", &rev); err != nil {
		t.Fatalf("config push output %q: %v", out, err)
	}
	return rev
}

// TestFleetAcceptance runs three penstock processes on one etcd, as the
// fleet issue's acceptance asks: 20 pushed changes each observed served by
// all three (the convergence time is logged: P50 and max); a bad revision
// refused by all three while the previous one serves; etcd stopped for
// fleetOutage with clients' requests all succeeding meanwhile; a node
// restarted during the outage serving its cached configuration; and the
// fleet converging again once etcd is back.
func TestFleetAcceptance(t *testing.T) {
	url := etcdURL(t)
	e := needEtcd(t)
	bin := buildPenstock(t)
	dir := t.TempDir()
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.URL.Path) })}
	upLn := listenLoopback(t)
	go up.Serve(upLn)
	t.Cleanup(func() { up.Close() })
	upstream := upLn.Addr().String()

	pushFile(t, dir, url, fleetDoc(upstream, 0))
	nodes := []*node{
		startNode(t, bin, url, dir, "node-1", 0),
		startNode(t, bin, url, dir, "node-2", 0),
		startNode(t, bin, url, dir, "node-3", 0),
	}
	servesGen := func(n *node, gen int) bool { return n.status(fmt.Sprintf("/gen%d", gen)) == 200 }
	for _, n := range nodes {
		if !waitFor(10*time.Second, func() bool { return servesGen(n, 0) }) {
			t.Fatalf("%s does not serve generation 0", n.id)
		}
	}

	// 20 changes, each observed served by all three nodes.
	const changes = 20
	var took []time.Duration
	var lastRev int64
	for gen := 1; gen <= changes; gen++ {
		lastRev = pushFile(t, dir, url, fleetDoc(upstream, gen))
		start := time.Now()
		var wg sync.WaitGroup
		seen := make([]time.Duration, len(nodes))
		for i, n := range nodes {
			wg.Go(func() {
				// Polled every millisecond: the figure is the measurement.
				for deadline := start.Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
					if servesGen(n, gen) {
						seen[i] = time.Since(start)
						return
					}
				}
			})
		}
		wg.Wait()
		slowest := slices.Max(seen)
		if slices.Contains(seen, 0) {
			t.Fatalf("change %d (revision %d) not served by every node within 10s: %v", gen, lastRev, seen)
		}
		took = append(took, slowest)
	}
	slices.Sort(took)
	p50, worst := took[len(took)/2], took[len(took)-1]
	t.Logf("convergence over %d changes, 3 nodes (push returned → served by all): P50 %v, max %v", changes, p50.Round(time.Millisecond), worst.Round(time.Millisecond))
	// The criterion is 1 s; asserted loosely so a loaded machine passes.
	if worst > 5*time.Second {
		t.Errorf("slowest convergence %v; want well under 5s", worst)
	}
	gen := changes

	// A bad revision, written straight to etcd (as etcdctl would, past
	// push's validation): refused by every node, generation 20 serving on.
	tg, _ := fleet.ParseURL(url)
	cli, err := fleet.Dial(tg, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	bad := strings.Replace(fleetDoc(upstream, gen), "upstream: up}\n  - {name: gen", "upstream: nope}\n  - {name: gen", 1)
	put, err := cli.Put(context.Background(), tg.ConfigKey(), bad)
	if err != nil {
		t.Fatal(err)
	}
	badRev := put.Header.Revision
	for _, n := range nodes {
		var st fleet.Status
		if !waitFor(10*time.Second, func() bool { st = n.source(); return st.Refused != nil && st.Refused.Revision == badRev }) {
			t.Fatalf("%s did not refuse revision %d: %+v", n.id, badRev, st)
		}
		e := st.Refused.Errors[0]
		if e.Field != "routes[0].upstream" || e.Line != 5 || !strings.Contains(e.Error, fmt.Sprintf("etcd:%s@%d", tg.ConfigKey(), badRev)) {
			t.Errorf("%s: refusal %+v does not name the revision, field and line", n.id, e)
		}
		if st.Served.Revision != lastRev || !servesGen(n, gen) || n.status("/stable") != 200 {
			t.Errorf("%s: after the refusal serves revision %d, want %d still", n.id, st.Served.Revision, lastRev)
		}
		if got := n.metric("penstock_config_source_refused_total"); got != "1" {
			t.Errorf("%s: penstock_config_source_refused_total = %q, want 1", n.id, got)
		}
		if got := n.metric("penstock_config_source_revision"); got != fmt.Sprint(lastRev) {
			t.Errorf("%s: penstock_config_source_revision = %q, want %d", n.id, got, lastRev)
		}
	}
	code, out, errOut := runCLI("config", "nodes", url)
	if code != 0 || strings.Count(out, "(behind)") != 3 || !strings.Contains(out, "REFUSED") {
		t.Errorf("config nodes after a refusal: exit %d\n%s%s", code, out, errOut)
	}
	gen++
	lastRev = pushFile(t, dir, url, fleetDoc(upstream, gen))
	for _, n := range nodes {
		if !waitFor(10*time.Second, func() bool { return servesGen(n, gen) }) {
			t.Fatalf("%s: the fix after a refusal not served", n.id)
		}
	}

	// etcd goes away for fleetOutage: clients keep being served by nodes 1
	// and 2; node 3 is restarted meanwhile and serves from its cache.
	var sent, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var load sync.WaitGroup
	for _, n := range nodes[:2] {
		load.Go(func() {
			deadline := time.Now().Add(fleetOutage() + time.Minute) // a bound, not an expectation
			for time.Now().Before(deadline) {
				select {
				case <-stop:
					return
				default:
				}
				sent.Add(1)
				if s := n.status("/stable"); s != 200 {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%s: status %d", n.id, s))
				}
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	outageStart := time.Now()
	e.Stop()
	for _, n := range nodes {
		if !waitFor(15*time.Second, func() bool { return !n.source().Connected }) {
			t.Errorf("%s does not report etcd as unreachable", n.id)
		}
		if got := n.metric("penstock_config_source_connected"); got != "0" {
			t.Errorf("%s: penstock_config_source_connected = %q during the outage", n.id, got)
		}
	}
	nodes[2].stop(t)
	nodes[2] = startNode(t, bin, url, dir, "node-3", 1)
	st := nodes[2].source()
	if st.Served.From != "cache" || st.Served.Revision != lastRev || !servesGen(nodes[2], gen) || nodes[2].status("/stable") != 200 {
		t.Errorf("node-3 restarted during the outage: %+v; want the cached revision %d served", st.Served, lastRev)
	}
	if b, _ := os.ReadFile(nodes[2].log); !strings.Contains(string(b), "serving the CACHED configuration") {
		t.Errorf("node-3 did not say loudly that it serves its cache:\n%s", b)
	}
	if got := nodes[2].metric("penstock_config_source_from_cache"); got != "1" {
		t.Errorf("node-3: penstock_config_source_from_cache = %q", got)
	}
	time.Sleep(time.Until(outageStart.Add(fleetOutage())))
	if err := e.Restart(); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	for _, n := range nodes {
		if !waitFor(30*time.Second, func() bool { return n.source().Connected }) {
			t.Errorf("%s did not reconnect to etcd", n.id)
		}
	}
	t.Logf("every node reconnected %v after etcd answered again", time.Since(back).Round(100*time.Millisecond))
	close(stop)
	load.Wait()
	t.Logf("etcd down %v: %d requests to nodes 1 and 2, %d failed", time.Since(outageStart).Round(time.Second), sent.Load(), failed.Load())
	if failed.Load() > 0 {
		t.Errorf("%d of %d requests failed while etcd was down; first: %v", failed.Load(), sent.Load(), firstErr.Load())
	}
	if sent.Load() < 100 {
		t.Errorf("only %d requests sent during the outage", sent.Load())
	}

	// etcd is back: every node reconnects and applies the next change;
	// node 3 leaves its cache for etcd.
	gen++
	lastRev = pushFile(t, dir, url, fleetDoc(upstream, gen))
	for _, n := range nodes {
		var st fleet.Status
		if !waitFor(20*time.Second, func() bool {
			st = n.source()
			return servesGen(n, gen) && st.Connected && st.Served.From == "etcd" && st.Served.Revision == lastRev
		}) {
			t.Errorf("%s after etcd came back: %+v", n.id, st)
		}
	}
	if !waitFor(20*time.Second, func() bool {
		code, out, _ = runCLI("config", "nodes", url)
		return code == 0 && strings.Contains(out, "3 node(s), converged")
	}) {
		t.Errorf("config nodes does not show the fleet converged:\n%s", out)
	}

	// Each node's admin API lists the fleet too.
	var fl struct {
		Revision  int64        `json:"revision"`
		Nodes     []fleet.Node `json:"nodes"`
		Converged bool         `json:"converged"`
	}
	if resp, err := nodeClient.Get("http://" + nodes[1].adminAddr + "/config/source/nodes"); err != nil {
		t.Error(err)
	} else {
		json.NewDecoder(resp.Body).Decode(&fl)
		resp.Body.Close()
		if len(fl.Nodes) != 3 || !fl.Converged || fl.Revision != lastRev {
			t.Errorf("GET /config/source/nodes = %+v", fl)
		}
	}

	// Stopping a node revokes its registration at once.
	nodes[0].stop(t)
	if !waitFor(5*time.Second, func() bool {
		_, out, _ = runCLI("config", "nodes", url)
		return !strings.Contains(out, "node-1") && strings.Contains(out, "2 node(s), converged")
	}) {
		t.Errorf("node-1 still listed after it stopped:\n%s", out)
	}
}

// TestConfigPushConflict runs two penstock config push at once with the
// same -base-revision: exactly one lands, the other exits 1 with a conflict
// that names the revision it expected and the one the key is at.
func TestConfigPushConflict(t *testing.T) {
	url := etcdURL(t)
	dir := t.TempDir()
	base := pushFile(t, dir, url, fleetDoc("127.0.0.1:9", 0))
	files := make([]string, 2)
	for i := range files {
		files[i] = filepath.Join(dir, fmt.Sprintf("op%d.yaml", i))
		os.WriteFile(files[i], []byte(fleetDoc("127.0.0.1:9", i+1)), 0o600)
	}
	type result struct {
		code     int
		out, err string
	}
	results := make([]result, 2)
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() {
			code, out, errOut := runCLI("config", "push", "-c", files[i], "-base-revision", fmt.Sprint(base), url)
			results[i] = result{code, out, errOut}
		})
	}
	wg.Wait()
	var won, lost []result
	for _, r := range results {
		if r.code == 0 {
			won = append(won, r)
		} else {
			lost = append(lost, r)
		}
	}
	if len(won) != 1 || len(lost) != 1 {
		t.Fatalf("want one push to land and one to conflict, got %+v", results)
	}
	var rev int64
	fmt.Sscanf(won[0].out[strings.Index(won[0].out, "revision "):], "revision %d", &rev)
	want := fmt.Sprintf("conflict: %s/config is at revision %d, not %d", strings.TrimPrefix(url, "etcd://"+fleetEtcd.Addr), rev, base)
	if lost[0].code != 1 || !strings.Contains(lost[0].err, want) {
		t.Errorf("losing push: exit %d, stderr %q; want it to contain %q", lost[0].code, lost[0].err, want)
	}
}

// TestConfigCommands checks the fleet subcommands of penstock config, and
// their errors, against a real etcd.
func TestConfigCommands(t *testing.T) {
	url := etcdURL(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte(fleetDoc("127.0.0.1:9", 1)), 0o600)
	invalid := filepath.Join(dir, "invalid.yaml")
	os.WriteFile(invalid, []byte(strings.Replace(fleetDoc("127.0.0.1:9", 1), "upstream: up}", "upstream: nope}", 1)), 0o600)

	steps := []struct {
		name   string
		args   []string
		code   int
		stdout []string
		stderr []string
	}{
		{name: "history before any push", args: []string{"config", "history", url}, stdout: []string{"no configuration yet"}},
		{name: "nodes before any node", args: []string{"config", "nodes", url}, stdout: []string{"no node registered"}},
		{name: "invalid file is not pushed", args: []string{"config", "push", "-c", invalid, url}, code: 1,
			stderr: []string{"invalid.yaml: routes[0].upstream (line 5):", "nothing was written to etcd"}},
		{name: "push", args: []string{"config", "push", "-c", good, url}, stdout: []string{"good.yaml: pushed to", "(replacing 0)"}},
		{name: "push the same again", args: []string{"config", "push", "-c", good, url}, stdout: []string{"unchanged"}},
		{name: "push expecting an empty key", args: []string{"config", "push", "-c", invalid, "-base-revision", "0", url}, code: 1, stderr: []string{"routes[0].upstream"}},
		{name: "flags after the URL", args: []string{"config", "history", url, "-n", "1"}, stdout: []string{"(current)", "good.yaml"}},
		{name: "rollback to nowhere", args: []string{"config", "rollback", "-to", "1", url}, code: 1, stderr: []string{"did not exist at revision 1"}},
		{name: "rollback without -to", args: []string{"config", "rollback", url}, code: 2, stderr: []string{"-to REV is required"}},
		{name: "push without -c", args: []string{"config", "push", url}, code: 2, stderr: []string{"-c FILE is required"}},
		{name: "no URL", args: []string{"config", "history"}, code: 2, stderr: []string{"the etcd URL is required"}},
		{name: "bad URL", args: []string{"config", "nodes", "etcd://127.0.0.1:2379"}, code: 1, stderr: []string{"no key prefix"}},
		{name: "two URLs", args: []string{"config", "nodes", url, url}, code: 2, stderr: []string{"unexpected argument"}},
		{name: "unreachable etcd", args: []string{"config", "history", "-timeout", "1s", "etcd://127.0.0.1:1/p"}, code: 1, stderr: []string{"did not answer in time"}},
		{name: "config demo still works", args: []string{"config", "demo"}, stdout: []string{"listeners:"}},
		{name: "serve with both -c and a source", args: []string{"serve", "-c", good, "--config-source", url}, code: 2, stderr: []string{"exclusive"}},
		{name: "serve with a bad source", args: []string{"serve", "--config-source", "etcd://h:99999/p"}, code: 1, stderr: []string{`port "99999"`}},
		{name: "push --help", args: []string{"config", "push", "--help"}, stderr: []string{"Usage: penstock config push", "-base-revision"}},
		{name: "negative base revision", args: []string{"config", "push", "-c", good, "-base-revision", "-3", url}, code: 2, stderr: []string{"want a revision"}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			code, out, errOut := runCLI(s.args...)
			if code != s.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, s.code, out, errOut)
			}
			for _, w := range s.stdout {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			for _, w := range s.stderr {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
		})
	}

	// Two more revisions, then a rollback to the first: validated, pushed
	// as a new revision, recorded as a rollback in the history.
	first := pushFile(t, dir, url, fleetDoc("127.0.0.1:9", 1)) // unchanged: the same revision
	pushFile(t, dir, url, fleetDoc("127.0.0.1:9", 2))
	code, out, errOut := runCLI("config", "show", "-rev", fmt.Sprint(first), url)
	if code != 0 || out != fleetDoc("127.0.0.1:9", 1) || !strings.Contains(errOut, fmt.Sprintf("at revision %d", first)) {
		t.Errorf("config show -rev %d: exit %d\n%s%s", first, code, out, errOut)
	}
	code, out, errOut = runCLI("config", "rollback", "-to", fmt.Sprint(first), url)
	if code != 0 || !strings.Contains(out, fmt.Sprintf("back to the configuration of revision %d", first)) {
		t.Fatalf("rollback: exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ = runCLI("config", "history", url)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 4 || !strings.Contains(lines[1], fmt.Sprintf("rollback to %d", first)) || !strings.Contains(lines[1], "(current)") {
		t.Errorf("history after the rollback:\n%s", out)
	}
	if !strings.Contains(lines[1], fleet.Digest([]byte(fleetDoc("127.0.0.1:9", 1)))) {
		t.Errorf("the rollback's digest is not the first revision's:\n%s", out)
	}
	if code, out, _ = runCLI("config", "show", url); code != 0 || out != fleetDoc("127.0.0.1:9", 1) {
		t.Errorf("config show after the rollback: exit %d\n%s", code, out)
	}
}
