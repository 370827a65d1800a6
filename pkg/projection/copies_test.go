package projection_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/furrow/furrow/pkg/projection"
)

// shadowCaughtUp waits until the shadow copy has caught up (reached the
// stream's head once; it follows new events from there) and returns its
// status.
func shadowCaughtUp(t testing.TB, r *projection.Runner) projection.CopyStatus {
	t.Helper()
	var shadow projection.CopyStatus
	eventually(t, "shadow copy caught up", func() bool {
		for _, c := range status(t, r).Copies {
			if c.Role == "shadow" {
				shadow = c
				return c.CaughtUp
			}
		}
		return false
	})
	return shadow
}

// appendWhile appends events on test.a.live one by one until the returned
// finish is called (or the test ends), and finish returns their sequences.
func appendWhile(t testing.TB, js jetstream.JetStream) (finish func() []uint64) {
	var (
		wg   sync.WaitGroup
		seqs []uint64
		once sync.Once
	)
	stop := make(chan struct{})
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			seqs = append(seqs, appendEvents(t, js, "test.a.live")...)
			time.Sleep(2 * time.Millisecond)
		}
	})
	finish = func() []uint64 {
		once.Do(func() { close(stop) })
		wg.Wait()
		return seqs
	}
	t.Cleanup(func() { finish() })
	return finish
}

// A rebuild from zero, while commands keep arriving, produces rows equal
// to the live ones; the swap re-points readers at once; the old copy stays
// until dropped; afterwards every event is still applied exactly once.
func TestRebuildDiffSwapWhileEventsArrive(t *testing.T) {
	forEachStore(t, testRebuildDiffSwapWhileEventsArrive)
}

