package rollout

import (
	"errors"
	"time"
)

// Shared keeps a rollout's state where a fleet of nodes shares it (package
// fleet keeps it in etcd). Every node runs the same Rollout on its own
// traffic; one node at a time judges it, on the figures of every node, and
// every node serves the state it committed.
type Shared interface {
	// Windows returns the arms' counts over the sub-windows from..to
	// (numbered from the Unix epoch), merged over the fleet's nodes. An
	// error skips the analysis: this node does not judge the rollout, the
	// store is out of reach, or a node has not published the whole window
	// yet. The Rollout calls it with its lock held.
	Windows(from, to int64) (baseline, canary ArmWindow, err error)
	// Commit stores st, with since, the sub-window after which the next
	// analysis window begins, before the change takes effect; an error
	// (a newer state was committed meanwhile, the store is out of reach)
	// discards the change. The Rollout calls it with its lock held.
	Commit(st State, since int64) error
	// Start starts following the fleet's state for r (which calls
	// Windows and Commit from then on): adopting every state committed
	// (Rollout.Adopt) and passing the events it brings to report, for the
	// log and the metrics of this node.
	Start(r *Rollout, report func([]Event))
	// Status is what the admin API shows of the sharing: the node judging,
	// the state's revision, the link to the store.
	Status() SharedStatus
	// Close stops following and leaves the fleet's judging to the others.
	Close()
}

// SharedStatus is what the admin API and the dashboard show of a shared
// rollout.
type SharedStatus struct {
	// Key is the state's key, Revision the revision this node serves.
	Key      string `json:"key"`
	Revision int64  `json:"revision"`
	// Node is this node; Leader the node judging the rollout (as last
	// read), Leading whether it is this one.
	Node    string `json:"node"`
	Leader  string `json:"leader"`
	Leading bool   `json:"leading"`
	// Connected is whether the last request to etcd succeeded; LastError
	// why the last one failed.
	Connected bool   `json:"connected"`
	LastError string `json:"last_error,omitempty"`
	// Merged is how many nodes' observations the last analysis of this
	// node merged (this node's included).
	Merged int `json:"merged_nodes,omitempty"`
}

// Sharing makes the Shared of each rollout, by route name.
type Sharing interface {
	Share(route string) Shared
}

// ErrStale is returned by a Shared's Commit when the fleet's state changed
// since this node's copy: the action is refused, and the node's copy
// catches up.
var ErrStale = errors.New("the fleet's rollout state changed meanwhile")

// ErrUnavailable is returned by a Shared's Commit when the store could not
// be reached: the change is not made, on any node.
var ErrUnavailable = errors.New("the fleet's rollout state cannot change while its store is out of reach")

// SlotCounts are one arm's counts over one sub-window, as a node publishes
// them for the fleet: Merge adds up those of several nodes.
type SlotCounts struct {
	// Slot is the sub-window's number.
	Slot      int64 `json:"slot"`
	Requests  int64 `json:"requests,omitempty"`
	Errors    int64 `json:"errors,omitempty"`
	TTFTCount int64 `json:"ttft_count,omitempty"`
	Tokens    int64 `json:"tokens,omitempty"`
	StreamNs  int64 `json:"stream_ns,omitempty"`
	// Latency and TTFT are the histograms' non-empty buckets, as pairs of
	// a bucket index (HdrHistogram's layout, see histogram.go) and a count.
	Latency []int64 `json:"latency,omitempty"`
	TTFT    []int64 `json:"ttft,omitempty"`
}

// Export returns arm's counts over the sub-windows from..to (inclusive)
// that the ring still holds and that saw a request.
func (m *Monitor) Export(arm int, from, to int64) []SlotCounts {
	if uint(arm) >= uint(len(m.arms)) {
		return nil
	}
	ring := m.arms[arm]
	from = max(from, to-int64(len(ring))+1, 0)
	var out []SlotCounts
	for k := from; k <= to; k++ {
		w := &ring[k%int64(len(ring))]
		if w.num.Load() != k || w.requests.Load() == 0 {
			continue
		}
		sc := SlotCounts{Slot: k, Requests: int64(w.requests.Load()), Errors: int64(w.errors.Load()),
			Tokens: int64(w.tokens.Load()), StreamNs: int64(w.streamNs.Load())}
		sc.Latency = sparse(&w.lat)
		if h := w.ttft.Load(); h != nil && w.ttftN.Load() > 0 {
			sc.TTFTCount = int64(w.ttftN.Load())
			sc.TTFT = sparse(h)
		}
		out = append(out, sc)
	}
	return out
}

func sparse(h *atomicHist) []int64 {
	var out []int64
	for i := range h.counts {
		if n := h.counts[i].Load(); n != 0 {
			out = append(out, int64(i), int64(n))
		}
	}
	return out
}

// Merge adds up the counts of parts (each node's export of one arm) over
// the sub-windows from..to into one window, a histogram per sub-window as
// Monitor.Window gives, for Analyze. Counts out of range (a bucket index
// the layout does not have, a negative count: a corrupt publication) are
// ignored.
func Merge(from, to int64, parts ...[]SlotCounts) ArmWindow {
	var out ArmWindow
	if to < from {
		return out
	}
	type slot struct {
		lat, ttft []int64
		latN      int64
		ttftN     int64
	}
	// A window has at most 3 600 sub-windows (Definition). to ≥ from, so
	// their difference fits in a uint64 even when it overflows an int64.
	if uint64(to)-uint64(from) >= 3600 {
		from = to - 3599
	}
	slots := make([]*slot, to-from+1)
	add := func(dst, pairs []int64) ([]int64, int64) {
		var total int64
		for i := 0; i+1 < len(pairs); i += 2 {
			idx, c := pairs[i], pairs[i+1]
			if idx < 0 || idx >= histLen || c <= 0 {
				continue
			}
			if dst == nil {
				dst = make([]int64, histLen)
			}
			dst[idx] += c
			total += c
		}
		return dst, total
	}
	for _, p := range parts {
		for _, sc := range p {
			if sc.Slot < from || sc.Slot > to || sc.Requests < 0 || sc.Errors < 0 {
				continue
			}
			s := slots[sc.Slot-from]
			if s == nil {
				s = &slot{}
				slots[sc.Slot-from] = s
			}
			out.Requests += sc.Requests
			out.Errors += sc.Errors
			if sc.Tokens > 0 && sc.StreamNs > 0 {
				out.Tokens += sc.Tokens
				out.StreamTime += time.Duration(sc.StreamNs)
			}
			var c int64
			s.lat, c = add(s.lat, sc.Latency)
			s.latN += c
			s.ttft, c = add(s.ttft, sc.TTFT)
			s.ttftN += c
			if c > 0 {
				out.TTFTCount += max(sc.TTFTCount, 0)
			}
		}
	}
	for _, s := range slots {
		if s == nil {
			continue
		}
		if s.latN > 0 {
			out.Latency = append(out.Latency, export(s.lat))
		}
		if s.ttftN > 0 {
			out.TTFT = append(out.TTFT, export(s.ttft))
		}
	}
	return out
}
