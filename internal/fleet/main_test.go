package fleet_test

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/penstock-dev/penstock/internal/fleet"
	"github.com/penstock-dev/penstock/internal/fleet/etcdtest"
)

// testEtcd is the package's one etcd (scripts/test installs etcd-server),
// started by TestMain on free loopback ports; nil when etcd is not
// installed, and the tests that need it skip.
var testEtcd *etcdtest.Etcd

func TestMain(m *testing.M) {
	if etcdtest.Installed() {
		var err error
		if testEtcd, err = etcdtest.Start(""); err != nil {
			fmt.Fprintln(os.Stderr, "etcd:", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	if testEtcd != nil {
		testEtcd.Close()
	}
	os.Exit(code)
}

var prefixes atomic.Int64

// newTarget returns a prefix of the test etcd no other test uses, and a
// client for it.
func newTarget(t testing.TB) (fleet.Target, *clientv3.Client) {
	t.Helper()
	if testEtcd == nil {
		t.Skip("etcd is not installed (scripts/test installs etcd-server)")
	}
	tg, err := fleet.ParseURL(testEtcd.URL(fmt.Sprintf("/test%d", prefixes.Add(1))))
	if err != nil {
		t.Fatal(err)
	}
	cli, err := fleet.Dial(tg, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return tg, cli
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls cond every 10ms until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cond()
}
