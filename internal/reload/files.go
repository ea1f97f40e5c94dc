package reload

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Files watches a set of files (certificates, keys, key files) and calls a
// function when any of them changes. Unlike Watch, its lifetime is not a
// context: Close stops it and returns once its goroutine has ended, so the
// owner (a listener) can be replaced without leaving a watcher behind.
type Files struct {
	quit chan struct{}
	done chan struct{}
}

// WatchFiles calls apply when the content of any file in paths changes,
// until Close.
//
// Like Watch it watches the files' directories, not the files, so editor
// renames and Kubernetes Secret volumes (a "..data" symlink swapped
// atomically) are seen. Events are debounced: apply runs once, debounce
// after the last event of a burst, and only if the files' combined content
// differs from the last content seen (a file missing mid-rename counts as
// no change yet). When poll is positive the files are also re-read every
// poll interval, for file systems that send no events (some network and
// FUSE mounts). apply runs on the watcher's goroutine, one call at a time.
//
// If the directories cannot be watched (inotify limits reached, say) and
// poll is positive, WatchFiles logs a warning and only polls; without
// polling that is an error.
func WatchFiles(paths []string, debounce, poll time.Duration, log *slog.Logger, apply func()) (*Files, error) {
	clean := make([]string, len(paths))
	var dirs []string
	for i, p := range paths {
		clean[i] = filepath.Clean(p)
		if d := filepath.Dir(clean[i]); !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	w, err := watchDirs(dirs)
	if err != nil {
		if poll <= 0 {
			return nil, err
		}
		log.Warn("file changes are not watched; re-reading the files periodically instead", "error", err, "every", poll.String())
	}
	f := &Files{quit: make(chan struct{}), done: make(chan struct{})}
	// The content to compare with is read now, with the watch in place, so
	// a change made after WatchFiles returns is never taken for the start.
	go f.loop(w, clean, digestAll(clean), debounce, poll, log, apply)
	return f, nil
}

// Close stops the watcher and waits until its goroutine, and any apply
// call in progress, has returned. It is safe to call more than once.
func (f *Files) Close() {
	select {
	case <-f.quit:
	default:
		close(f.quit)
	}
	<-f.done
}

// watchDirs watches every directory in dirs.
func watchDirs(dirs []string) (*fsnotify.Watcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch files: %w", err)
	}
	for _, d := range dirs {
		if err := w.Add(d); err != nil {
			w.Close()
			return nil, fmt.Errorf("watch %s: %w", d, err)
		}
	}
	return w, nil
}

// loop runs until Close. w is nil when only polling: its channels are then
// nil, and never ready.
func (f *Files) loop(w *fsnotify.Watcher, paths []string, last []byte, debounce, poll time.Duration, log *slog.Logger, apply func()) {
	defer close(f.done)
	var events <-chan fsnotify.Event
	var errs <-chan error
	if w != nil {
		defer w.Close()
		events, errs = w.Events, w.Errors
	}
	// The debounce timer is a stopped time.Timer whose channel this loop
	// reads, so nothing outlives Close.
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var tick <-chan time.Time
	if poll > 0 {
		t := time.NewTicker(poll)
		defer t.Stop()
		tick = t.C
	}
	check := func() {
		d := digestAll(paths)
		if d == nil || bytes.Equal(d, last) {
			return
		}
		last = d
		apply()
	}
	for {
		select {
		case <-f.quit:
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			if relevantAny(ev, paths) {
				timer.Reset(debounce)
			}
		case err, ok := <-errs:
			if !ok {
				return
			}
			log.Warn("file watch error", "error", err)
		case <-timer.C:
			check()
		case <-tick:
			check()
		}
	}
}

// relevantAny is relevant for any of paths.
func relevantAny(ev fsnotify.Event, paths []string) bool {
	for _, p := range paths {
		if relevant(ev, p) {
			return true
		}
	}
	return false
}

// digestAll is a digest of every file's content, or nil when one of them
// cannot be read (typically mid-rename).
func digestAll(paths []string) []byte {
	h := sha256.New()
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		fmt.Fprintf(h, "%d:%s:%d:", len(p), p, len(b))
		h.Write(b)
	}
	return h.Sum(nil)
}
