package browsertest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Bundle builds a page's script for the browser: the npm packages that
// dir's package.json and package-lock.json pin are installed with `npm ci`,
// and esbuild (one of those packages) bundles dir/entry and its imports
// into one script, which Bundle returns.
//
// The installed packages are kept in a cache directory keyed by the two
// files' hash ($PENSTOCK_NPM_CACHE, by default penstock/npm under the
// user's cache directory), so only the first run of a given lock file
// needs the registry; later runs work offline. npm itself is installed
// like Chromium when it is missing (see Chromium).
func Bundle(t testing.TB, dir, entry string) []byte {
	t.Helper()
	modules := installed(t, dir)
	out := filepath.Join(t.TempDir(), "bundle.js")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	src, err := filepath.Abs(filepath.Join(dir, entry))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, node(t), filepath.Join(modules, "esbuild", "bin", "esbuild"),
		src, "--bundle", "--format=iife", "--target=chrome100", "--log-level=warning", "--outfile="+out)
	// The page's imports resolve to the cached packages, not to a
	// node_modules beside the sources.
	cmd.Env = append(os.Environ(), "NODE_PATH="+modules)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("esbuild %s: %v\n%s", entry, err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// installed returns the node_modules directory holding dir's locked
// packages, running `npm ci` into the cache when they are not there yet.
func installed(t testing.TB, dir string) string {
	t.Helper()
	h := sha256.New()
	for _, name := range []string{"package.json", "package-lock.json"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("bundle: %v (a page's packages are pinned by package.json and package-lock.json)", err)
		}
		h.Write(b)
		h.Write([]byte{0})
	}
	cache := os.Getenv("PENSTOCK_NPM_CACHE")
	if cache == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			base = os.TempDir()
		}
		cache = filepath.Join(base, "penstock", "npm")
	}
	final := filepath.Join(cache, hex.EncodeToString(h.Sum(nil))[:16])
	modules := filepath.Join(final, "node_modules")
	if _, err := os.Stat(modules); err == nil {
		return modules
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	// Install beside the cache entry and rename it into place: the rename
	// is atomic, so an entry that exists is complete, and two test
	// processes installing at once both end with a whole one.
	work, err := os.MkdirTemp(cache, ".install-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(work)
	for _, name := range []string{"package.json", "package-lock.json"} {
		b, _ := os.ReadFile(filepath.Join(dir, name))
		if err := os.WriteFile(filepath.Join(work, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	npm := tool(t, "npm", "npm")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	// --ignore-scripts: no package here needs its install script (esbuild's
	// only checks its binary, which comes as a package of its own), and
	// npm versions differ in which scripts they run.
	cmd := exec.CommandContext(ctx, npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--prefer-offline",
		"--cache", filepath.Join(cache, ".npm"))
	cmd.Dir = work
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", dir, err, out.Bytes())
	}
	t.Logf("npm ci: %s", time.Since(start).Round(time.Millisecond))
	if err := os.Rename(work, final); err != nil {
		if _, serr := os.Stat(modules); serr != nil {
			t.Fatalf("bundle: keep the installed packages: %v", err)
		}
		// Another process put the same packages in place first.
	}
	if _, err := os.Stat(modules); errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("npm ci in %s installed nothing", dir)
	}
	return modules
}

// node finds Node.js, which comes with npm.
func node(t testing.TB) string {
	t.Helper()
	return tool(t, "nodejs", "node", "nodejs")
}
