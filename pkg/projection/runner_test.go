package projection_test

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/projection"
)

func TestRunnerAppliesInBatches(t *testing.T) { forEachStore(t, testRunnerAppliesInBatches) }

func testRunnerAppliesInBatches(t *testing.T, s store) {
	js := startJetStream(t, true)
	db := openDB(t, s)
	last := preload(t, js, 100)
	c := newCounter("counts")
	c.recordBatch = true
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

func TestWaitFor(t *testing.T) { forEachStore(t, testWaitFor) }

func testWaitFor(t *testing.T, s store) {
	js := startJetStream(t, true)
	db := openDB(t, s)
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
	forEachStore(t, testRestartResumesAfterCheckpoint)
}

func testRestartResumesAfterCheckpoint(t *testing.T, s store) {
	js := startJetStream(t, true)
	open := s.fresh(t)

	db := open(t)
	r := newRunner(t, db, js, newCounter("counts"), projection.Options{BatchSize: 7})
	stop := start(t, r)
	first := appendEvents(t, js, repeat("test.a.x", 20)...)
	waitFor(t, r, first[len(first)-1])
	stop()
	db.Close()

	// Written while no runner runs.
	second := appendEvents(t, js, repeat("test.b.y", 15)...)

	db = open(t)
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
func TestCrashesNeverDoubleOrSkip(t *testing.T) { forEachStore(t, testCrashesNeverDoubleOrSkip) }

func testCrashesNeverDoubleOrSkip(t *testing.T, s store) {
	js := startJetStream(t, true)
	db := openDB(t, s)
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

func TestApplyErrorRollsBackBatchAndRetries(t *testing.T) {
	forEachStore(t, testApplyErrorRollsBackBatchAndRetries)
}

func testApplyErrorRollsBackBatchAndRetries(t *testing.T, s store) {
	js := startJetStream(t, true)
	db := openDB(t, s)
	last := preload(t, js, 10)
	c := newCounter("counts")
	c.recordBatch = true
	c.failSeq.Store(7)
	c.failing.Store(true)
	var logs syncBuffer
	r := newRunner(t, db, js, c, projection.Options{
		BatchSize: 10, IdleWait: 50 * time.Millisecond, MaxRetries: 1000,
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
	// While event 7 fails, nothing from it on is applied: the events before
	// it are committed (the copy stops exactly at 7) and the rest of its
	// batch stays rolled back, rows and checkpoint alike.
	before := c.failedIn.Load()
	if before != 6 {
		t.Fatalf("failing batch starts after %d, want 6: the events before 7 committed", before)
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

func TestStatusAndFilteredWaitFor(t *testing.T) { forEachStore(t, testStatusAndFilteredWaitFor) }

func testStatusAndFilteredWaitFor(t *testing.T, s store) {
	js := startJetStream(t, true)
	db := openDB(t, s)
	appendEvents(t, js, "test.a.1", "test.b.1", "test.a.2", "test.b.2", "test.a.3", "test.b.3", "test.b.4")

	all := newRunner(t, db, js, newCounter("every"), projection.Options{})
	onlyA := newRunner(t, db, js, newCounter("only_a", "test.a.>"), projection.Options{})
	ctx := context.Background()
	for _, tc := range []struct {
		r    *projection.Runner
		want lag
	}{
		{all, lag{Name: "every", Stream: testStream, Version: 1, StreamHead: 7, LagEvents: 7, State: projection.StateStopped}},
		{onlyA, lag{Name: "only_a", Stream: testStream, Version: 1, StreamHead: 7, LagEvents: 3, State: projection.StateStopped}},
	} {
		st := status(t, tc.r)
		if diff := cmp.Diff(tc.want, lagOf(st)); diff != "" {
			t.Errorf("status before running (-want +got):\n%s", diff)
		}
		// The oldest event waiting was stored just now.
		if st.LagTime <= 0 || st.LagTime > time.Minute {
			t.Errorf("%s: LagTime = %v, want the age of event 1", st.Name, st.LagTime)
		}
		if !st.LastAppliedAt.IsZero() {
			t.Errorf("%s: LastAppliedAt = %v before anything was applied", st.Name, st.LastAppliedAt)
		}
	}

	stop := start(t, onlyA)
	// Position 7 is a test.b event: the filtered projection never applies
	// it but has nothing left to apply up to it.
	waitFor(t, onlyA, 7)
	st := status(t, onlyA)
	if diff := cmp.Diff(lag{Name: "only_a", Stream: testStream, Version: 1, Checkpoint: 5, StreamHead: 7, State: projection.StateIdle}, lagOf(st)); diff != "" {
		t.Errorf("status when caught up (-want +got):\n%s", diff)
	}
	if st.LastAppliedAt.IsZero() || time.Since(st.LastAppliedAt) > time.Minute {
		t.Errorf("LastAppliedAt = %v, want just now", st.LastAppliedAt)
	}
	if st.HeartbeatAt.IsZero() || time.Since(st.HeartbeatAt) > 5*time.Second || st.LagTime != 0 {
		t.Errorf("HeartbeatAt = %v, LagTime = %v; want a recent heartbeat and no lag", st.HeartbeatAt, st.LagTime)
	}
	// A position not yet written is waited for.
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := onlyA.WaitFor(short, 8); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitFor(8) beyond the head = %v, want DeadlineExceeded", err)
	}
	stop()

	appendEvents(t, js, "test.a.4", "test.b.5")
	want := lag{Name: "only_a", Stream: testStream, Version: 1, Checkpoint: 5, StreamHead: 9, LagEvents: 1, State: projection.StateStopped}
	if diff := cmp.Diff(want, lagOf(status(t, onlyA))); diff != "" {
		t.Errorf("status of a stopped runner (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(once(1, 3, 5), applied(t, db, "only_a")); diff != "" {
		t.Errorf("applied (-want +got):\n%s", diff)
	}
}

// lag is the part of a Status that does not depend on the clock.
type lag struct {
	Name, Stream           string
	Version                int64
	Checkpoint, StreamHead uint64
	LagEvents              uint64
	State                  projection.State
}

func lagOf(st projection.Status) lag {
	return lag{Name: st.Name, Stream: st.Stream, Version: st.Version, Checkpoint: st.Checkpoint,
		StreamHead: st.StreamHead, LagEvents: st.LagEvents, State: st.State}
}

func TestRunWaitsForStream(t *testing.T) { forEachStore(t, testRunWaitsForStream) }

func testRunWaitsForStream(t *testing.T, s store) {
	js := startJetStream(t, false)
	db := openDB(t, s)
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
// third (same name: separate processes on one database) against one
// database. No writer may fail on a busy database, and the replicas, which
// race for the same checkpoint, must still apply each event once.
func TestRunnersShareDatabase(t *testing.T) { forEachStore(t, testRunnersShareDatabase) }

func testRunnersShareDatabase(t *testing.T, s store) {
	js := startJetStream(t, true)
	open := s.fresh(t)
	var logs syncBuffer
	opts := projection.Options{BatchSize: 8, Logger: slog.New(slog.NewTextHandler(&logs, nil))}

	var runners []*projection.Runner
	for _, name := range []string{"first", "second", "replicated", "replicated"} {
		r := newRunner(t, open(t), js, newCounter(name), opts)
		start(t, r)
		runners = append(runners, r)
	}
	seqs := appendEvents(t, js, repeat("test.a.shared", 150)...)
	for _, r := range runners {
		waitFor(t, r, seqs[len(seqs)-1])
	}
	db := open(t)
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
	forEachStore(t, testRunnerRefusesSecondRunAndRewoundCheckpoint)
}

func testRunnerRefusesSecondRunAndRewoundCheckpoint(t *testing.T, s store) {
	js := startJetStream(t, true)
	db := openDB(t, s)
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

	if _, err := db.Exec(`UPDATE projection_copies SET seq = 1 WHERE name = 'counts'`); err != nil {
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
	db := openDB(t, sqliteStore)
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
		{"name not an identifier", db, js, newCounter("Counts-1"), projection.Options{}},
		{"name not a subject token", db, js, legacy{newCounter("counts.v1")}, projection.Options{}},
		{"table name too long", db, js, newCounter(strings.Repeat("c", 60)), projection.Options{}},
	} {
		if _, err := projection.NewRunner(tc.db, tc.js, tc.p, tc.opts); !errors.Is(err, projection.ErrInvalidConfig) {
			t.Errorf("%s: NewRunner error = %v, want ErrInvalidConfig", tc.name, err)
		}
	}
}
