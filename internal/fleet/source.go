package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/penstock-dev/penstock/internal/config"
)

// Options configure a Source.
type Options struct {
	// Target is the cluster and prefix. Required.
	Target Target
	// CacheFile is where the last good configuration is kept; "" keeps
	// none (a node then cannot start while etcd is unreachable).
	CacheFile string
	// NodeID names this node under PREFIX/nodes/. Default: the host name.
	NodeID string
	// LeaseTTL is how long the node's registration outlives the node (or
	// its link to etcd). Default 10s; at least 2s.
	LeaseTTL time.Duration
	// DialTimeout bounds each request to etcd. Default 2s.
	DialTimeout time.Duration
	// CheckInterval is how often the link to etcd is checked and the key's
	// revision compared with the one served, beside the watch (which
	// brings changes at once). Default 2s.
	CheckInterval time.Duration
	// Version is penstock's version, recorded in the node's registration.
	Version string
}

// Source is a configuration kept in etcd, for one node: it loads the first
// configuration, then follows the key and registers the node until its
// context ends. It never touches the request path: it hands documents to
// an apply function, the same one a file reload uses.
type Source struct {
	o    Options
	cli  *clientv3.Client
	host string

	// applyMu serialises what is applied: the watch and Resync.
	applyMu sync.Mutex

	mu sync.Mutex
	// apply, log and m are set by Run (before it, nothing is applied, the
	// log is discarded and the metrics are not registered).
	apply func(data []byte, name string) error
	log   *slog.Logger
	m     *sourceMetrics
	st    status
	// refusedErr is the last refusal's error, returned again by Resync.
	refusedErr error
	// pending is the document Load chose from etcd, cached once Run starts.
	pending []byte
	// loadNote says why Load fell back to the cache, for Run to log.
	loadNote string

	// changed wakes the registration when the served revision changes.
	changed chan struct{}
	// warnedTwin is set once another process with this node id was
	// reported (the registration goroutine's own).
	warnedTwin bool
	started    time.Time
}

// New returns a Source for o. It does not connect yet.
func New(o Options) (*Source, error) {
	if o.LeaseTTL == 0 {
		o.LeaseTTL = 10 * time.Second
	}
	if o.LeaseTTL < 2*time.Second {
		return nil, fmt.Errorf("lease TTL %s: must be at least 2s (etcd's granularity is a second)", o.LeaseTTL)
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.CheckInterval <= 0 {
		o.CheckInterval = 2 * time.Second
	}
	host, _ := os.Hostname()
	if o.NodeID == "" {
		o.NodeID = host
	}
	if err := CheckNodeID(o.NodeID); err != nil {
		return nil, err
	}
	cli, err := Dial(o.Target, o.DialTimeout)
	if err != nil {
		return nil, fmt.Errorf("etcd %s: %w", o.Target, err)
	}
	s := &Source{o: o, cli: cli, host: host, changed: make(chan struct{}, 1), started: time.Now(),
		log: slog.New(slog.DiscardHandler), m: newSourceMetrics(nil)}
	s.st.Source = o.Target.String()
	s.st.Key = o.Target.ConfigKey()
	s.st.Node = o.NodeID
	s.st.Cache.Path = o.CacheFile
	return s, nil
}

// CheckNodeID refuses node ids that would not make one key segment.
func CheckNodeID(id string) error {
	if id == "" || len(id) > 128 {
		return fmt.Errorf("node id %q: must be 1 to 128 characters", id)
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' || r == ':') {
			return fmt.Errorf("node id %q: only letters, digits, '-', '_', '.' and ':' are allowed", id)
		}
	}
	return nil
}

// Close releases the connection to etcd. Call it once Run has returned (or
// when Run was never called).
func (s *Source) Close() error { return s.cli.Close() }

// Client is the Source's etcd client (for the node list on the admin API).
func (s *Source) Client() *clientv3.Client { return s.cli }

// revName is the name a revision's errors cite in place of a file name:
// "etcd:/penstock/config@42: routes[1].match (line 5): ...".
func (s *Source) revName(rev int64) string {
	return fmt.Sprintf("etcd:%s@%d", s.o.Target.ConfigKey(), rev)
}

