// Package browsertest runs pages in a real browser for tests: it finds (or
// installs) headless Chromium, starts it under the DevTools protocol, and
// builds a page's script from npm packages with esbuild. Only tests import
// it: it is a package, not a _test.go file, so that the tests of several
// packages share it.
package browsertest

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Chromium finds a Chromium binary. When there is none it installs Debian's
// package if it can (root with apt-get, as scripts/test does); it skips the
// test only when that is impossible.
func Chromium(t testing.TB) string {
	t.Helper()
	return tool(t, "chromium", "chromium", "chromium-browser", "google-chrome")
}

// tool finds the first of names on PATH, installing the Debian package pkg
// when none is there and the test runs as root with apt-get; it skips the
// test when the tool can be neither found nor installed.
func tool(t testing.TB, pkg string, names ...string) string {
	t.Helper()
	find := func() string {
		for _, name := range names {
			if p, err := exec.LookPath(name); err == nil {
				return p
			}
		}
		return ""
	}
	if p := find(); p != "" {
		return p
	}
	apt, err := exec.LookPath("apt-get")
	if err != nil || os.Getuid() != 0 {
		t.Skipf("%s is not installed and cannot be installed here (needs root and apt-get; scripts/test installs it)", names[0])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	t.Logf("installing %s with apt-get", pkg)
	for _, args := range [][]string{{"update", "-qq"}, {"install", "-y", "-qq", pkg}} {
		// Another apt (a parallel test package) may hold the lock: wait.
		cmd := exec.CommandContext(ctx, apt, append([]string{"-o", "DPkg::Lock::Timeout=300"}, args...)...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Skipf("%s is not installed and apt-get %s failed: %v\n%s", names[0], args[0], err, out)
		}
	}
	if p := find(); p != "" {
		return p
	}
	t.Skipf("%s is not installed and installing %s gave no binary", names[0], pkg)
	return ""
}

// Browser starts headless Chromium (bin, from Chromium) driven over the
// DevTools protocol and returns the context of its first tab, for
// chromedp.Run. The browser is stopped when the test ends. Everything that
// would reach past loopback on its own (background networking, component
// updates, sync, QUIC) is off; extra options are appended.
func Browser(t testing.TB, bin string, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	opts := append([]chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
	}, extra...)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
	})
	// The first Run starts the browser: fail here, with the reason, rather
	// than in the test's first step.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}
