package reload

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// watchCount watches path and counts reloads.
func watchCount(t *testing.T, path string) *atomic.Int32 {
	t.Helper()
	return watchCountDebounced(t, path, 50*time.Millisecond)
}

// watchCountDebounced is watchCount with a debounce of d.
func watchCountDebounced(t *testing.T, path string, d time.Duration) *atomic.Int32 {
	t.Helper()
	var n atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := Watch(ctx, path, d, slog.New(slog.NewTextHandler(io.Discard, nil)), func() { n.Add(1) }); err != nil {
		t.Fatal(err)
	}
	return &n
}

// settle waits long enough for a debounced reload to have happened.
func settle() { time.Sleep(300 * time.Millisecond) }

func TestWatch(t *testing.T) {
	tests := []struct {
		name   string
		change func(t *testing.T, dir, path string)
		want   int32
	}{
		{"write in place", func(t *testing.T, dir, path string) {
			os.WriteFile(path, []byte("v: 2\n"), 0o644)
		}, 1},
		{"editor save by rename", func(t *testing.T, dir, path string) {
			tmp := filepath.Join(dir, ".penstock.yaml.swp")
			os.WriteFile(tmp, []byte("v: 2\n"), 0o644)
			os.Rename(tmp, path)
		}, 1},
		{"burst of writes is one reload", func(t *testing.T, dir, path string) {
			for i := range 5 {
				os.WriteFile(path, []byte("v: "+string(rune('2'+i))+"\n"), 0o644)
				time.Sleep(5 * time.Millisecond)
			}
		}, 1},
		{"same content is no reload", func(t *testing.T, dir, path string) {
			os.WriteFile(path, []byte("v: 1\n"), 0o644)
		}, 0},
		{"unrelated file is no reload", func(t *testing.T, dir, path string) {
			os.WriteFile(filepath.Join(dir, "other.yaml"), []byte("x"), 0o644)
		}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "penstock.yaml")
			os.WriteFile(path, []byte("v: 1\n"), 0o644)
			// A debounce far above the 5 ms between the burst's writes, so
			// that a loaded machine descheduling the writer does not
			// split the burst in two.
			n := watchCountDebounced(t, path, 300*time.Millisecond)
			tc.change(t, dir, path)
			time.Sleep(300 * time.Millisecond)
			settle()
			if got := n.Load(); got != tc.want {
				t.Errorf("%d reloads, want %d", got, tc.want)
			}
		})
	}
}

// TestWatchKubernetesConfigMapSwap reproduces how a ConfigMap volume
// updates: the file is a symlink into "..data", itself a symlink to a
// timestamped directory that is swapped by rename.
func TestWatchKubernetesConfigMapSwap(t *testing.T) {
	dir := t.TempDir()
	mk := func(name, content string) {
		os.Mkdir(filepath.Join(dir, name), 0o755)
		os.WriteFile(filepath.Join(dir, name, "penstock.yaml"), []byte(content), 0o644)
	}
	mk("..2026_11_21_01", "v: 1\n")
	os.Symlink("..2026_11_21_01", filepath.Join(dir, "..data"))
	os.Symlink("..data/penstock.yaml", filepath.Join(dir, "penstock.yaml"))
	n := watchCount(t, filepath.Join(dir, "penstock.yaml"))

	mk("..2026_11_21_02", "v: 2\n")
	os.Symlink("..2026_11_21_02", filepath.Join(dir, "..data_tmp"))
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	settle()
	if got := n.Load(); got != 1 {
		t.Errorf("%d reloads after a ConfigMap swap, want 1", got)
	}
}