func testRebuildDiffSwapWhileEventsArrive(t *testing.T, s store) {
	js := startJetStream(t, true)
	db := openDB(t, s)
	preloaded := preload(t, js, 2000)
	r := newRunner(t, db, js, newCounter("counts"), projection.Options{BatchSize: 64})
	start(t, r)
	waitFor(t, r, preloaded)
	ctx := context.Background()

	appended := appendWhile(t, js)

	v, err := r.Rebuild(ctx, projection.RebuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v != 2 {
		t.Errorf("Rebuild = copy %d, want 2", v)
	}
	if _, err := r.Rebuild(ctx, projection.RebuildOptions{}); !errors.Is(err, projection.ErrShadowExists) {
		t.Errorf("second Rebuild = %v, want ErrShadowExists", err)
	}
	// Readers are still on the live copy while the shadow fills.
	if got := len(applied(t, db, "counts")); uint64(got) < preloaded {
		t.Errorf("live copy has %d rows during the rebuild, want at least %d", got, preloaded)
	}
	shadow := shadowCaughtUp(t, r)
	if shadow.Applied < preloaded || shadow.Total != shadow.Applied+shadow.LagEvents || shadow.Rate <= 0 {
		t.Errorf("shadow progress = %d of %d at %.0f/s; want the backlog done at a positive rate", shadow.Applied, shadow.Total, shadow.Rate)
	}

	d, err := r.Diff(ctx, projection.DiffOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !d.Empty() || !d.Aligned || d.LiveCheckpoint != d.OtherCheckpoint || d.Live != 1 || d.Other != 2 {
		t.Fatalf("diff while events arrive: %s\n%+v", d.Summary(), d)
	}
	t.Log(d.Summary())

	res, err := r.Swap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Live != 2 || res.Retired != 1 {
		t.Errorf("Swap = %+v, want live 2, retired 1", res)
	}
	seqs := appended()
	seqs = append(seqs, appendEvents(t, js, repeat("test.a.after", 5)...)...)
	last := seqs[len(seqs)-1]
	waitFor(t, r, last)
	if diff := cmp.Diff(once(seqRange(1, last)...), applied(t, db, "counts")); diff != "" {
		t.Errorf("applied after swap (-want +got):\n%s", diff)
	}
	st := status(t, r)
	if st.Version != 2 || len(st.Copies) != 2 || st.Copies[0].Role != "retired" || st.Copies[1].Role != "live" {
		t.Errorf("after swap: live v%d, copies %+v", st.Version, st.Copies)
	}
	// The retired copy is frozen where it was swapped out, and kept.
	if got := len(applied(t, db, "counts__v1")); got == 0 || uint64(got) >= last {
		t.Errorf("retired copy has %d rows; want those up to the swap (< %d)", got, last)
	}
	if err := r.DropCopy(ctx, 2); !errors.Is(err, projection.ErrLiveCopy) {
		t.Errorf("DropCopy(live) = %v, want ErrLiveCopy", err)
	}
	if err := r.DropCopy(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`SELECT 1 FROM counts__v1`); err == nil {
		t.Error("the dropped copy's table still exists")
	}
	if got := len(status(t, r).Copies); got != 1 {
		t.Errorf("%d copies after the drop, want 1", got)
	}
	// A second rebuild gets the next number.
	if v, err := r.Rebuild(ctx, projection.RebuildOptions{}); err != nil || v != 3 {
		t.Errorf("Rebuild after drop = %d, %v; want copy 3", v, err)
	}
	shadowCaughtUp(t, r)
	if err := r.DropCopy(ctx, 3); err != nil { // cancels the rebuild
		t.Fatal(err)
	}
}

// A rebuild by the next version of the code shows what would change.
func TestRebuildWithChangedProjectionShowsDiff(t *testing.T) {
	forEachStore(t, testRebuildWithChangedProjectionShowsDiff)
}

func testRebuildWithChangedProjectionShowsDiff(t *testing.T, s store) {
	js := startJetStream(t, true)
	db := openDB(t, s)
	last := preload(t, js, 20)
	c := newCounter("counts")
	r := newRunner(t, db, js, c, projection.Options{})
	start(t, r)
	waitFor(t, r, last)

	c.variant.Store(1) // the code changed: the rebuild runs the new version
	ctx := context.Background()
	if _, err := r.Rebuild(ctx, projection.RebuildOptions{}); err != nil {
		t.Fatal(err)
	}
	shadowCaughtUp(t, r)
	d, err := r.Diff(ctx, projection.DiffOptions{Samples: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(d.Summary())
	if len(d.Tables) != 1 {
		t.Fatalf("diff has %d tables, want 1", len(d.Tables))
	}
	td := d.Tables[0]
	// Of 1..20, the multiples of 5 are gone (4) and the other even
	// sequences are upper-cased (8).
	got := map[string]int{"live": td.LiveRows, "shadow": td.OtherRows, "added": td.Added, "removed": td.Removed, "changed": td.Changed}
	want := map[string]int{"live": 20, "shadow": 16, "added": 0, "removed": 4, "changed": 8}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("diff counts (-want +got):\n%s", diff)
	}
	if d.Empty() || len(td.Samples) != 3 {
		t.Fatalf("diff samples = %+v, want 3", td.Samples)
	}
	first := td.Samples[0]
	if first.Kind != "changed" || first.Key[0] != "2" || !cmp.Equal(first.Columns, []string{"subject"}) ||
		first.Live["subject"] != "test.a.1" || first.Other["subject"] != "TEST.A.1" {
		t.Errorf("first sample = %+v, want seq 2's subject upper-cased", first)
	}
	if td.Key[0] != "seq" {
		t.Errorf("matched on %v, want the primary key seq", td.Key)
	}
}

// A rebuild can start from a stream position or a time: the shadow copy
// then reflects only the events from there on.
func TestRebuildFromPositionOrTime(t *testing.T) { forEachStore(t, testRebuildFromPositionOrTime) }

func testRebuildFromPositionOrTime(t *testing.T, s store) {
	js := startJetStream(t, true)
	db := openDB(t, s)
	first := appendEvents(t, js, repeat("test.a.early", 5)...)
	time.Sleep(20 * time.Millisecond)
	boundary := time.Now()
	time.Sleep(20 * time.Millisecond)
	second := appendEvents(t, js, repeat("test.a.late", 5)...)
	r := newRunner(t, db, js, newCounter("counts"), projection.Options{})
	start(t, r)
	waitFor(t, r, second[len(second)-1])
	ctx := context.Background()

	for _, tc := range []struct {
		name string
		opts projection.RebuildOptions
		want []uint64
	}{
		{"from sequence 3", projection.RebuildOptions{FromSeq: 3}, seqRange(3, second[len(second)-1])},
		{"from a time", projection.RebuildOptions{FromTime: boundary}, second},
	} {
		v, err := r.Rebuild(ctx, tc.opts)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		shadowCaughtUp(t, r)
		if diff := cmp.Diff(once(tc.want...), applied(t, db, "counts__v"+strconv.FormatInt(v, 10))); diff != "" {
			t.Errorf("%s: shadow rows (-want +got):\n%s", tc.name, diff)
		}
		d, err := r.Diff(ctx, projection.DiffOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if removed := d.Tables[0].Removed; removed != len(first)+len(second)-len(tc.want) {
			t.Errorf("%s: diff removes %d rows, want the %d before the start", tc.name, removed, len(first)+len(second)-len(tc.want))
		}
		if err := r.DropCopy(ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.Rebuild(ctx, projection.RebuildOptions{FromSeq: 2, FromTime: boundary}); !errors.Is(err, projection.ErrInvalidConfig) {
		t.Errorf("Rebuild with both a sequence and a time = %v, want ErrInvalidConfig", err)
	}
}

// Another process sharing the database follows a swap: its runner of the
// same projection moves to the new live copy at its next event.
func TestReplicaFollowsSwap(t *testing.T) { forEachStore(t, testReplicaFollowsSwap) }

func testReplicaFollowsSwap(t *testing.T, s store) {
	js := startJetStream(t, true)
	open := s.fresh(t)
	first := appendEvents(t, js, repeat("test.a.x", 10)...)
	a := newRunner(t, open(t), js, newCounter("counts"), projection.Options{})
	b := newRunner(t, open(t), js, newCounter("counts"), projection.Options{})
	start(t, a)
	start(t, b)
	waitFor(t, a, first[9])
	waitFor(t, b, first[9])
	ctx := context.Background()
	if _, err := a.Rebuild(ctx, projection.RebuildOptions{}); err != nil {
		t.Fatal(err)
	}
	shadowCaughtUp(t, a)
	if _, err := a.Swap(ctx); err != nil {
		t.Fatal(err)
	}
	more := appendEvents(t, js, repeat("test.a.y", 10)...)
	waitFor(t, a, more[9])
	waitFor(t, b, more[9])
	eventually(t, "replica on copy 2", func() bool { return status(t, b).Version == 2 })
	db := open(t)
	if diff := cmp.Diff(once(seqRange(1, more[9])...), applied(t, db, "counts")); diff != "" {
		t.Errorf("applied (-want +got):\n%s", diff)
	}
}

// A projection that is not Versioned keeps its fixed table names, resumes
// from the checkpoint table runners wrote before the registry existed, and
// refuses a shadow rebuild with a clear error.
func TestLegacyProjection(t *testing.T) { forEachStore(t, testLegacyProjection) }

func testLegacyProjection(t *testing.T, s store) {
	js := startJetStream(t, true)
	db := openDB(t, s)
	seqs := appendEvents(t, js, repeat("test.a.x", 6)...)
	// What an older runner left: rows and checkpoint up to 3.
	c := newCounter("old_counts")
	for _, q := range []string{
		`CREATE TABLE projection_checkpoints (name TEXT PRIMARY KEY, seq INTEGER NOT NULL, updated_at TEXT NOT NULL)`,
		`INSERT INTO projection_checkpoints VALUES ('old_counts', 3, '2026-11-01T00:00:00Z')`,
		`CREATE TABLE old_counts (seq BIGINT PRIMARY KEY, subject TEXT NOT NULL, times INTEGER NOT NULL, batch BIGINT NOT NULL)`,
		`INSERT INTO old_counts VALUES (1, 'test.a.x', 1, 0), (2, 'test.a.x', 1, 0), (3, 'test.a.x', 1, 0)`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	r := newRunner(t, db, js, legacy{c}, projection.Options{})
	if r.Checkpoint() != 3 || r.Versioned() {
		t.Fatalf("legacy runner starts at %d (versioned %t), want the old checkpoint 3", r.Checkpoint(), r.Versioned())
	}
	stop := start(t, r)
	waitFor(t, r, seqs[5])
	if diff := cmp.Diff(once(seqs...), applied(t, db, "old_counts")); diff != "" {
		t.Errorf("applied (-want +got):\n%s", diff)
	}
	if _, err := r.Rebuild(context.Background(), projection.RebuildOptions{}); !errors.Is(err, projection.ErrNotVersioned) {
		t.Errorf("Rebuild = %v, want ErrNotVersioned", err)
	}
	// The same projection made Versioned (a new release: the old runner
	// stops) finds its old table in the way, and once it is dropped,
	// rebuilds copy 1 from the stream.
	stop()
	if _, err := projection.NewRunner(db, js, c, projection.Options{Logger: testLogger(t)}); !errors.Is(err, projection.ErrLegacyTables) {
		t.Errorf("NewRunner(versioned) over fixed-name tables = %v, want ErrLegacyTables", err)
	}
	if _, err := db.Exec(`DROP TABLE old_counts`); err != nil {
		t.Fatal(err)
	}
	v := newRunner(t, db, js, c, projection.Options{})
	if v.Checkpoint() != 0 || !v.Versioned() {
		t.Fatalf("upgraded runner starts at %d (versioned %t), want 0", v.Checkpoint(), v.Versioned())
	}
	start(t, v)
	waitFor(t, v, seqs[5])
	if diff := cmp.Diff(once(seqs...), applied(t, db, "old_counts")); diff != "" {
		t.Errorf("applied after the upgrade (-want +got):\n%s", diff)
	}
}
