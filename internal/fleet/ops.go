package fleet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Digest is a short content digest of a configuration document, shown by
// history, the admin API and the node records to tell revisions apart.
func Digest(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:6])
}

// Meta is written beside each pushed configuration (MetaKey), in the same
// transaction, so it shares the configuration's revision.
type Meta struct {
	// PushedAt is when the push was made (the pushing machine's clock).
	PushedAt time.Time `json:"pushed_at"`
	// By is user@host of the push.
	By string `json:"by,omitempty"`
	// Source is the file pushed, or "rollback to N".
	Source string `json:"source,omitempty"`
	// Note is the operator's word on the change (config push -m).
	Note string `json:"note,omitempty"`
	// Digest is the document's Digest.
	Digest string `json:"digest"`
	// Base is the revision the push replaced (0 for the first).
	Base int64 `json:"base_revision"`
}

// ConflictError is a push refused because the configuration changed since
// the revision it was based on.
type ConflictError struct {
	Key string
	// Base is the revision the push expected; Current the key's revision
	// now (0: the key does not exist).
	Base, Current int64
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("conflict: %s is at revision %d, not %d as this push expected: it was changed meanwhile; "+
		"review it (penstock config history), then push again (with -base-revision %d to replace it)",
		e.Key, e.Current, e.Base, e.Current)
}

// PushResult says what a push did.
type PushResult struct {
	// Revision is the key's revision after the push.
	Revision int64
	// Base is the revision it replaced.
	Base int64
	// Unchanged is set when the key already held this document: nothing
	// was written.
	Unchanged bool
}

// Push writes data to t's configuration key if the key's modification
// revision is still base (0: the key must not exist). A base below 0 means
// the revision read just before. about's Source and Note are recorded in
// the meta key with the time, user, digest and base. The document is not
// validated here: the caller does that first, with the same checks as
// penstock validate.
func Push(ctx context.Context, cli *clientv3.Client, t Target, data []byte, base int64, about Meta) (PushResult, error) {
	key := t.ConfigKey()
	if len(data) > maxDocument {
		return PushResult{}, fmt.Errorf("configuration is %d bytes; etcd accepts at most %d in one key", len(data), maxDocument)
	}
	cur, err := cli.Get(ctx, key)
	if err != nil {
		return PushResult{}, fmt.Errorf("etcd: read %s: %w", key, err)
	}
	var curRev int64
	if len(cur.Kvs) > 0 {
		curRev = cur.Kvs[0].ModRevision
	}
	if base < 0 {
		base = curRev
	}
	if len(cur.Kvs) > 0 && curRev == base && Digest(cur.Kvs[0].Value) == Digest(data) {
		return PushResult{Revision: curRev, Base: base, Unchanged: true}, nil
	}
	about.PushedAt, about.By, about.Digest, about.Base = time.Now().UTC(), whoami(), Digest(data), base
	meta, _ := json.Marshal(about)
	resp, err := cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", base)).
		Then(clientv3.OpPut(key, string(data)), clientv3.OpPut(t.MetaKey(), string(meta))).
		Else(clientv3.OpGet(key, clientv3.WithKeysOnly())).
		Commit()
	if err != nil {
		return PushResult{}, fmt.Errorf("etcd: write %s: %w", key, err)
	}
	if !resp.Succeeded {
		ce := &ConflictError{Key: key, Base: base}
		if r := resp.Responses[0].GetResponseRange(); r != nil && len(r.Kvs) > 0 {
			ce.Current = r.Kvs[0].ModRevision
		}
		return PushResult{}, ce
	}
	return PushResult{Revision: resp.Header.Revision, Base: base}, nil
}

func whoami() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	return name + "@" + host
}

// Revision is one entry of a configuration's history.
type Revision struct {
	// Revision is the etcd revision that wrote it.
	Revision int64 `json:"revision"`
	// Size is the document's length in bytes; Digest its Digest.
	Size   int    `json:"size"`
	Digest string `json:"digest"`
	// Meta is what the push recorded beside it, when it did (a document
	// written with etcdctl has none).
	Meta *Meta `json:"meta,omitempty"`
}

