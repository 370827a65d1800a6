package projection_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/natstest"
	"github.com/furrow/furrow/pkg/projection"
	"github.com/furrow/furrow/pkg/projection/projectiontest"
)

// The contract suite: every Test* that calls forEachStore runs once per
// store, SQLite and PostgreSQL, against the same expectations.

// postgresEnv names the DSN of the PostgreSQL server tests use; `make test`
// sets it (scripts/postgres.sh starts the server).
const postgresEnv = "FURROW_TEST_POSTGRES_DSN"

// store makes fresh databases of one kind.
type store struct {
	name string
	// fresh creates an empty database and returns how to open it; each
	// call of open is a separate handle, as another process would have.
	fresh func(t testing.TB) (open func(t testing.TB) *projection.DB)
}

var sqliteStore = store{name: "sqlite", fresh: func(t testing.TB) func(testing.TB) *projection.DB {
	path := filepath.Join(t.TempDir(), "read.db")
	return func(t testing.TB) *projection.DB {
		t.Helper()
		db, err := projection.OpenSQLite(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
}}

// postgresStore gives each test its own schema in the test database, so
// tests run in parallel and leave nothing behind (the schema is dropped at
// cleanup; a crashed run leaves only an unused, uniquely named schema).
var postgresStore = store{name: "postgres", fresh: func(t testing.TB) func(testing.TB) *projection.DB {
	t.Helper()
	dsn := projectiontest.PostgresSchemaDSN(t, "the PostgreSQL half of the contract suite")
	ctx := context.Background()
	return func(t testing.TB) *projection.DB {
		t.Helper()
		db, err := projection.OpenPostgres(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
}}

// forEachStore runs test once per store, in parallel subtests.
func forEachStore(t *testing.T, test func(t *testing.T, s store)) {
	t.Helper()
	for _, s := range []store{sqliteStore, postgresStore} {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			test(t, s)
		})
	}
}

// openDB opens a fresh database of store s.
func openDB(t testing.TB, s store) *projection.DB {
	t.Helper()
	return s.fresh(t)(t)
}

const testStream = "TEST"

var testSpec = eventstore.StreamSpec{Name: testStream, Subjects: []string{"test.>"}}

// startJetStream starts an in-process server; withStream creates TEST.
func startJetStream(t testing.TB, withStream bool) jetstream.JetStream {
	t.Helper()
	js := natstest.Embedded(t).JetStream(t)
	if withStream {
		if err := eventstore.EnsureStreams(context.Background(), js, testSpec); err != nil {
			t.Fatal(err)
		}
	}
	return js
}

// appendEvents appends one event per subject, in order, one append each
// (so that they interleave with a running projection), and returns their
// sequences.
func appendEvents(t testing.TB, js jetstream.JetStream, subjects ...string) []uint64 {
	t.Helper()
	s := eventstore.New(js)
	seqs := make([]uint64, 0, len(subjects))
	for _, subj := range subjects {
		res, err := s.Append(context.Background(), eventstore.AppendRequest{
			Stream: testStream, Aggregate: subj,
			Events: []eventstore.Event{{Subject: subj, Type: "test.v1.Counted"}},
		})
		if err != nil {
			t.Errorf("append %s: %v", subj, err)
			return seqs
		}
		seqs = append(seqs, res.Last)
	}
	return seqs
}

// preload appends n events on test.a.<i> in atomic batches (fast) and
// returns the last sequence.
func preload(t testing.TB, js jetstream.JetStream, n int) uint64 {
	t.Helper()
	s := eventstore.New(js)
	var last uint64
	for done := 0; done < n; {
		var evs []eventstore.Event
		for ; done < n && len(evs) < eventstore.MaxBatch; done++ {
			evs = append(evs, eventstore.Event{Subject: fmt.Sprintf("test.a.%d", done), Type: "test.v1.Counted"})
		}
		res, err := s.Append(context.Background(), eventstore.AppendRequest{Stream: testStream, Aggregate: "test.a.>", Events: evs})
		if err != nil {
			t.Fatalf("preload: %v", err)
		}
		last = res.Last
	}
	return last
}

func repeat(subject string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = subject
	}
	return out
}

// counter is a Versioned projection that records, for every sequence it
// applied, how many times it did so and the checkpoint stored before its
// batch (which identifies the batch). Double application shows as
// times > 1, a skipped event as a missing sequence.
type counter struct {
	name     string
	subjects []string
	// onApply, if set, is called by Apply (from the Run goroutine); set it
	// before Run.
	onApply func(seq uint64)
	// variant 1 is "the next version of the code": it writes subjects in
	// upper case for even sequences and drops every fifth event.
	variant atomic.Int32

	failSeq  atomic.Uint64 // Apply fails on this sequence while failing is set
	failing  atomic.Bool
	failedIn atomic.Uint64 // batch (stored checkpoint) of the last failure
	failures chan uint64   // receives failSeq on every failure, if not full
	// recordBatch makes Apply store the checkpoint its batch started from;
	// off, batch is 0, so that copies built in other batches compare equal.
	recordBatch bool
	// hang, if set, makes Apply block until it is closed.
	hang atomic.Pointer[chan struct{}]
}

func newCounter(name string, subjects ...string) *counter {
	return &counter{name: name, subjects: subjects, failures: make(chan uint64, 100)}
}

var _ projection.Versioned = (*counter)(nil)

func (c *counter) Name() string       { return c.name }
func (c *counter) Stream() string     { return testStream }
func (c *counter) Subjects() []string { return c.subjects }
func (c *counter) Tables() []string   { return []string{c.name} }

func (c *counter) Migrate(ctx context.Context, tx *sql.Tx) error {
	_, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+projection.Table(ctx, c.name)+` (
		seq BIGINT PRIMARY KEY, subject TEXT NOT NULL, times INTEGER NOT NULL, batch BIGINT NOT NULL)`)
	return err
}

