package aggregate_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/furrow/furrow/pkg/aggregate"
	"github.com/furrow/furrow/pkg/snapshot"
)

// tallySchema saves a tally: its version, sum and values (counts follow
// from the values).
func tallySchema(version uint64) *aggregate.Schema[*tally] {
	return &aggregate.Schema[*tally]{
		Version: version,
		Encode: func(t *tally, w *snapshot.Writer) error {
			w.Uint(t.version)
			w.Int(t.sum)
			w.Uint(uint64(len(t.values)))
			for _, v := range t.values {
				w.Int(v)
			}
			return nil
		},
		Decode: func(id string, r *snapshot.Reader) *tally {
			t := newTally(id)
			t.version, t.sum = r.Uint(), r.Int()
			n := r.Count(1)
			for range n {
				v := r.Int()
				t.values = append(t.values, v)
				t.counts[v]++
			}
			return t
		},
	}
}

// snapEnv is an env with a snapshot bucket.
type snapEnv struct {
	*env
	kv    jetstream.KeyValue
	snaps aggregate.SnapshotStore
}

func newSnapEnv(t *testing.T) *snapEnv {
	t.Helper()
	e := newEnv(t, 0)
	ctx := context.Background()
	js := e.store.JetStream()
	bucket := e.stream + "_SNAPSHOTS"
	if err := aggregate.EnsureSnapshotBucket(ctx, js, aggregate.SnapshotBucket(bucket, 1)); err != nil {
		t.Fatal(err)
	}
	snaps, err := aggregate.OpenSnapshots(ctx, js, bucket)
	if err != nil || snaps == nil {
		t.Fatalf("OpenSnapshots = %v, %v", snaps, err)
	}
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		t.Fatal(err)
	}
	return &snapEnv{env: e, kv: kv, snaps: snaps}
}

// loader returns an uncached loader (every load starts from a snapshot, if
// any) that snapshots every `every` events, with schema version.
func (e *snapEnv) loader(every int, version uint64) *aggregate.Loader[*tally] {
	k := e.kind()
	k.Snapshot = tallySchema(version)
	return aggregate.NewLoader(e.store, k, aggregate.Options{MaxAggregates: -1, Snapshots: e.snaps, SnapshotEvery: every})
}

