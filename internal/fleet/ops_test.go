package fleet_test

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/penstock-dev/penstock/internal/fleet"
)

// TestPushCompareAndSwap checks that two pushes based on the same revision,
// run concurrently, cannot both land: exactly one wins and the other gets a
// conflict naming the revision it expected and the one the key is at.
func TestPushCompareAndSwap(t *testing.T) {
	tg, cli := newTarget(t)
	base := push(t, cli, tg, doc("base"))
	for round := range 5 {
		var wg sync.WaitGroup
		results := make([]fleet.PushResult, 2)
		errs := make([]error, 2)
		for i := range 2 {
			wg.Go(func() {
				results[i], errs[i] = fleet.Push(ctxT(t), cli, tg, doc("op"+itoa(int64(i))+"r"+itoa(int64(round))), base, fleet.Meta{Source: "op"})
			})
		}
		wg.Wait()
		won := -1
		for i, err := range errs {
			if err == nil {
				if won >= 0 {
					t.Fatalf("round %d: both pushes landed (revisions %d and %d)", round, results[0].Revision, results[1].Revision)
				}
				won = i
			}
		}
		if won < 0 {
			t.Fatalf("round %d: neither push landed: %v", round, errs)
		}
		var ce *fleet.ConflictError
		if !errors.As(errs[1-won], &ce) {
			t.Fatalf("round %d: loser's error %v is not a conflict", round, errs[1-won])
		}
		if ce.Base != base || ce.Current != results[won].Revision {
			t.Errorf("conflict %+v, want base %d, current %d", ce, base, results[won].Revision)
		}
		msg := ce.Error()
		if !strings.Contains(msg, "revision "+itoa(results[won].Revision)) || !strings.Contains(msg, "not "+itoa(base)) {
			t.Errorf("conflict message does not name both revisions: %s", msg)
		}
		base = results[won].Revision
	}
}

func TestPush(t *testing.T) {
	tg, cli := newTarget(t)
	// Base 0: the key must not exist yet.
	first, err := fleet.Push(ctxT(t), cli, tg, doc("a"), 0, fleet.Meta{Source: "a.yaml", Note: "first"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fleet.Push(ctxT(t), cli, tg, doc("b"), 0, fleet.Meta{Source: "b.yaml"}); err == nil {
		t.Error("a push expecting no key replaced one")
	}
	// The same document again changes nothing.
	res, err := fleet.Push(ctxT(t), cli, tg, doc("a"), -1, fleet.Meta{Source: "a.yaml"})
	if err != nil || !res.Unchanged || res.Revision != first.Revision {
		t.Errorf("unchanged push = %+v, %v", res, err)
	}
	// A stale base is refused even for a document equal to the current.
	if _, err := fleet.Push(ctxT(t), cli, tg, doc("c"), first.Revision-1, fleet.Meta{Source: "c.yaml"}); err == nil {
		t.Error("stale base accepted")
	}
}

// TestHistoryAndRead checks that history lists every pushed revision newest
// first with what the push recorded, and that Read returns the document of
// a past revision (what rollback restores).
func TestHistoryAndRead(t *testing.T) {
	tg, cli := newTarget(t)
	h, err := fleet.History(ctxT(t), cli, tg, 10)
	if err != nil || len(h.Revisions) != 0 {
		t.Fatalf("empty history = %+v, %v", h, err)
	}
	var revs []int64
	for _, name := range []string{"one", "two", "three"} {
		revs = append(revs, push(t, cli, tg, doc(name)))
		// Other keys change between pushes: revisions are not consecutive.
		cli.Put(ctxT(t), tg.Prefix+"/unrelated", name)
	}
	h, err = fleet.History(ctxT(t), cli, tg, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Revisions) != 3 || h.More || h.Compacted {
		t.Fatalf("history = %+v", h)
	}
	for i, r := range h.Revisions {
		want := revs[len(revs)-1-i]
		if r.Revision != want || r.Meta == nil || r.Meta.Source != "test" || r.Meta.PushedAt.IsZero() || r.Digest != r.Meta.Digest {
			t.Errorf("entry %d = %+v (meta %+v), want revision %d with its meta", i, r, r.Meta, want)
		}
	}
	if h, _ := fleet.History(ctxT(t), cli, tg, 2); len(h.Revisions) != 2 || !h.More {
		t.Errorf("limited history = %+v", h)
	}
	data, rev, err := fleet.Read(ctxT(t), cli, tg, revs[0])
	if err != nil || rev != revs[0] || !strings.Contains(string(data), "/one") {
		t.Errorf("Read(%d) = %q, %d, %v", revs[0], data, rev, err)
	}
	if _, _, err := fleet.Read(ctxT(t), cli, tg, 1<<40); err == nil || !strings.Contains(err.Error(), "future") {
		t.Errorf("Read of a future revision: %v", err)
	}

	// After a compaction, history stops there and says so.
	if _, err := cli.Compact(ctxT(t), revs[2]); err != nil {
		t.Fatal(err)
	}
	h, err = fleet.History(ctxT(t), cli, tg, 10)
	if err != nil || len(h.Revisions) != 1 || !h.Compacted || h.CompactRevision != revs[2] {
		t.Errorf("history after compaction = %+v, %v", h, err)
	}
	if _, _, err := fleet.Read(ctxT(t), cli, tg, revs[0]); err == nil || !strings.Contains(err.Error(), "compacted") {
		t.Errorf("Read of a compacted revision: %v", err)
	}
}