func (c *counter) Apply(ctx context.Context, tx *sql.Tx, ev eventstore.Recorded) error {
	if c.onApply != nil {
		c.onApply(ev.Sequence)
	}
	if h := c.hang.Load(); h != nil {
		<-*h
	}
	var batch int64
	if c.recordBatch {
		err := tx.QueryRowContext(ctx, `SELECT seq FROM projection_copies WHERE name = $1 AND role = 'live'`, c.name).Scan(&batch)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
	}
	subject := ev.Subject
	if c.variant.Load() == 1 {
		if ev.Sequence%5 == 0 {
			return nil
		}
		if ev.Sequence%2 == 0 {
			subject = strings.ToUpper(subject)
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO `+projection.Table(ctx, c.name)+` (seq, subject, times, batch) VALUES ($1, $2, 1, $3)
		ON CONFLICT (seq) DO UPDATE SET times = `+projection.Table(ctx, c.name)+`.times + 1`, int64(ev.Sequence), subject, batch); err != nil {
		return err
	}
	if c.failing.Load() && ev.Sequence == c.failSeq.Load() {
		c.failedIn.Store(uint64(batch))
		select {
		case c.failures <- ev.Sequence:
		default:
		}
		return errors.New("injected failure")
	}
	return nil
}

// legacy is the counter as a projection that is not Versioned: fixed
// table names, as projections were written before copies existed.
type legacy struct{ c *counter }

func (l legacy) Name() string       { return l.c.Name() }
func (l legacy) Stream() string     { return l.c.Stream() }
func (l legacy) Subjects() []string { return l.c.Subjects() }
func (l legacy) Migrate(ctx context.Context, tx *sql.Tx) error {
	return l.c.Migrate(ctx, tx)
}
func (l legacy) Apply(ctx context.Context, tx *sql.Tx, ev eventstore.Recorded) error {
	return l.c.Apply(ctx, tx, ev)
}

// applied returns how many times each sequence was applied, reading table
// (for a Versioned projection: the view of its live copy).
func applied(t testing.TB, db *projection.DB, table string) map[uint64]int {
	t.Helper()
	rows, err := db.Query(`SELECT seq, times FROM ` + table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := map[uint64]int{}
	for rows.Next() {
		var seq uint64
		var times int
		if err := rows.Scan(&seq, &times); err != nil {
			t.Fatal(err)
		}
		got[seq] = times
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

// once is the applied map of seqs each applied exactly once.
func once(seqs ...uint64) map[uint64]int {
	m := map[uint64]int{}
	for _, s := range seqs {
		m[s] = 1
	}
	return m
}

func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

// storedCheckpoint reads the live copy's stored checkpoint.
func storedCheckpoint(t testing.TB, db *projection.DB, name string) uint64 {
	t.Helper()
	var seq uint64
	err := db.QueryRow(`SELECT seq FROM projection_copies WHERE name = $1 AND role = 'live'`, name).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func newRunner(t testing.TB, db *projection.DB, js jetstream.JetStream, p projection.Projection, opts projection.Options) *projection.Runner {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	r, err := projection.NewRunner(db, js, p, opts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// start runs r in the background. The returned stop cancels it and fails
// the test unless Run returns nil promptly; it also runs at cleanup.
func start(t testing.TB, r *projection.Runner) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run = %v, want nil after cancel", err)
				}
			case <-time.After(5 * time.Second):
				t.Errorf("Run did not return within 5s of cancel")
			}
		})
	}
	t.Cleanup(stop)
	eventually(t, "runner running", r.Running)
	return stop
}

func waitFor(t testing.TB, r *projection.Runner, seq uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := r.WaitFor(ctx, seq); err != nil {
		t.Fatalf("WaitFor(%d): %v", seq, err)
	}
}

func status(t testing.TB, r *projection.Runner) projection.Status {
	t.Helper()
	st, err := r.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// eventually polls cond until it holds or 20s pass.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
