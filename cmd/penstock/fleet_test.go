package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

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

// fleetDoc is a configuration whose second route is /genN.
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
		{name: "push", args: []string{"config", "push", "-c", good, "-m", "first routes", url}, stdout: []string{"good.yaml: pushed to", "(replacing 0)"}},
		{name: "push the same again", args: []string{"config", "push", "-c", good, url}, stdout: []string{"unchanged"}},
		{name: "push expecting an empty key", args: []string{"config", "push", "-c", invalid, "-base-revision", "0", url}, code: 1, stderr: []string{"routes[0].upstream"}},
		{name: "flags after the URL", args: []string{"config", "history", url, "-n", "1"}, stdout: []string{"(current)", "good.yaml", "first routes"}},
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
