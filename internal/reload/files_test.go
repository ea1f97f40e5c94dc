package reload

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

func TestWatchFiles(t *testing.T) {
	tests := []struct {
		name   string
		change func(t *testing.T, a, b string)
		want   int32
	}{
		{"file in the first directory written", func(t *testing.T, a, b string) {
			os.WriteFile(a, []byte("a2"), 0o600)
		}, 1},
		{"file in the second directory renamed over", func(t *testing.T, a, b string) {
			tmp := b + ".tmp"
			os.WriteFile(tmp, []byte("b2"), 0o600)
			os.Rename(tmp, b)
		}, 1},
		{"both files in a burst: one call", func(t *testing.T, a, b string) {
			os.WriteFile(a, []byte("a2"), 0o600)
			time.Sleep(5 * time.Millisecond)
			os.WriteFile(b, []byte("b2"), 0o600)
		}, 1},
		{"same content: no call", func(t *testing.T, a, b string) {
			os.WriteFile(a, []byte("a1"), 0o600)
		}, 0},
		{"unrelated file: no call", func(t *testing.T, a, b string) {
			os.WriteFile(filepath.Join(filepath.Dir(a), "other"), []byte("x"), 0o600)
		}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := filepath.Join(t.TempDir(), "a.pem")
			b := filepath.Join(t.TempDir(), "b.pem")
			os.WriteFile(a, []byte("a1"), 0o600)
			os.WriteFile(b, []byte("b1"), 0o600)
			var n atomic.Int32
			w, err := WatchFiles([]string{a, b}, 50*time.Millisecond, 0, slog.New(slog.NewTextHandler(io.Discard, nil)), func() { n.Add(1) })
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			tt.change(t, a, b)
			settle()
			if got := n.Load(); got != tt.want {
				t.Errorf("%d calls, want %d", got, tt.want)
			}
		})
	}
}

// TestWatchFilesSecretVolume follows a Kubernetes Secret volume update: the
// file is a symlink through "..data", which is swapped for a new directory.
func TestWatchFilesSecretVolume(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "..v1"), 0o700)
	os.WriteFile(filepath.Join(dir, "..v1", "tls.crt"), []byte("v1"), 0o600)
	os.Symlink("..v1", filepath.Join(dir, "..data"))
	os.Symlink("..data/tls.crt", filepath.Join(dir, "tls.crt"))
	var n atomic.Int32
	w, err := WatchFiles([]string{filepath.Join(dir, "tls.crt")}, 50*time.Millisecond, 0, slog.New(slog.NewTextHandler(io.Discard, nil)), func() { n.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	os.Mkdir(filepath.Join(dir, "..v2"), 0o700)
	os.WriteFile(filepath.Join(dir, "..v2", "tls.crt"), []byte("v2"), 0o600)
	os.Symlink("..v2", filepath.Join(dir, "..data_tmp"))
	os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data"))
	os.RemoveAll(filepath.Join(dir, "..v1"))
	settle()
	if got := n.Load(); got != 1 {
		t.Errorf("%d calls after the ..data swap, want 1", got)
	}
}

// TestWatchFilesPolls checks the periodic re-read: with debounce longer than
// the test, only polling can notice the change.
func TestWatchFilesPolls(t *testing.T) {
	a := filepath.Join(t.TempDir(), "a.pem")
	os.WriteFile(a, []byte("a1"), 0o600)
	var n atomic.Int32
	w, err := WatchFiles([]string{a}, time.Hour, 20*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)), func() { n.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	os.WriteFile(a, []byte("a2"), 0o600)
	settle()
	if got := n.Load(); got != 1 {
		t.Errorf("%d calls, want 1", got)
	}
}

// TestWatchFilesCloseWaits checks that Close returns only after a call in
// progress has returned, and that nothing is called after it.
func TestWatchFilesCloseWaits(t *testing.T) {
	a := filepath.Join(t.TempDir(), "a.pem")
	os.WriteFile(a, []byte("a1"), 0o600)
	var running, after atomic.Bool
	started := make(chan struct{})
	w, err := WatchFiles([]string{a}, 10*time.Millisecond, 0, slog.New(slog.NewTextHandler(io.Discard, nil)), func() {
		running.Store(true)
		close(started)
		time.Sleep(100 * time.Millisecond)
		running.Store(false)
		after.Store(true)
	})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(a, []byte("a2"), 0o600)
	<-started
	w.Close()
	if running.Load() {
		t.Error("Close returned while the call was running")
	}
	w.Close()
}

// TestWatchFilesFallsBackToPolling: a directory that cannot be watched (here:
// it does not exist yet) is an error without polling, and with polling the
// files are still followed.
func TestWatchFilesFallsBackToPolling(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "later")
	path := filepath.Join(dir, "a.pem")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if w, err := WatchFiles([]string{path}, 10*time.Millisecond, 0, log, func() {}); err == nil {
		w.Close()
		t.Fatal("watching a missing directory without polling: no error")
	}
	var n atomic.Int32
	w, err := WatchFiles([]string{path}, 10*time.Millisecond, 20*time.Millisecond, log, func() { n.Add(1) })
	if err != nil {
		t.Fatalf("with polling: %v", err)
	}
	defer w.Close()
	os.Mkdir(dir, 0o700)
	os.WriteFile(path, []byte("a1"), 0o600)
	settle()
	if got := n.Load(); got != 1 {
		t.Errorf("%d calls, want 1", got)
	}
}
