package config

import "reflect"

// Static is the part of a configuration that a running penstock reads once,
// when it starts. Changing it needs a restart, or a binary upgrade (a new
// process on the same sockets, docs/operations.md). A reload that changes
// any of it is refused, so a running process never silently differs from
// its file; everything else in a Config is dynamic: a reload applies it,
// listeners, tracing and the access log output included.
type Static struct {
	// Admin is the admin listener: bound and given its token at start.
	Admin *Admin
	// Logging is penstock's own log, built at start.
	Logging Logging
	// Metrics shape the metric families, registered once: other buckets or
	// labels would need new families and reset every counter.
	Metrics Metrics
	// ReloadWatch and ReloadDebounce set up the configuration file's watch
	// (reload.watch, reload.debounce), started at start.
	ReloadWatch    bool
	ReloadDebounce Duration
}

// Static returns the restart-only part of c.
func (c *Config) Static() Static {
	return Static{
		Admin:          c.Admin,
		Logging:        c.Logging,
		Metrics:        c.Metrics,
		ReloadWatch:    c.Reload.WatchEnabled(),
		ReloadDebounce: c.Reload.Debounce,
	}
}

// Check reports each field of next whose value differs from s, the
// configuration the process started with, as an error at that field.
func (s Static) Check(next *Config) error {
	n := next.Static()
	col := NewCollector(next)
	for _, f := range []struct {
		path      string
		was, want any
	}{
		{"admin", s.Admin, n.Admin},
		{"logging", s.Logging, n.Logging},
		{"metrics", s.Metrics, n.Metrics},
		{"reload.watch", s.ReloadWatch, n.ReloadWatch},
		{"reload.debounce", s.ReloadDebounce, n.ReloadDebounce},
	} {
		if !reflect.DeepEqual(f.was, f.want) {
			col.Addf(f.path, "changed, but takes effect only on a restart or a binary upgrade; reload refused, the running configuration is unchanged")
		}
	}
	return col.Err()
}