// Load returns the configuration to start with and the name its errors
// cite. It reads the key (within the dial timeout) and checks it with
// check; if etcd cannot be reached, the key is missing or its document is
// refused, it falls back to the cache when the cache passes check. Run
// logs which was chosen.
func (s *Source) Load(ctx context.Context, check func(data []byte, name string) error) ([]byte, string, error) {
	key := s.o.Target.ConfigKey()
	rctx, cancel := context.WithTimeout(ctx, s.o.DialTimeout)
	resp, err := s.cli.Get(rctx, key)
	cancel()
	var etcdErr, refusal error
	switch {
	case err != nil:
		etcdErr = err
		s.setConnected(false, err)
		s.loadNote = fmt.Sprintf("etcd %s is unreachable (%v)", s.o.Target, err)
	case len(resp.Kvs) == 0:
		s.setConnected(true, nil)
		s.mu.Lock()
		s.st.Missing = true
		s.mu.Unlock()
		s.loadNote = fmt.Sprintf("%s does not exist in etcd", key)
	default:
		s.setConnected(true, nil)
		kv := resp.Kvs[0]
		name := s.revName(kv.ModRevision)
		s.mu.Lock()
		s.st.Latest = kv.ModRevision
		s.mu.Unlock()
		if refusal = check(kv.Value, name); refusal == nil {
			s.served(kv.ModRevision, "etcd", kv.Value)
			s.pending = kv.Value
			return kv.Value, name, nil
		}
		s.refuse(kv.ModRevision, refusal)
		s.loadNote = fmt.Sprintf("revision %d of %s is refused", kv.ModRevision, key)
	}
	cached, cacheErr := s.loadCache(check)
	if cacheErr == nil {
		s.served(cached.Revision, "cache", cached.Data)
		return cached.Data, s.cacheName(cached.Revision), nil
	}
	switch {
	case refusal != nil:
		// The document's own errors say what to fix.
		return nil, "", refusal
	case etcdErr != nil:
		return nil, "", fmt.Errorf("etcd %s is unreachable (%v) and there is no cached configuration to start from: %v", s.o.Target, etcdErr, cacheErr)
	default:
		return nil, "", fmt.Errorf("%s does not exist in etcd and there is no cached configuration to start from (%v): push one first: penstock config push -c FILE %s", key, cacheErr, s.o.Target)
	}
}

func (s *Source) cacheName(rev int64) string {
	return fmt.Sprintf("cache %s (etcd:%s@%d)", s.o.CacheFile, s.o.Target.ConfigKey(), rev)
}

// loadCache reads the cache and checks it.
func (s *Source) loadCache(check func([]byte, string) error) (*Cached, error) {
	if s.o.CacheFile == "" {
		return nil, errors.New("no cache file configured")
	}
	c, err := readCache(s.o.CacheFile)
	if err != nil {
		return nil, fmt.Errorf("cache %s: %w", s.o.CacheFile, err)
	}
	if c.Key != s.o.Target.ConfigKey() {
		return nil, fmt.Errorf("cache %s holds %s, not %s", s.o.CacheFile, c.Key, s.o.Target.ConfigKey())
	}
	if err := check(c.Data, s.cacheName(c.Revision)); err != nil {
		return nil, fmt.Errorf("cache %s is refused too: %w", s.o.CacheFile, err)
	}
	return c, nil
}

// Run follows the key and keeps the node registered until ctx ends; then it
// revokes the registration and returns. apply is called with each new
// revision's document, from Run's goroutine, never concurrently; its error
// is a refusal. Metrics go to reg (nil: none).
func (s *Source) Run(ctx context.Context, apply func(data []byte, name string) error, log *slog.Logger, reg prometheus.Registerer) {
	s.applyMu.Lock()
	m := newSourceMetrics(reg)
	s.mu.Lock()
	s.apply, s.log, s.m = apply, log, m
	s.mu.Unlock()
	st := s.Status()
	m.observe(st)
	// Refusals at Load came before the metrics.
	m.refused.Add(float64(st.RefusedTotal))
	if st.Served.From == "cache" {
		// Loud: the fleet may be serving different configurations now.
		log.Error("configuration source: "+s.loadNote+"; serving the CACHED configuration until etcd answers",
			"source", st.Source, "cache", s.o.CacheFile, "revision", st.Served.Revision, "cached_at", s.cachedAt())
	} else {
		log.Info("configuration source: serving etcd's configuration", "source", st.Source, "key", st.Key, "revision", st.Served.Revision, "node", s.o.NodeID)
		s.saveCache(st.Served.Revision, s.pending)
	}
	s.pending = nil
	s.applyMu.Unlock()

	var wg sync.WaitGroup
	wg.Go(func() { s.register(ctx) })
	s.follow(ctx)
	wg.Wait()
}

