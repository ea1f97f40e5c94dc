// Package reload decides when a running penstock reloads its configuration:
// when the file changes on disk (debounced) and on SIGHUP. Applying a reload
// is the gateway's job; this package only triggers it.
package reload

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Watch calls apply when the file at path changes, until ctx is done.
//
// It watches the file's directory rather than the file: editors that save
// by writing a temporary file and renaming it, and Kubernetes ConfigMap
// volumes (which swap a "..data" symlink), replace the file's inode, and a
// watch on the old inode would go quiet. Events are debounced (a burst of
// writes causes one reload, debounce after the last event), and a reload
// happens only if the file's content differs from the last one seen, so
// touching or re-saving an unchanged file does nothing.
func Watch(ctx context.Context, path string, debounce time.Duration, log *slog.Logger, apply func()) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	if err := w.Add(dir); err != nil {
		w.Close()
		return fmt.Errorf("watch %s: %w", dir, err)
	}
	last := digest(path)
	go func() {
		defer w.Close()
		var timer *time.Timer
		fire := make(chan struct{}, 1)
		for {
			select {
			case <-ctx.Done():
				if timer != nil {
					timer.Stop()
				}
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if !relevant(ev, path) {
					continue
				}
				if timer == nil {
					timer = time.AfterFunc(debounce, func() {
						select {
						case fire <- struct{}{}:
						default:
						}
					})
				} else {
					timer.Reset(debounce)
				}
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				log.Warn("config watch error", "error", err)
			case <-fire:
				d := digest(path)
				if d == nil || bytes.Equal(d, last) {
					// Missing mid-rename, or content unchanged.
					continue
				}
				last = d
				apply()
			}
		}
	}()
	return nil
}

// relevant reports whether an event in the watched directory can change
// the file at path: the file itself, or a symlink layer such as
// Kubernetes' "..data".
func relevant(ev fsnotify.Event, path string) bool {
	if ev.Has(fsnotify.Chmod) && !ev.Has(fsnotify.Write) {
		return false
	}
	name := filepath.Base(ev.Name)
	return filepath.Clean(ev.Name) == filepath.Clean(path) || name == "..data"
}

func digest(path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	sum := sha256.Sum256(b)
	return sum[:]
}
