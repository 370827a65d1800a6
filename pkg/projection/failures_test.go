package projection_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/furrow/furrow/pkg/deadletter"
	"github.com/furrow/furrow/pkg/projection"
)

// A poison event is retried MaxRetries times with backoff, parked in the
// dead-letter stream with the reason and its origin, and (StopOnFailure)
// the projection stops there and says so in its status. A redrive before
// the fix fails and changes nothing; a redrive after the fix applies the
// event once and the projection carries on.
func TestPoisonEventStopsUntilRedriven(t *testing.T) {
	forEachStore(t, testPoisonEventStopsUntilRedriven)
}

func testPoisonEventStopsUntilRedriven(t *testing.T, s store) {
	js := startJetStream(t, true)
	db := openDB(t, s)
	c := newCounter("counts")
	c.failSeq.Store(4)
	c.failing.Store(true)
	r := newRunner(t, db, js, c, projection.Options{MaxRetries: 2, IdleWait: 20 * time.Millisecond})
	start(t, r)
	seqs := appendEvents(t, js, repeat("test.a.p", 6)...)

	var st projection.Status
	eventually(t, "projection blocked", func() bool {
		st = status(t, r)
		return st.State == projection.StateBlocked
	})
	if st.FailingSeq != 4 || st.Attempts != 3 || st.DeadLetter == 0 || st.Checkpoint != 3 || st.LagEvents != 3 ||
		!strings.Contains(st.Reason, "TEST:4") || !strings.Contains(st.Reason, "injected failure") || st.State.Healthy() {
		t.Fatalf("status of a blocked projection = %+v", st)
	}
	if got := len(c.failures); got != 3 {
		t.Errorf("event 4 tried %d times, want 1 + MaxRetries 2", got)
	}
	letters, err := deadletter.List(context.Background(), js, "counts")
	if err != nil {
		t.Fatal(err)
	}
	if len(letters) != 1 {
		t.Fatalf("%d dead letters, want 1", len(letters))
	}
	l := letters[0]
	got := map[string]string{
		"seq": strconv.FormatUint(l.Seq, 10), "kind": l.Kind, "consumer": l.Consumer, "copy": strconv.FormatInt(l.Copy, 10),
		"policy": l.Policy, "stream": l.SourceStream, "source_seq": strconv.FormatUint(l.SourceSeq, 10),
		"subject": l.SourceSubject, "attempts": strconv.Itoa(l.Attempts), "parked": strconv.FormatBool(l.Parked()),
		"type": l.Header.Get("Furrow-Event-Type"), "dl_subject": l.Subject,
	}
	want := map[string]string{
		"seq": strconv.FormatUint(st.DeadLetter, 10), "kind": "projection", "consumer": "counts", "copy": "1",
		"policy": "stop", "stream": testStream, "source_seq": "4",
		"subject": "test.a.p", "attempts": "3", "parked": "true",
		"type": "test.v1.Counted", "dl_subject": "deadletter.projection.counts",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("dead letter (-want +got):\n%s", diff)
	}
	if !strings.Contains(l.Reason, "injected failure") {
		t.Errorf("dead letter reason %q", l.Reason)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := r.Redrive(ctx, 0, 4); !errors.Is(err, projection.ErrStillFailing) {
		t.Fatalf("redrive before the fix = %v, want ErrStillFailing", err)
	}
	if st := status(t, r); st.State != projection.StateBlocked || st.Checkpoint != 3 {
		t.Fatalf("after a failed redrive: %s at %d, want still blocked at 3", st.State, st.Checkpoint)
	}

	c.failing.Store(false) // the fix
	res, err := r.Redrive(ctx, 0, 4)
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != "applied" || res.Version != 1 {
		t.Errorf("Redrive = %+v, want applied to copy 1", res)
	}
	waitFor(t, r, seqs[5])
	if diff := cmp.Diff(once(seqs...), applied(t, db, "counts")); diff != "" {
		t.Errorf("applied (-want +got):\n%s", diff)
	}
	if st := status(t, r); st.State != projection.StateIdle || st.FailingSeq != 0 {
		t.Errorf("after the redrive: %s (%s)", st.State, st.Reason)
	}
	if res, err := r.Redrive(ctx, 0, 4); err != nil || res.Outcome != "already-applied" {
		t.Errorf("second redrive = %+v, %v; want already-applied", res, err)
	}
	if _, err := r.Redrive(ctx, 0, 99); !errors.Is(err, projection.ErrNotParked) {
		t.Errorf("redrive of an event never parked = %v, want ErrNotParked", err)
	}
}

// Under SkipOnFailure the poison event is parked and skipped, the
// projection stays current, and a redrive after the fix applies the
// skipped event once.
func TestSkipPolicyMovesOnAndRedriveAppliesOnce(t *testing.T) {
	forEachStore(t, testSkipPolicyMovesOnAndRedriveAppliesOnce)
}

func testSkipPolicyMovesOnAndRedriveAppliesOnce(t *testing.T, s store) {
	js := startJetStream(t, true)
	db := openDB(t, s)
	c := newCounter("counts")
	c.failSeq.Store(2)
	c.failing.Store(true)
	r := newRunner(t, db, js, c, projection.Options{MaxRetries: 1, IdleWait: 20 * time.Millisecond, OnFailure: projection.SkipOnFailure})
	start(t, r)
	seqs := appendEvents(t, js, repeat("test.a.s", 4)...)
	waitFor(t, r, seqs[3])
	if diff := cmp.Diff(once(1, 3, 4), applied(t, db, "counts")); diff != "" {
		t.Errorf("applied with 2 skipped (-want +got):\n%s", diff)
	}
	st := status(t, r)
	if st.Skipped != 1 || st.State != projection.StateIdle || st.Policy != projection.SkipOnFailure {
		t.Errorf("status = %s, %d skipped, policy %s; want idle, 1 skipped, skip", st.State, st.Skipped, st.Policy)
	}
	letters, err := deadletter.List(context.Background(), js, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(letters) != 1 || letters[0].SourceSeq != 2 || letters[0].Policy != "skip" {
		t.Fatalf("dead letters = %+v, want event 2 parked under skip", letters)
	}

	ctx := context.Background()
	if _, err := r.Redrive(ctx, 0, 2); !errors.Is(err, projection.ErrStillFailing) {
		t.Fatalf("redrive before the fix = %v, want ErrStillFailing", err)
	}
	c.failing.Store(false)
	if res, err := r.Redrive(ctx, 0, 2); err != nil || res.Outcome != "applied" {
		t.Fatalf("Redrive = %+v, %v", res, err)
	}
	if res, err := r.Redrive(ctx, 0, 2); err != nil || res.Outcome != "already-applied" {
		t.Errorf("second redrive = %+v, %v; want already-applied", res, err)
	}
	if diff := cmp.Diff(once(seqs...), applied(t, db, "counts")); diff != "" {
		t.Errorf("applied after the redrive (-want +got):\n%s", diff)
	}
	if st := status(t, r); st.Skipped != 0 {
		t.Errorf("%d still skipped after the redrive", st.Skipped)
	}
}

// A projection whose loop hangs (here: Apply never returns) is reported
// stalled once StallAfter passes, while an idle one stays healthy.
func TestStalledIsToldFromIdle(t *testing.T) { forEachStore(t, testStalledIsToldFromIdle) }

func testStalledIsToldFromIdle(t *testing.T, s store) {
	js := startJetStream(t, true)
	db := openDB(t, s)
	opts := projection.Options{StallAfter: 300 * time.Millisecond}
	idle := newRunner(t, db, js, newCounter("idle_one", "test.idle.>"), opts)
	hung := newCounter("hung_one", "test.hung.>")
	release := make(chan struct{})
	hung.hang.Store(&release)
	stuck := newRunner(t, db, js, hung, opts)
	start(t, idle)
	start(t, stuck)
	t.Cleanup(func() { close(release) })
	appendEvents(t, js, "test.hung.1")

	time.Sleep(600 * time.Millisecond)
	if st := status(t, idle); st.State != projection.StateIdle || !st.State.Healthy() || time.Since(st.HeartbeatAt) > 2*time.Second {
		t.Errorf("idle projection: %s (%s), heartbeat %v ago", st.State, st.Reason, time.Since(st.HeartbeatAt))
	}
	st := status(t, stuck)
	if st.State != projection.StateStalled || st.State.Healthy() || st.LagEvents != 1 || !strings.Contains(st.Reason, "no heartbeat") {
		t.Errorf("hung projection: %s (%s), lag %d; want stalled with no heartbeat", st.State, st.Reason, st.LagEvents)
	}
}

// Pause stops every copy at a batch boundary, survives a restart, and
// shows in the status; Resume carries on from the checkpoint.
func TestPauseResume(t *testing.T) { forEachStore(t, testPauseResume) }

func testPauseResume(t *testing.T, s store) {
	js := startJetStream(t, true)
	open := s.fresh(t)
	db := open(t)
	r := newRunner(t, db, js, newCounter("counts"), projection.Options{IdleWait: 50 * time.Millisecond})
	stop := start(t, r)
	ctx := context.Background()
	first := appendEvents(t, js, "test.a.1", "test.a.2")
	waitFor(t, r, first[1])
	if err := r.Pause(ctx, "investigating ticket 42"); err != nil {
		t.Fatal(err)
	}
	second := appendEvents(t, js, "test.a.3", "test.a.4")
	time.Sleep(300 * time.Millisecond)
	st := status(t, r)
	if st.State != projection.StatePaused || !st.Paused || st.Checkpoint != first[1] || st.LagEvents != 2 ||
		!strings.Contains(st.Reason, "investigating ticket 42") {
		t.Fatalf("paused status = %s at %d, lag %d (%s)", st.State, st.Checkpoint, st.LagEvents, st.Reason)
	}
	// The pause is in the database: a restarted runner stays paused.
	stop()
	r = newRunner(t, open(t), js, newCounter("counts"), projection.Options{IdleWait: 50 * time.Millisecond})
	start(t, r)
	time.Sleep(200 * time.Millisecond)
	if st := status(t, r); st.State != projection.StatePaused || st.Checkpoint != first[1] {
		t.Fatalf("after restart: %s at %d, want paused at %d", st.State, st.Checkpoint, first[1])
	}
	if err := r.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, r, second[1])
	if diff := cmp.Diff(once(seqRange(1, second[1])...), applied(t, db, "counts")); diff != "" {
		t.Errorf("applied (-want +got):\n%s", diff)
	}
	if st := status(t, r); st.State != projection.StateIdle || st.Paused {
		t.Errorf("after resume: %s, paused %t", st.State, st.Paused)
	}
}
