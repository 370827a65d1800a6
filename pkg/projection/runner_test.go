package projection_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/natsembed"
	"github.com/furrow/furrow/pkg/projection"
)

const testStream = "TEST"

var testSpec = eventstore.StreamSpec{Name: testStream, Subjects: []string{"test.>"}}

// startJetStream starts an in-process server; withStream creates TEST.
func startJetStream(t testing.TB, withStream bool) jetstream.JetStream {
	t.Helper()
	srv, err := natsembed.Start(natsembed.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
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
			t.Fatalf("append %s: %v", subj, err)
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

func openDB(t testing.TB, path string) *projection.DB {
	t.Helper()
	db, err := projection.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// counter is a projection that records, for every sequence it applied,
// how many times it did so and the checkpoint stored before its batch
// (which identifies the batch). Double application shows as times > 1,
// a skipped event as a missing sequence.
type counter struct {
	name     string
	subjects []string
	// onApply, if set, is called by Apply (from the Run goroutine); set it
	// before Run.
	onApply func(seq uint64)

	failSeq  atomic.Uint64 // Apply fails on this sequence while failing is set
	failing  atomic.Bool
	failedIn atomic.Uint64 // batch (stored checkpoint) of the last failure
	failures chan uint64   // receives failSeq on every failure, if not full
}

func newCounter(name string, subjects ...string) *counter {
	return &counter{name: name, subjects: subjects, failures: make(chan uint64, 100)}
}

func (c *counter) Name() string       { return c.name }
func (c *counter) Stream() string     { return testStream }
func (c *counter) Subjects() []string { return c.subjects }

func (c *counter) Migrate(ctx context.Context, tx *sql.Tx) error {
	_, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+c.name+` (
		seq INTEGER PRIMARY KEY, subject TEXT NOT NULL, times INTEGER NOT NULL, batch INTEGER NOT NULL)`)
	return err
}

func (c *counter) Apply(ctx context.Context, tx *sql.Tx, ev eventstore.Recorded) error {
	if c.onApply != nil {
		c.onApply(ev.Sequence)
	}
	var batch int64
	err := tx.QueryRowContext(ctx, `SELECT seq FROM projection_checkpoints WHERE name = ?`, c.name).Scan(&batch)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO `+c.name+` (seq, subject, times, batch) VALUES (?, ?, 1, ?)
		ON CONFLICT (seq) DO UPDATE SET times = times + 1`, int64(ev.Sequence), ev.Subject, batch); err != nil {
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

// applied returns how many times each sequence was applied.
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

func storedCheckpoint(t testing.TB, db *projection.DB, name string) uint64 {
	t.Helper()
	var seq uint64
	err := db.QueryRow(`SELECT seq FROM projection_checkpoints WHERE name = ?`, name).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

func newRunner(t testing.TB, db *projection.DB, js jetstream.JetStream, p projection.Projection, opts projection.Options) *projection.Runner {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
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
	return stop
}

func waitFor(t testing.TB, r *projection.Runner, seq uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.WaitFor(ctx, seq); err != nil {
		t.Fatalf("WaitFor(%d): %v", seq, err)
	}
}

func TestRunnerAppliesInBatches(t *testing.T) {
	t.Parallel()
	js := startJetStream(t, true)
	db := openDB(t, filepath.Join(t.TempDir(), "read.db"))
	last := preload(t, js, 100)
	c := newCounter("counts")
	r := newRunner(t, db, js, c, projection.Options{BatchSize: 10})
	start(t, r)

	waitFor(t, r, last)
	if diff := cmp.Diff(once(seqRange(1, 100)...), applied(t, db, "counts")); diff != "" {
		t.Errorf("applied (-want +got):\n%s", diff)
	}
	// Every batch is one transaction: its events saw the same stored
	// checkpoint, which is the previous batch's last event.
	rows, err := db.Query(`SELECT batch, COUNT(*), MIN(seq), MAX(seq) FROM counts GROUP BY batch ORDER BY batch`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var prevMax uint64
	largest := 0
	for rows.Next() {
		var batch, minSeq, maxSeq uint64
		var n int
		if err := rows.Scan(&batch, &n, &minSeq, &maxSeq); err != nil {
			t.Fatal(err)
		}
		if batch != prevMax || minSeq != prevMax+1 || n > 10 || int(maxSeq-minSeq)+1 != n {
			t.Errorf("batch after %d: %d events %d..%d; want ≤ 10 contiguous events from %d", batch, n, minSeq, maxSeq, prevMax+1)
		}
		prevMax = maxSeq
		largest = max(largest, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if largest != 10 {
		t.Errorf("largest batch = %d events, want 10 (BatchSize)", largest)
	}

	// A lone event is applied at once, not when a batch fills up.
	seqs := appendEvents(t, js, "test.a.lone")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := r.WaitFor(ctx, seqs[0]); err != nil {
		t.Fatalf("lone event: %v", err)
	}
	if got := storedCheckpoint(t, db, "counts"); got != seqs[0] {
		t.Errorf("stored checkpoint = %d, want %d", got, seqs[0])
	}
}

func TestWaitFor(t *testing.T) {
	t.Parallel()
	js := startJetStream(t, true)
	db := openDB(t, filepath.Join(t.TempDir(), "read.db"))
	r := newRunner(t, db, js, newCounter("counts"), projection.Options{})
	start(t, r)

	if err := r.WaitFor(context.Background(), 0); err != nil {
		t.Fatalf("WaitFor(0) = %v, want nil at once", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	begin := time.Now()
	err := r.WaitFor(ctx, 1)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitFor(1) on an empty stream = %v, want DeadlineExceeded", err)
	}
	if took := time.Since(begin); took > 2*time.Second {
		t.Errorf("WaitFor took %v to notice its deadline", took)
	}
	canceled, cancelNow := context.WithCancel(context.Background())
	cancelNow()
	if err := r.WaitFor(canceled, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitFor with a canceled context = %v, want Canceled", err)
	}

	// Waiters blocked before the events exist are all woken.
	waiting := make(chan error, 3)
	for _, seq := range []uint64{1, 2, 3} {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			waiting <- r.WaitFor(ctx, seq)
		}()
	}
	appendEvents(t, js, "test.a.1", "test.a.2", "test.a.3")
	for range 3 {
		if err := <-waiting; err != nil {
			t.Fatalf("WaitFor: %v", err)
		}
	}
	if got := r.Checkpoint(); got < 3 {
		t.Errorf("Checkpoint() = %d after WaitFor(3)", got)
	}
	if diff := cmp.Diff(once(1, 2, 3), applied(t, db, "counts")); diff != "" {
		t.Errorf("applied (-want +got):\n%s", diff)
	}
}

func TestRestartResumesAfterCheckpoint(t *testing.T) {
	t.Parallel()
	js := startJetStream(t, true)
	path := filepath.Join(t.TempDir(), "read.db")

	db := openDB(t, path)
	r := newRunner(t, db, js, newCounter("counts"), projection.Options{BatchSize: 7})
	stop := start(t, r)
	first := appendEvents(t, js, repeat("test.a.x", 20)...)
	waitFor(t, r, first[len(first)-1])
	stop()
	db.Close()

	// Written while no runner runs.
	second := appendEvents(t, js, repeat("test.b.y", 15)...)

	db = openDB(t, path)
	r = newRunner(t, db, js, newCounter("counts"), projection.Options{BatchSize: 7})
	if got := r.Checkpoint(); got != first[len(first)-1] {
		t.Fatalf("new runner starts at %d, want the stored checkpoint %d", got, first[len(first)-1])
	}
	start(t, r)
	waitFor(t, r, second[len(second)-1])
	if diff := cmp.Diff(once(append(first, second...)...), applied(t, db, "counts")); diff != "" {
		t.Errorf("applied (-want +got):\n%s", diff)
	}
}

// TestCrashesNeverDoubleOrSkip kills runners at random points, most of
// them in the middle of a batch (rows written, checkpoint not yet
// committed), while events keep arriving, then checks that every event
// was applied exactly once.
func TestCrashesNeverDoubleOrSkip(t *testing.T) {
	t.Parallel()
	js := startJetStream(t, true)
	db := openDB(t, filepath.Join(t.TempDir(), "read.db"))
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))

	const total = 400
	appended := make(chan uint64, 1)
	go func() {
		seqs := appendEvents(t, js, repeat("test.a.crash", total)...)
		appended <- seqs[len(seqs)-1]
	}()

	midBatch := 0
	for round := range 10 {
		c := newCounter("counts")
		ctx, cancel := context.WithCancel(context.Background())
		r := newRunner(t, db, js, c, projection.Options{BatchSize: 1 + rng.IntN(16)})
		killAt := r.Checkpoint() + 1 + uint64(rng.IntN(30))
		var killedInApply atomic.Bool
		c.onApply = func(seq uint64) {
			if seq >= killAt {
				killedInApply.Store(true)
				cancel() // crash between applying rows and committing them
			}
		}
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx) }()
		// If the kill point is slow to come, die by the clock instead, at
		// any point of the loop (waiting, applying, committing).
		timer := time.AfterFunc(time.Duration(20+rng.IntN(150))*time.Millisecond, cancel)
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("round %d: Run = %v", round, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("round %d: Run did not stop", round)
		}
		timer.Stop()
		cancel()
		if killedInApply.Load() {
			midBatch++
		}
		t.Logf("round %d: stopped at checkpoint %d (kill point %d, killed in Apply: %t)",
			round, r.Checkpoint(), killAt, killedInApply.Load())
	}
	if midBatch == 0 {
		t.Errorf("no round was killed in the middle of a batch; the test proved little")
	}

	last := <-appended
	r := newRunner(t, db, js, newCounter("counts"), projection.Options{})
	start(t, r)
	waitFor(t, r, last)
	if diff := cmp.Diff(once(seqRange(1, last)...), applied(t, db, "counts")); diff != "" {
		t.Errorf("applied (-want +got):\n%s", diff)
	}
	if got := storedCheckpoint(t, db, "counts"); got != last {
		t.Errorf("stored checkpoint = %d, want %d", got, last)
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

func TestApplyErrorRollsBackBatchAndRetries(t *testing.T) {
	t.Parallel()
	js := startJetStream(t, true)
	db := openDB(t, filepath.Join(t.TempDir(), "read.db"))
	last := preload(t, js, 10)
	c := newCounter("counts")
	c.failSeq.Store(7)
	c.failing.Store(true)
	var logs syncBuffer
	r := newRunner(t, db, js, c, projection.Options{
		BatchSize: 10, IdleWait: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	start(t, r)

	for attempt := range 3 { // the first attempt and two retries
		select {
		case <-c.failures:
		case <-time.After(5 * time.Second):
			t.Fatalf("attempt %d never reached event 7", attempt+1)
		}
	}
	// While event 7 fails, its whole batch stays rolled back: the rows of
	// the batch's earlier events and the checkpoint are as before it.
	before := c.failedIn.Load()
	if before >= 7 {
		t.Fatalf("failing batch starts after %d, want it to hold events before 7", before)
	}
	if diff := cmp.Diff(once(seqRange(1, before)...), applied(t, db, "counts")); diff != "" {
		t.Errorf("applied while failing (-want +got):\n%s", diff)
	}
	if got := storedCheckpoint(t, db, "counts"); got != before {
		t.Errorf("stored checkpoint while failing = %d, want %d", got, before)
	}
	if got := r.Checkpoint(); got != before {
		t.Errorf("Checkpoint() while failing = %d, want %d", got, before)
	}

	c.failing.Store(false)
	waitFor(t, r, last)
	if diff := cmp.Diff(once(seqRange(1, last)...), applied(t, db, "counts")); diff != "" {
		t.Errorf("applied after recovery (-want +got):\n%s", diff)
	}
	for _, want := range []string{`msg="projection batch failed; rolled back, will retry"`, "failed_seq=7", "projection=counts"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %s:\n%s", want, logs.String())
		}
	}
}

func TestStatusAndFilteredWaitFor(t *testing.T) {
	t.Parallel()
	js := startJetStream(t, true)
	db := openDB(t, filepath.Join(t.TempDir(), "read.db"))
	appendEvents(t, js, "test.a.1", "test.b.1", "test.a.2", "test.b.2", "test.a.3", "test.b.3", "test.b.4")

	all := newRunner(t, db, js, newCounter("every"), projection.Options{})
	onlyA := newRunner(t, db, js, newCounter("only_a", "test.a.>"), projection.Options{})
	ctx := context.Background()
	ignoreTime := cmpopts.IgnoreFields(projection.Status{}, "LastAppliedAt")
	status := func(r *projection.Runner) projection.Status {
		t.Helper()
		st, err := r.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	for _, tc := range []struct {
		r    *projection.Runner
		want projection.Status
	}{
		{all, projection.Status{Name: "every", Stream: testStream, StreamHead: 7, LagEvents: 7}},
		{onlyA, projection.Status{Name: "only_a", Stream: testStream, StreamHead: 7, LagEvents: 3}},
	} {
		if diff := cmp.Diff(tc.want, status(tc.r), ignoreTime); diff != "" {
			t.Errorf("status before running (-want +got):\n%s", diff)
		}
	}

	stop := start(t, onlyA)
	// Position 7 is a test.b event: the filtered projection never applies
	// it but has nothing left to apply up to it.
	waitFor(t, onlyA, 7)
	st := status(onlyA)
	if diff := cmp.Diff(projection.Status{Name: "only_a", Stream: testStream, Checkpoint: 5, StreamHead: 7}, st, ignoreTime); diff != "" {
		t.Errorf("status when caught up (-want +got):\n%s", diff)
	}
	if st.LastAppliedAt.IsZero() || time.Since(st.LastAppliedAt) > time.Minute {
		t.Errorf("LastAppliedAt = %v, want just now", st.LastAppliedAt)
	}
	// A position not yet written is waited for.
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := onlyA.WaitFor(short, 8); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitFor(8) beyond the head = %v, want DeadlineExceeded", err)
	}
	stop()

	appendEvents(t, js, "test.a.4", "test.b.5")
	if diff := cmp.Diff(projection.Status{Name: "only_a", Stream: testStream, Checkpoint: 5, StreamHead: 9, LagEvents: 1}, status(onlyA), ignoreTime); diff != "" {
		t.Errorf("status of a stopped runner (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(once(1, 3, 5), applied(t, db, "only_a")); diff != "" {
		t.Errorf("applied (-want +got):\n%s", diff)
	}
}

func TestRunWaitsForStream(t *testing.T) {
	t.Parallel()
	js := startJetStream(t, false)
	db := openDB(t, filepath.Join(t.TempDir(), "read.db"))
	r := newRunner(t, db, js, newCounter("counts"), projection.Options{IdleWait: 100 * time.Millisecond})
	start(t, r)
	time.Sleep(150 * time.Millisecond) // let it find no stream, at least once

	if err := eventstore.EnsureStreams(context.Background(), js, testSpec); err != nil {
		t.Fatal(err)
	}
	seqs := appendEvents(t, js, "test.a.1", "test.a.2")
	waitFor(t, r, seqs[1])
	if diff := cmp.Diff(once(seqs...), applied(t, db, "counts")); diff != "" {
		t.Errorf("applied (-want +got):\n%s", diff)
	}
}

// TestRunnersShareDatabase runs two projections and two replicas of a
// third (same name: separate processes on one file) against one SQLite
// file. No writer may fail on a busy database, and the replicas, which
// race for the same checkpoint, must still apply each event once.
func TestRunnersShareDatabase(t *testing.T) {
	t.Parallel()
	js := startJetStream(t, true)
	path := filepath.Join(t.TempDir(), "read.db")
	var logs syncBuffer
	opts := projection.Options{BatchSize: 8, Logger: slog.New(slog.NewTextHandler(&logs, nil))}

	var runners []*projection.Runner
	for _, name := range []string{"first", "second", "replicated", "replicated"} {
		r := newRunner(t, openDB(t, path), js, newCounter(name), opts)
		start(t, r)
		runners = append(runners, r)
	}
	seqs := appendEvents(t, js, repeat("test.a.shared", 150)...)
	for _, r := range runners {
		waitFor(t, r, seqs[len(seqs)-1])
	}
	db := openDB(t, path)
	for _, name := range []string{"first", "second", "replicated"} {
		if diff := cmp.Diff(once(seqs...), applied(t, db, name)); diff != "" {
			t.Errorf("%s applied (-want +got):\n%s", name, diff)
		}
	}
	if strings.Contains(logs.String(), "level=ERROR") || strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("runners logged failures:\n%s", logs.String())
	}
}

func TestRunnerRefusesSecondRunAndRewoundCheckpoint(t *testing.T) {
	t.Parallel()
	js := startJetStream(t, true)
	db := openDB(t, filepath.Join(t.TempDir(), "read.db"))
	r := newRunner(t, db, js, newCounter("counts"), projection.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()

	seqs := appendEvents(t, js, "test.a.1", "test.a.2", "test.a.3")
	waitFor(t, r, seqs[2])
	if err := r.Run(ctx); !errors.Is(err, projection.ErrRunning) {
		t.Errorf("second Run = %v, want ErrRunning", err)
	}

	if _, err := db.Exec(`UPDATE projection_checkpoints SET seq = 1 WHERE name = 'counts'`); err != nil {
		t.Fatal(err)
	}
	appendEvents(t, js, "test.a.4")
	select {
	case err := <-done:
		if !errors.Is(err, projection.ErrCheckpointRewound) {
			t.Errorf("Run = %v, want ErrCheckpointRewound", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run kept going over a rewound checkpoint")
	}
}

func TestNewRunnerRejectsBadConfig(t *testing.T) {
	t.Parallel()
	js := startJetStream(t, false)
	db := openDB(t, filepath.Join(t.TempDir(), "read.db"))
	for _, tc := range []struct {
		name string
		db   *projection.DB
		js   jetstream.JetStream
		p    projection.Projection
		opts projection.Options
	}{
		{"nil db", nil, js, newCounter("c"), projection.Options{}},
		{"nil js", db, nil, newCounter("c"), projection.Options{}},
		{"nil projection", db, js, nil, projection.Options{}},
		{"no name", db, js, newCounter(""), projection.Options{}},
		{"negative batch", db, js, newCounter("c"), projection.Options{BatchSize: -1}},
	} {
		if _, err := projection.NewRunner(tc.db, tc.js, tc.p, tc.opts); !errors.Is(err, projection.ErrInvalidConfig) {
			t.Errorf("%s: NewRunner error = %v, want ErrInvalidConfig", tc.name, err)
		}
	}
}