// HistoryResult is the history of a configuration key, newest first.
type HistoryResult struct {
	Revisions []Revision
	// Compacted is set when older revisions exist but etcd compacted them
	// away; CompactRevision is the oldest revision etcd still has.
	Compacted       bool
	CompactRevision int64
	// More is set when the history goes on beyond limit entries.
	More bool
}

// History lists up to limit revisions of t's configuration, newest first,
// reading etcd's history with WithRev until the key did not exist or the
// history was compacted.
func History(ctx context.Context, cli *clientv3.Client, t Target, limit int) (HistoryResult, error) {
	var h HistoryResult
	key := t.ConfigKey()
	rev := int64(0) // 0: the newest
	for {
		opts := []clientv3.OpOption{}
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := cli.Get(ctx, key, opts...)
		if errors.Is(err, rpctypes.ErrCompacted) {
			h.Compacted = true
			h.CompactRevision = compactRevision(ctx, cli, key)
			return h, nil
		}
		if err != nil {
			return h, fmt.Errorf("etcd: read %s: %w", key, err)
		}
		if len(resp.Kvs) == 0 {
			return h, nil
		}
		if len(h.Revisions) == limit {
			h.More = true
			return h, nil
		}
		kv := resp.Kvs[0]
		r := Revision{Revision: kv.ModRevision, Size: len(kv.Value), Digest: Digest(kv.Value)}
		if mr, err := cli.Get(ctx, t.MetaKey(), clientv3.WithRev(kv.ModRevision)); err == nil && len(mr.Kvs) > 0 && mr.Kvs[0].ModRevision == kv.ModRevision {
			var m Meta
			if json.Unmarshal(mr.Kvs[0].Value, &m) == nil {
				r.Meta = &m
			}
		}
		h.Revisions = append(h.Revisions, r)
		rev = kv.ModRevision - 1
		if rev <= 0 {
			return h, nil
		}
	}
}

// compactRevision finds the oldest revision etcd keeps: a read at a
// compacted revision fails, a read at the current one does not; the
// compaction point is the first that reads.
func compactRevision(ctx context.Context, cli *clientv3.Client, key string) int64 {
	resp, err := cli.Get(ctx, key, clientv3.WithKeysOnly())
	if err != nil {
		return 0
	}
	lo, hi := int64(1), resp.Header.Revision
	for lo < hi {
		mid := lo + (hi-lo)/2
		if _, err := cli.Get(ctx, key, clientv3.WithRev(mid), clientv3.WithKeysOnly()); errors.Is(err, rpctypes.ErrCompacted) {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

// Read returns t's configuration as it was at revision rev (0: now) and the
// revision that wrote it.
func Read(ctx context.Context, cli *clientv3.Client, t Target, rev int64) ([]byte, int64, error) {
	key := t.ConfigKey()
	var opts []clientv3.OpOption
	if rev > 0 {
		opts = append(opts, clientv3.WithRev(rev))
	}
	resp, err := cli.Get(ctx, key, opts...)
	if errors.Is(err, rpctypes.ErrCompacted) {
		return nil, 0, fmt.Errorf("revision %d of %s was compacted away: etcd keeps revisions from %d on", rev, key, compactRevision(ctx, cli, key))
	}
	if errors.Is(err, rpctypes.ErrFutureRev) {
		return nil, 0, fmt.Errorf("revision %d of %s is in the future", rev, key)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("etcd: read %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		if rev > 0 {
			return nil, 0, fmt.Errorf("%s did not exist at revision %d", key, rev)
		}
		return nil, 0, fmt.Errorf("%s does not exist: push a configuration first (penstock config push -c FILE %s)", key, t)
	}
	return resp.Kvs[0].Value, resp.Kvs[0].ModRevision, nil
}
