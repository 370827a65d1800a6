package eventstore_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/furrow/furrow/pkg/eventstore"
)

func recorded(seq uint64, key string) eventstore.Recorded {
	return eventstore.Recorded{Sequence: seq, ID: fmt.Sprintf("ev-%d", seq), IdempotencyKey: key, Fingerprint: "fp-" + key}
}

func check(t *testing.T, r *eventstore.Requests, key string) eventstore.AppendResult {
	t.Helper()
	res, found, err := r.Check(key, "fp-"+key)
	if err != nil || !found {
		t.Fatalf("Check(%s) = found %v, %v; want found", key, found, err)
	}
	return res
}

func TestRequestsCheck(t *testing.T) {
	t.Parallel()
	r := eventstore.NewRequests("S")
	r.Record(recorded(1, "a"))
	r.Record(recorded(2, ""))
	for seq := uint64(3); seq <= 5; seq++ {
		r.Record(recorded(seq, "b"))
	}
	want := eventstore.AppendResult{Stream: "S", First: 3, Last: 5, Duplicate: true, EventIDs: []string{"ev-3", "ev-4", "ev-5"}}
	if diff := cmp.Diff(want, check(t, r, "b")); diff != "" {
		t.Fatalf("Check(b) (-want +got):\n%s", diff)
	}
	if _, found, err := r.Check("b", "other"); !found || err == nil {
		t.Fatalf("Check(b, other content) = found %v, %v; want a mismatch", found, err)
	}
	if _, found, _ := r.Check("c", "fp-c"); found {
		t.Fatal("Check(c) found a key never recorded")
	}
	if r.Len() != 2 {
		t.Fatalf("Len() = %d, want 2", r.Len())
	}
	// A result is the caller's: changing it changes nothing recorded.
	got := check(t, r, "b")
	got.EventIDs[0] = "changed"
	if diff := cmp.Diff(want, check(t, r, "b")); diff != "" {
		t.Fatalf("Check(b) after changing an earlier result (-want +got):\n%s", diff)
	}
}

// TestRequestsCloneIsIndependent: recording into a clone or its original,
// also more events of a key both hold (whose id list has spare capacity),
// never shows in the other. With -race, concurrent recording proves they
// share no memory that is written.
func TestRequestsCloneIsIndependent(t *testing.T) {
	t.Parallel()
	orig := eventstore.NewRequests("S")
	orig.Record(recorded(1, "a"))
	for seq := uint64(2); seq <= 4; seq++ { // 3 ids: a slice with spare capacity
		orig.Record(recorded(seq, "b"))
	}
	clone := orig.Clone()
	var wg sync.WaitGroup
	wg.Go(func() {
		orig.Record(recorded(10, "b"))
		orig.Record(recorded(11, "only-orig"))
	})
	wg.Go(func() {
		clone.Record(recorded(20, "b"))
		clone.Record(recorded(21, "only-clone"))
		_ = clone.Clone() // cloning a clone is fine too
	})
	wg.Wait()

	for _, c := range []struct {
		name     string
		r        *eventstore.Requests
		wantIDs  []string
		mine     string
		notMine  string
		wantLast uint64
	}{
		{"original", orig, []string{"ev-2", "ev-3", "ev-4", "ev-10"}, "only-orig", "only-clone", 10},
		{"clone", clone, []string{"ev-2", "ev-3", "ev-4", "ev-20"}, "only-clone", "only-orig", 20},
	} {
		got := check(t, c.r, "b")
		if diff := cmp.Diff(c.wantIDs, got.EventIDs); diff != "" || got.Last != c.wantLast {
			t.Errorf("%s: b's ids (-want +got):\n%s; last %d, want %d", c.name, diff, got.Last, c.wantLast)
		}
		check(t, c.r, "a")
		check(t, c.r, c.mine)
		if _, found, _ := c.r.Check(c.notMine, "fp-"+c.notMine); found {
			t.Errorf("%s holds %s, recorded into the other", c.name, c.notMine)
		}
	}
}
