package fleet

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// The cache is the last configuration a node applied from etcd, written
// after every good apply: one header comment, then the document exactly as
// etcd held it (so its errors cite the same lines). It is a valid penstock
// configuration file too: `penstock serve -c CACHE` serves it without etcd.
const cacheHeader = "# penstock configuration cache"

var cacheHeaderRE = regexp.MustCompile(`^# penstock configuration cache: (\S+) revision ([0-9]+), written (\S+)$`)

// Cached is a configuration read back from the cache file.
type Cached struct {
	Data     []byte
	Key      string
	Revision int64
	Written  time.Time
}

// DefaultCacheFile is where a node keeps its cache when --config-cache is
// not given: under the user's cache directory ($XDG_CACHE_HOME or
// ~/.cache), one file per cluster and prefix.
func DefaultCacheFile(t Target) (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory for the configuration cache (%v): give one with --config-cache FILE", err)
	}
	name := strings.NewReplacer("/", "_", ":", "_", ",", "+", "[", "", "]", "").Replace(strings.Join(t.Endpoints, ",") + t.Prefix)
	return filepath.Join(dir, "penstock", "etcd-"+name+".yaml"), nil
}

// writeCache replaces path with data, atomically: a node that crashes while
// writing leaves the previous cache, never half of one.
func writeCache(path, key string, rev int64, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".penstock-cache-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the rename, a no-op
	fmt.Fprintf(tmp, "%s: %s revision %d, written %s\n", cacheHeader, key, rev, time.Now().UTC().Format(time.RFC3339))
	tmp.Write(data)
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	// The configuration may hold secrets: the cache is the user's alone.
	if err := os.Chmod(tmp.Name(), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// readCache reads the cache at path.
func readCache(path string) (*Cached, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	header, data, ok := bytes.Cut(b, []byte("\n"))
	m := cacheHeaderRE.FindSubmatch(header)
	if !ok || m == nil {
		return nil, errors.New("not a penstock configuration cache (its first line is not the cache header)")
	}
	rev, err := strconv.ParseInt(string(m[2]), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("cache header: bad revision %q", m[2])
	}
	written, _ := time.Parse(time.RFC3339, string(m[3]))
	return &Cached{Data: data, Key: string(m[1]), Revision: rev, Written: written}, nil
}
