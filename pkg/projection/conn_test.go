package projection_test

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/furrow/furrow/pkg/deadletter"
	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/projection"
)

// The connections' statement cache (SQLite) and write pipelining
// (PostgreSQL), seen from a projection: same results, fewer prepares and
// round trips, and a failing write still stops the copy at its own event.

// checked is a projection whose Apply reads first and writes second, into
// a table that refuses the subject "test.a.bad" (a CHECK constraint): on
// PostgreSQL the failing write is queued by its event and sent by the
// next event's read, or by the commit.
type checked struct{ name string }

func (c checked) Name() string       { return c.name }
func (c checked) Stream() string     { return testStream }
func (c checked) Subjects() []string { return nil }
func (c checked) Tables() []string   { return []string{c.name} }

func (c checked) Migrate(ctx context.Context, tx *sql.Tx) error {
	_, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+projection.Table(ctx, c.name)+` (
		seq BIGINT PRIMARY KEY, subject TEXT NOT NULL CHECK (subject <> 'test.a.bad'))`)
	return err
}

func (c checked) Apply(ctx context.Context, tx *sql.Tx, ev eventstore.Recorded) error {
	var n int64
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+projection.Table(ctx, c.name)).Scan(&n); err != nil {
		return fmt.Errorf("count: %w", err)
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO `+projection.Table(ctx, c.name)+` (seq, subject) VALUES ($1, $2)`,
		int64(ev.Sequence), ev.Subject)
	return err
}

// appendBatch appends events on subjects in one atomic batch, so that a
// runner started afterwards applies them in one transaction.
func appendBatch(t testing.TB, js jetstream.JetStream, subjects ...string) eventstore.AppendResult {
	t.Helper()
	evs := make([]eventstore.Event, len(subjects))
	for i, s := range subjects {
		evs[i] = eventstore.Event{Subject: s, Type: "test.v1.Counted"}
	}
	res, err := eventstore.New(js).Append(context.Background(), eventstore.AppendRequest{
		Stream: testStream, Aggregate: "test.>", Events: evs})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// A write that fails is pinned on the event that made it, though on
// PostgreSQL the failure surfaces later (the next event's read, or the
// commit): the copy stops right before it and parks it, not the event
// after it nor the whole batch.
func TestFailingWriteStopsAtItsOwnEvent(t *testing.T) {
	forEachStore(t, testFailingWriteStopsAtItsOwnEvent)
}

func testFailingWriteStopsAtItsOwnEvent(t *testing.T, s store) {
	for _, tc := range []struct {
		name     string
		subjects []string
		bad      uint64 // offset of the bad event in subjects
	}{
		{"read by the next event", []string{"test.a.1", "test.a.2", "test.a.bad", "test.a.4", "test.a.5"}, 2},
		{"sent by the commit", []string{"test.a.1", "test.a.2", "test.a.bad"}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			js := startJetStream(t, true)
			db := openDB(t, s)
			res := appendBatch(t, js, tc.subjects...)
			bad := res.First + tc.bad
			r := newRunner(t, db, js, checked{name: "checked"}, projection.Options{MaxRetries: 1, IdleWait: 20 * time.Millisecond})
			start(t, r)
			var st projection.Status
			eventually(t, "projection blocked", func() bool {
				st = status(t, r)
				return st.State == projection.StateBlocked
			})
			if st.FailingSeq != bad || st.Checkpoint != bad-1 {
				t.Fatalf("blocked at %d with checkpoint %d (%s), want at %d with checkpoint %d", st.FailingSeq, st.Checkpoint, st.Reason, bad, bad-1)
			}
			letters, err := deadletter.List(context.Background(), js, "checked")
			if err != nil {
				t.Fatal(err)
			}
			if len(letters) != 1 || letters[0].SourceSeq != bad || letters[0].SourceSubject != "test.a.bad" {
				t.Fatalf("dead letters = %+v, want one for event %d", letters, bad)
			}
			var n int
			if err := db.QueryRow(`SELECT COUNT(*) FROM checked`).Scan(&n); err != nil || uint64(n) != tc.bad {
				t.Errorf("rows = %d, %v; want the %d before the bad event", n, err, tc.bad)
			}
		})
	}
}

// probe is a projection whose Apply relies on what pipelining and the
// statement cache must keep: a write's RowsAffected, a read seeing the
// writes before it in its transaction, and a query run again, with other
// arguments, while its own rows are still being read (nested; SQLite
// only: a PostgreSQL connection runs one query at a time).
type probe struct{ nested bool }

func (probe) Name() string       { return "probe" }
func (probe) Stream() string     { return testStream }
func (probe) Subjects() []string { return nil }
func (probe) Tables() []string   { return []string{"probe"} }

func (probe) Migrate(ctx context.Context, tx *sql.Tx) error {
	_, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+projection.Table(ctx, "probe")+` (
		seq BIGINT PRIMARY KEY, times INTEGER NOT NULL, below INTEGER NOT NULL)`)
	return err
}

func (p probe) Apply(ctx context.Context, tx *sql.Tx, ev eventstore.Recorded) error {
	t := projection.Table(ctx, "probe")
	seq := int64(ev.Sequence)
	if _, err := tx.ExecContext(ctx, `INSERT INTO `+t+` (seq, times, below) VALUES ($1, 1, 0)`, seq); err != nil {
		return err
	}
	res, err := tx.ExecContext(ctx, `UPDATE `+t+` SET times = 2 WHERE seq = $1`, seq)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return fmt.Errorf("update of %d: RowsAffected = %d, %v; want 1", seq, n, err)
	}
	// Count, for every row so far, the rows at or below it, with the
	// same query text inside the loop over its own rows.
	const q = `SELECT seq FROM `
	rows, err := tx.QueryContext(ctx, q+t+` WHERE seq <= $1 ORDER BY seq`, seq)
	if err != nil {
		return err
	}
	defer rows.Close()
	var below []int64
	i := 0
	for rows.Next() {
		i++
		var s int64
		if err := rows.Scan(&s); err != nil {
			return err
		}
		if !p.nested {
			below = append(below, s)
			continue
		}
		if err := countBelow(ctx, tx, q+t, s, i); err != nil {
			return fmt.Errorf("event %d: %w", seq, err)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for j, s := range below {
		if err := countBelow(ctx, tx, q+t, s, j+1); err != nil {
			return fmt.Errorf("event %d: %w", seq, err)
		}
	}
	if int64(i) != seq {
		return fmt.Errorf("event %d sees %d rows, want %d (its own write included)", seq, i, seq)
	}
	_, err = tx.ExecContext(ctx, `UPDATE `+t+` SET below = $1 WHERE seq = $2`, i, seq)
	return err
}

// countBelow checks that query (a SELECT … FROM table) finds want rows
// at or below seq.
func countBelow(ctx context.Context, tx *sql.Tx, query string, seq int64, want int) error {
	inner, err := tx.QueryContext(ctx, query+` WHERE seq <= $1 ORDER BY seq`, seq)
	if err != nil {
		return err
	}
	n := 0
	for inner.Next() {
		n++
	}
	if err := inner.Close(); err != nil {
		return err
	}
	if n != want {
		return fmt.Errorf("%d rows at or below %d, want %d", n, seq, want)
	}
	return nil
}

func TestApplySeesItsOwnWritesAndResults(t *testing.T) {
	forEachStore(t, testApplySeesItsOwnWritesAndResults)
}

func testApplySeesItsOwnWritesAndResults(t *testing.T, s store) {
	js := startJetStream(t, true)
	db := openDB(t, s)
	const n = 40
	res := appendBatch(t, js, repeat("test.a.probe", n)...)
	r := newRunner(t, db, js, probe{nested: s.name == "sqlite"}, projection.Options{})
	start(t, r)
	waitFor(t, r, res.Last)
	if st := status(t, r); st.State != projection.StateIdle {
		t.Fatalf("state %s: %s", st.State, st.Reason)
	}
	want := map[int64][2]int64{}
	for seq := int64(1); seq <= n; seq++ {
		want[seq] = [2]int64{2, seq}
	}
	got := map[int64][2]int64{}
	rows, err := db.Query(`SELECT seq, times, below FROM probe`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var seq, times, below int64
		if err := rows.Scan(&seq, &times, &below); err != nil {
			t.Fatal(err)
		}
		got[seq] = [2]int64{times, below}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("probe rows (-want +got):\n%s", diff)
	}
}

// Applying a backlog prepares each statement once per connection
// (SQLite) and sends a batch's writes in a few round trips (PostgreSQL),
// not once per event.
func TestBacklogPreparesOnceAndPipelines(t *testing.T) {
	forEachStore(t, testBacklogPreparesOnceAndPipelines)
}

func testBacklogPreparesOnceAndPipelines(t *testing.T, s store) {
	js := startJetStream(t, true)
	db := openDB(t, s)
	const n = 3000
	last := preload(t, js, n)
	before := db.ConnStats()
	r := newRunner(t, db, js, newCounter("counts"), projection.Options{})
	start(t, r)
	waitFor(t, r, last)
	st := db.ConnStats()
	st.Prepared -= before.Prepared
	st.Reused -= before.Reused
	st.Pipelined -= before.Pipelined
	st.Flushes -= before.Flushes
	switch db.Dialect() {
	case "sqlite":
		if st.Reused+st.Prepared < n || st.Prepared > 50 {
			t.Errorf("%d events: %+v; want %d statement runs, at most 50 of them prepares", n, st, n)
		}
	case "postgres":
		if st.Pipelined < n || st.Flushes > st.Pipelined/100 {
			t.Errorf("%d events: %+v; want at least %d writes pipelined in at most one round trip per 100", n, st, n)
		}
	}
	if got := applied(t, db, "counts"); len(got) != n {
		t.Errorf("%d events applied, want %d", len(got), n)
	}
}