// waitWritten waits until l has written n snapshots.
func waitWritten(t *testing.T, l *aggregate.Loader[*tally], n uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for l.Stats().SnapshotsWritten < n {
		if s := l.Stats(); s.SnapshotErrors > 0 || time.Now().After(deadline) {
			t.Fatalf("snapshots not written: %+v", s)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkLoad loads id with l and compares it with a replay from the first
// event: state and idempotency keys (every key the replay knows answers
// the same).
func checkLoad(t *testing.T, e *snapEnv, l *aggregate.Loader[*tally], id string, keys []string) {
	t.Helper()
	got, seen := mustLoad(t, l, id)
	full, fullSeen, err := aggregate.NewLoader[*tally](e.store, e.kind(), aggregate.Options{MaxAggregates: -1}).Load(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(full.state(), got.state()); diff != "" {
		t.Fatalf("load (-full replay +got):\n%s", diff)
	}
	if seen.Len() != fullSeen.Len() {
		t.Fatalf("%d idempotency keys, full replay %d", seen.Len(), fullSeen.Len())
	}
	for _, k := range keys {
		want, wok, werr := fullSeen.Check(k, k)
		res, ok, err := seen.Check(k, k)
		if ok != wok || err != nil || werr != nil || !cmp.Equal(want, res) {
			t.Fatalf("key %s: Check = events %d..%d (%d ids) %v %v, full replay %d..%d (%d ids) %v %v; differ: %v",
				k, res.First, res.Last, len(res.EventIDs), ok, err, want.First, want.Last, len(want.EventIDs), wok, werr, !cmp.Equal(want, res))
		}
	}
}

// grow adds values one append at a time, loading through l after each
// (what a command does), and returns the appends' idempotency keys.
func grow(t *testing.T, e *snapEnv, l *aggregate.Loader[*tally], id string, from, n int, keyPrefix ...string) []string {
	t.Helper()
	var keys []string
	for i := from; i < from+n; i++ {
		a, _ := mustLoad(t, l, id)
		key := fmt.Sprintf("%s%s@%d", strings.Join(keyPrefix, ""), id, a.Version())
		if _, err := e.add(context.Background(), id, a.Version(), key, int64(i), int64(i*i)); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, key)
	}
	return keys
}

// A load that misses the cache starts from the aggregate's snapshot and
// reads only the events after it, and gets what a replay from the first
// event gets, state and idempotency keys alike.
func TestSnapshotPlusTailEqualsFullReplay(t *testing.T) {
	t.Parallel()
	e := newSnapEnv(t)
	writer := e.loader(6, 1)
	keys := grow(t, e, writer, "A", 0, 5) // 10 events; the load before the 4th append saw 6: a snapshot
	waitWritten(t, writer, 1)
	keys = append(keys, grow(t, e, writer, "A", 5, 3)...) // 16 events: another snapshot at 12, then a tail
	waitWritten(t, writer, 2)

	rec := &recordingEvents{Events: e.store}
	k := e.kind()
	k.Snapshot = tallySchema(1)
	reader := aggregate.NewLoader(rec, k, aggregate.Options{MaxAggregates: -1, Snapshots: e.snaps, SnapshotEvery: 1000})
	checkLoad(t, e, reader, "A", keys)
	// (A third snapshot, at 14 events, is possible: the writer's load
	// before the last append may have read the snapshot at 6 while the one
	// at 12 was being written, and found a write due once it was done.)
	if s := reader.Stats(); s.SnapshotsLoaded != 1 || s.SnapshotsRejected != 0 || (s.EventsRead != 4 && s.EventsRead != 2) {
		t.Fatalf("stats %+v: want one snapshot loaded and only the events after it read", s)
	}
	if rec.lastAfter() == 0 {
		t.Fatal("the load read from the first event")
	}

	// A cached loader keeps the aggregate it got from the snapshot.
	cached := aggregate.NewLoader(e.store, k, aggregate.Options{Snapshots: e.snaps})
	checkLoad(t, e, cached, "A", keys)
	checkLoad(t, e, cached, "A", keys)
	if s := cached.Stats(); s.SnapshotsLoaded != 1 || s.Hits != 1 {
		t.Fatalf("stats %+v: want one snapshot loaded, then a cache hit", s)
	}
}

// A snapshot that is damaged, of another schema version, or not of the
// stream's history is ignored: the load replays the aggregate whole.
func TestUnusableSnapshotsAreIgnored(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		version uint64 // the reader's schema version
		spoil   func(t *testing.T, e *snapEnv, data []byte) []byte
	}{
		{"a flipped byte", 1, func(_ *testing.T, _ *snapEnv, d []byte) []byte { d[len(d)/2] ^= 0x20; return d }},
		{"cut short", 1, func(_ *testing.T, _ *snapEnv, d []byte) []byte { return d[:len(d)-7] }},
		{"a byte added", 1, func(_ *testing.T, _ *snapEnv, d []byte) []byte { return append(d, 0) }},
		{"not a snapshot", 1, func(_ *testing.T, _ *snapEnv, _ []byte) []byte { return []byte("\x01{\"sum\": 3}") }},
		{"not a snapshot, in one part", 1, func(_ *testing.T, _ *snapEnv, _ []byte) []byte { return []byte("\x01a{\"sum\": 3}") }},
		{"an old schema version", 2, func(_ *testing.T, _ *snapEnv, d []byte) []byte { return d }},
		{"another aggregate's", 1, func(t *testing.T, e *snapEnv, _ []byte) []byte {
			b, err := e.kv.Get(ctx, "tally.B")
			if err != nil {
				t.Fatal(err)
			}
			return b.Value()
		}},
		{"another stream's history, same event ids", 1, func(t *testing.T, _ *snapEnv, _ []byte) []byte {
			// The same requests replayed into another stream: the same
			// sequences and event ids (they derive from the keys), but
			// other events, stored at other times.
			return otherHistory(t, "")
		}},
		{"another stream's history, other event ids", 1, func(t *testing.T, _ *snapEnv, _ []byte) []byte {
			return otherHistory(t, "other-")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newSnapEnv(t)
			keys := history(t, e, "", 0)
			got, err := e.kv.Get(ctx, "tally.A")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.kv.Put(ctx, "tally.A", tc.spoil(t, e, slices.Clone(got.Value()))); err != nil {
				t.Fatal(err)
			}
			r := e.loader(1000, tc.version)
			checkLoad(t, e, r, "A", keys)
			if s := r.Stats(); s.SnapshotsLoaded != 0 || s.SnapshotsRejected != 1 {
				t.Fatalf("stats %+v: want the snapshot rejected", s)
			}
		})
	}
}

// history gives e a snapshot of B and then one of A (at 8 events), with
// idempotency keys prefixed by prefix and values from base on, and
// returns A's keys.
func history(t *testing.T, e *snapEnv, prefix string, base int) []string {
	t.Helper()
	grow(t, e, e.loader(1000, 1), "B", base+50, 3, prefix)
	w := e.loader(4, 1)
	grow(t, e, w, "B", base+60, 3, prefix) // B's snapshot, for "another aggregate's"
	waitWritten(t, w, 1)
	w = e.loader(4, 1)
	keys := grow(t, e, w, "A", base, 4, prefix)
	waitWritten(t, w, 1)
	return keys
}

// otherHistory returns A's snapshot in another stream with the same
// layout: the same sequences, other values, keys prefixed by prefix.
func otherHistory(t *testing.T, prefix string) []byte {
	t.Helper()
	other := newSnapEnv(t)
	history(t, other, prefix, 1000)
	v, err := other.kv.Get(context.Background(), "tally.A")
	if err != nil {
		t.Fatal(err)
	}
	return v.Value()
}

// Snapshots larger than a message are stored in parts, and parts of two
// snapshots mixed (two writers racing) are refused by the checksum.
func TestLargeSnapshotsInParts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newSnapEnv(t)
	small := aggregate.NewKVSnapshots(e.kv, 16<<10) // parts of 8 KiB
	k := e.kind()
	k.Snapshot = tallySchema(1)
	w := aggregate.NewLoader(e.store, k, aggregate.Options{MaxAggregates: -1, Snapshots: small, SnapshotEvery: 2000})
	var keys []string
	for i := range 5 {
		values := make([]int64, 600)
		for j := range values {
			values[j] = int64(i*1_000_000 + j*7919)
		}
		a, _ := mustLoad(t, w, "L")
		key := fmt.Sprintf("L@%d", a.Version())
		if _, err := e.add(ctx, "L", a.Version(), key, values...); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, key)
	}
	waitWritten(t, w, 1) // the load before the 5th append saw 2,400 events
	if _, err := e.kv.Get(ctx, "tally.L.a2"); err != nil {
		t.Fatalf("no third part: %v", err)
	}
	r := aggregate.NewLoader(e.store, k, aggregate.Options{MaxAggregates: -1, Snapshots: small, SnapshotEvery: 100_000})
	checkLoad(t, e, r, "L", keys)
	if s := r.Stats(); s.SnapshotsLoaded != 1 {
		t.Fatalf("stats %+v: want the snapshot in parts loaded", s)
	}

	p1, err := e.kv.Get(ctx, "tally.L.a1")
	if err != nil {
		t.Fatal(err)
	}
	torn := slices.Clone(p1.Value())
	torn[100] ^= 1
	if _, err := e.kv.Put(ctx, "tally.L.a1", torn); err != nil {
		t.Fatal(err)
	}
	r = aggregate.NewLoader(e.store, k, aggregate.Options{MaxAggregates: -1, Snapshots: small, SnapshotEvery: 100_000})
	checkLoad(t, e, r, "L", keys)
	if s := r.Stats(); s.SnapshotsRejected != 1 {
		t.Fatalf("stats %+v: want the torn snapshot rejected", s)
	}
}