func (s *Source) cachedAt() string {
	if c, err := readCache(s.o.CacheFile); err == nil {
		return c.Written.Format(time.RFC3339)
	}
	return ""
}

// follow reads the key, watches it from the next revision, and starts over
// whenever the watch ends (compaction, lost leader). A periodic check beside
// the watch tracks the link to etcd and catches any change the watch could
// miss (an etcd restored from a backup, whose revisions went back).
func (s *Source) follow(ctx context.Context) {
	tick := time.NewTicker(s.o.CheckInterval)
	defer tick.Stop()
	for ctx.Err() == nil {
		rev, err := s.check(ctx, false)
		if err != nil {
			select {
			case <-ctx.Done():
			case <-tick.C:
			}
			continue
		}
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		s.watch(ctx, s.cli.Watch(wctx, s.o.Target.ConfigKey(), clientv3.WithRev(rev+1)), tick.C)
		cancel()
		// A watch that keeps ending (a cluster without a leader) is
		// started again once per check, not in a tight loop.
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
}

// watch applies what the watch brings until it ends or ctx does.
func (s *Source) watch(ctx context.Context, wch clientv3.WatchChan, tick <-chan time.Time) {
	for {
		select {
		case <-ctx.Done():
			return
		case resp, ok := <-wch:
			if !ok {
				return
			}
			if err := resp.Err(); err != nil {
				s.logger().Warn("configuration source: watch ended; reading the key again", "source", s.o.Target.String(), "error", err)
				return
			}
			s.setConnected(true, nil)
			if len(resp.Events) == 0 {
				continue
			}
			// Several revisions in one response: only the newest matters.
			ev := resp.Events[len(resp.Events)-1]
			if ev.Type == clientv3.EventTypeDelete {
				s.consider(nil)
			} else {
				s.consider(ev.Kv)
			}
		case <-tick:
			s.check(ctx, true)
		}
	}
}

// check reads the key (only its revision when probe is set, and the
// document when that revision is new) and considers it. It returns the
// cluster's revision at the read.
func (s *Source) check(ctx context.Context, probe bool) (int64, error) {
	key := s.o.Target.ConfigKey()
	rctx, cancel := context.WithTimeout(ctx, s.o.DialTimeout)
	defer cancel()
	var opts []clientv3.OpOption
	if probe {
		opts = append(opts, clientv3.WithKeysOnly())
	}
	resp, err := s.cli.Get(rctx, key, opts...)
	if err != nil {
		if ctx.Err() == nil {
			s.setConnected(false, err)
		}
		return 0, err
	}
	s.setConnected(true, nil)
	if len(resp.Kvs) == 0 {
		s.consider(nil)
		return resp.Header.Revision, nil
	}
	if probe && s.known(resp.Kvs[0].ModRevision) {
		return resp.Header.Revision, nil
	}
	if probe {
		if resp, err = s.cli.Get(rctx, key); err != nil {
			return 0, err
		}
		if len(resp.Kvs) == 0 {
			s.consider(nil)
			return resp.Header.Revision, nil
		}
	}
	// A refusal is recorded by consider; the read itself succeeded.
	s.consider(resp.Kvs[0])
	return resp.Header.Revision, nil
}

// known reports whether rev is the revision served or the one last refused.
func (s *Source) known(rev int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.Served.From == "etcd" && s.st.Served.Revision == rev || s.st.Refused != nil && s.st.Refused.Revision == rev
}

// Resync reads the key now and applies it if it is new (SIGHUP, POST
// /config/reload). It returns the refusal of the revision in etcd, if it is
// refused, or why etcd could not be read.
func (s *Source) Resync() error {
	rctx, cancel := context.WithTimeout(context.Background(), s.o.DialTimeout)
	defer cancel()
	resp, err := s.cli.Get(rctx, s.o.Target.ConfigKey())
	if err != nil {
		s.setConnected(false, err)
		return fmt.Errorf("etcd %s: %w; the configuration served keeps serving", s.o.Target, err)
	}
	s.setConnected(true, nil)
	if len(resp.Kvs) == 0 {
		s.consider(nil)
		return fmt.Errorf("%s does not exist in etcd; the configuration served keeps serving", s.o.Target.ConfigKey())
	}
	return s.consider(resp.Kvs[0])
}

// consider applies kv (nil: the key was deleted) unless it is what is
// served already or was refused already.
func (s *Source) consider(kv *mvccpb.KeyValue) error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.mu.Lock()
	apply, log := s.apply, s.log
	if apply == nil {
		s.mu.Unlock()
		return errors.New("the configuration source is not running yet")
	}
	if kv == nil {
		wasMissing := s.st.Missing
		s.st.Missing = true
		s.mu.Unlock()
		if !wasMissing {
			log.Warn("configuration source: the key was deleted; the configuration served keeps serving", "key", s.o.Target.ConfigKey())
		}
		return nil
	}
	s.st.Missing = false
	s.st.Latest = max(s.st.Latest, kv.ModRevision)
	served := s.st.Served
	if served.From == "etcd" && served.Revision == kv.ModRevision {
		s.mu.Unlock()
		return nil
	}
	if s.st.Refused != nil && s.st.Refused.Revision == kv.ModRevision {
		err := s.refusedErr
		s.mu.Unlock()
		return err
	}
	s.mu.Unlock()
	if Digest(kv.Value) == served.Digest {
		// The same document at a new revision (a rollback to what is
		// served, the cache catching up): nothing to compile.
		s.served(kv.ModRevision, "etcd", kv.Value)
		s.saveCache(kv.ModRevision, kv.Value)
		log.Info("configuration source: etcd's revision holds the document served; taken without a reload", "revision", kv.ModRevision, "was", served.Revision, "from", served.From)
		return nil
	}
	if err := apply(kv.Value, s.revName(kv.ModRevision)); err != nil {
		s.refuse(kv.ModRevision, err)
		return err
	}
	s.served(kv.ModRevision, "etcd", kv.Value)
	s.saveCache(kv.ModRevision, kv.Value)
	log.Info("configuration source: revision applied", "revision", kv.ModRevision, "node", s.o.NodeID)
	return nil
}

