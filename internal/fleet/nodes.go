package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Node is what a node registers under PREFIX/nodes/<id>.
type Node struct {
	// Node is its id.
	Node string `json:"node"`
	// Revision is the configuration revision it serves, From where it read
	// it ("etcd" or "cache"), Since when it started serving it.
	Revision int64     `json:"revision"`
	From     string    `json:"from"`
	Since    time.Time `json:"since"`
	// Refused is the last revision it refused, when newer than Revision.
	Refused int64 `json:"refused_revision,omitempty"`
	// Host, PID, Version and Started say which process it is.
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
	Version string    `json:"version,omitempty"`
	Started time.Time `json:"started"`
}

// record is this node's registration now.
func (s *Source) record() Node {
	st := s.Status()
	n := Node{Node: s.o.NodeID, Revision: st.Served.Revision, From: st.Served.From, Since: st.Served.Since,
		Host: s.host, PID: os.Getpid(), Version: s.o.Version, Started: s.started.UTC()}
	if st.Refused != nil && st.Refused.Revision > st.Served.Revision {
		n.Refused = st.Refused.Revision
	}
	return n
}

// register keeps PREFIX/nodes/<id> holding this node's revision, bound to a
// lease kept alive while etcd answers. When the lease is lost (etcd out of
// reach for longer than its TTL) a new one is granted once etcd answers
// again. When ctx ends, the lease is revoked: the node leaves the list at
// once rather than after the TTL.
func (s *Source) register(ctx context.Context) {
	key := s.o.Target.NodeKey(s.o.NodeID)
	retry := time.NewTicker(s.o.CheckInterval)
	defer retry.Stop()
	for ctx.Err() == nil {
		lease, ok := s.grant(ctx)
		if !ok {
			select {
			case <-ctx.Done():
			case <-retry.C:
			}
			continue
		}
		s.keep(ctx, key, lease, retry.C)
		s.setRegistered(false)
		rctx, cancel := context.WithTimeout(context.Background(), s.o.DialTimeout)
		s.cli.Revoke(rctx, lease)
		cancel()
	}
}

func (s *Source) grant(ctx context.Context) (clientv3.LeaseID, bool) {
	rctx, cancel := context.WithTimeout(ctx, s.o.DialTimeout)
	defer cancel()
	g, err := s.cli.Grant(rctx, int64(s.o.LeaseTTL/time.Second))
	if err != nil {
		return 0, false
	}
	return g.ID, true
}

// keep puts the record under the lease, again whenever it changes, and
// keeps the lease alive; it returns when the lease is lost or ctx ends.
func (s *Source) keep(ctx context.Context, key string, lease clientv3.LeaseID, retry <-chan time.Time) {
	kctx, cancel := context.WithCancel(ctx)
	defer cancel()
	alive, err := s.cli.KeepAlive(kctx, lease)
	if err != nil {
		return
	}
	dirty := true
	// The first put writes the record as it is now: changes before it
	// need no second one.
	select {
	case <-s.changed:
	default:
	}
	for {
		if dirty {
			b, _ := json.Marshal(s.record())
			rctx, rcancel := context.WithTimeout(ctx, s.o.DialTimeout)
			_, err := s.cli.Put(rctx, key, string(b), clientv3.WithLease(lease))
			rcancel()
			dirty = err != nil
			s.setRegistered(!dirty)
		}
		select {
		case <-ctx.Done():
			return
		case _, ok := <-alive:
			if !ok {
				if ctx.Err() == nil {
					s.logger().Warn("configuration source: node registration lease lost; registering again when etcd answers", "key", key)
				}
				return
			}
		case <-s.changed:
			dirty = true
		case <-retry:
			dirty = dirty || s.lostRecord(ctx, key, lease)
		}
	}
}

// lostRecord reports whether key must be written again: it was deleted (by
// hand, or revoked with the lease of the old process of a binary upgrade
// that wrote it last). A record under another live lease is another process
// with this node id: it is left alone (two processes rewriting one key
// would only flap) and reported once. An unanswered read says no: the
// keepalive notices a lost lease by itself.
func (s *Source) lostRecord(ctx context.Context, key string, lease clientv3.LeaseID) bool {
	rctx, cancel := context.WithTimeout(ctx, s.o.DialTimeout)
	defer cancel()
	resp, err := s.cli.Get(rctx, key)
	switch {
	case err != nil:
		return false
	case len(resp.Kvs) == 0:
		return true
	case clientv3.LeaseID(resp.Kvs[0].Lease) != lease && !s.warnedTwin:
		var other Node
		json.Unmarshal(resp.Kvs[0].Value, &other)
		s.warnedTwin = true
		s.logger().Warn("configuration source: another process registers this node id; give each process its own --node-id",
			"key", key, "other_host", other.Host, "other_pid", other.PID)
	}
	return false
}

func (s *Source) setRegistered(ok bool) {
	s.mu.Lock()
	s.st.Registered = ok
	s.mu.Unlock()
}

// NodeList is the fleet as etcd sees it.
type NodeList struct {
	// Revision is the configuration key's revision now (0: no key).
	Revision int64 `json:"revision"`
	// Nodes are the registered nodes, by id.
	Nodes []Node `json:"nodes"`
}

// Nodes lists the fleet this node belongs to (GET /config/source/nodes).
func (s *Source) Nodes(ctx context.Context) (any, error) {
	l, err := Nodes(ctx, s.cli, s.o.Target)
	if err != nil {
		return nil, err
	}
	if l.Nodes == nil {
		l.Nodes = []Node{}
	}
	return struct {
		NodeList
		Converged bool `json:"converged"`
	}{l, l.Converged()}, nil
}

// Converged reports whether every node serves Revision.
func (l NodeList) Converged() bool {
	for _, n := range l.Nodes {
		if n.Revision != l.Revision {
			return false
		}
	}
	return len(l.Nodes) > 0
}

// Nodes lists the nodes registered under t's prefix, with the
// configuration's revision, read at one cluster revision.
func Nodes(ctx context.Context, cli *clientv3.Client, t Target) (NodeList, error) {
	var l NodeList
	resp, err := cli.Txn(ctx).Then(
		clientv3.OpGet(t.ConfigKey(), clientv3.WithKeysOnly()),
		clientv3.OpGet(t.NodesPrefix(), clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return l, fmt.Errorf("etcd: list %s: %w", t.NodesPrefix(), err)
	}
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
		l.Revision = kvs[0].ModRevision
	}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		var n Node
		if err := json.Unmarshal(kv.Value, &n); err != nil {
			n = Node{Node: strings.TrimPrefix(string(kv.Key), t.NodesPrefix()) + " (unreadable record)"}
		}
		l.Nodes = append(l.Nodes, n)
	}
	sort.Slice(l.Nodes, func(i, j int) bool { return l.Nodes[i].Node < l.Nodes[j].Node })
	return l, nil
}