// served records that rev is served now.
func (s *Source) served(rev int64, from string, data []byte) {
	s.mu.Lock()
	s.st.Served = Served{Revision: rev, From: from, Digest: Digest(data), Since: time.Now().UTC()}
	if from == "etcd" {
		s.st.Latest = max(s.st.Latest, rev)
	}
	st, m := s.st, s.m
	s.mu.Unlock()
	m.observe(st)
	s.wake()
}

// refuse records that rev was refused with err.
func (s *Source) refuse(rev int64, err error) {
	r := &Refusal{Revision: rev, At: time.Now().UTC()}
	var errs config.Errors
	if errors.As(err, &errs) {
		for _, e := range errs {
			r.Errors = append(r.Errors, RefusalError{Field: e.Path, Line: e.Line, Message: e.Msg, Error: e.Error()})
		}
	} else {
		r.Errors = []RefusalError{{Message: err.Error(), Error: err.Error()}}
	}
	s.mu.Lock()
	s.st.Refused = r
	s.st.RefusedTotal++
	s.refusedErr = err
	m := s.m
	s.mu.Unlock()
	m.refused.Inc()
	s.wake()
}

func (s *Source) wake() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// saveCache writes the cache after a good apply; a failure is logged and
// shown on the admin API, and serving goes on.
func (s *Source) saveCache(rev int64, data []byte) {
	if s.o.CacheFile == "" || data == nil {
		return
	}
	err := writeCache(s.o.CacheFile, s.o.Target.ConfigKey(), rev, data)
	s.mu.Lock()
	if err != nil {
		s.st.Cache.Error = err.Error()
	} else {
		s.st.Cache.Error = ""
		s.st.Cache.Revision = rev
		s.st.Cache.Written = time.Now().UTC()
	}
	s.mu.Unlock()
	if err != nil {
		s.logger().Error("configuration source: cannot write the configuration cache; a restart while etcd is down could not start", "cache", s.o.CacheFile, "error", err)
	}
}

// setConnected records the link to etcd, logging each change once.
func (s *Source) setConnected(ok bool, err error) {
	now := time.Now().UTC()
	s.mu.Lock()
	was, seen := s.st.Connected, s.st.checked
	s.st.Connected, s.st.checked = ok, true
	if ok {
		s.st.LastContact = &now
		s.st.LastError = ""
	} else if err != nil {
		s.st.LastError = err.Error()
	}
	rev := s.st.Served.Revision
	log, m := s.log, s.m
	s.mu.Unlock()
	m.connected.Set(b2f(ok))
	if seen && was == ok {
		return
	}
	switch {
	case !ok:
		log.Error("configuration source: etcd unreachable; the configuration served keeps serving", "source", s.o.Target.String(), "revision", rev, "error", err)
	case seen:
		log.Info("configuration source: etcd reachable again", "source", s.o.Target.String())
	}
}

func (s *Source) logger() *slog.Logger {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
