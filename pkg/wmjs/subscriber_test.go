package wmjs_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/go-cmp/cmp"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/wmjs"
)

// A message is acked at the server only after the handler succeeded: a
// failing handler gets the same stream message again, and the consumer's
// ack floor moves only after success (and before the next delivery).
func TestAckOnlyAfterSuccess(t *testing.T) {
	t.Parallel()
	js := startJS(t)
	sub := newSubscriber(t, js, wmjs.Config{
		Stream: testStream, Durable: "ack-after-success",
		FilterSubjects: []string{"test.a.>"}, NakDelay: 10 * time.Millisecond,
	})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ch, err := sub.Subscribe(ctx, testStream)
	if err != nil {
		t.Fatal(err)
	}
	first := publish(t, js, "test.a.1.recorded", "e1", nil)
	second := publish(t, js, "test.a.2.recorded", "e2", nil)

	for attempt := 1; attempt <= 3; attempt++ {
		m := receive(t, ch)
		if m.UUID != "e1" || seqOf(t, m) != first || m.Metadata.Get(wmjs.MetaDelivered) != strconv.Itoa(attempt) {
			t.Fatalf("attempt %d: got %s seq %d delivered %s, want e1 seq %d delivered %d",
				attempt, m.UUID, seqOf(t, m), m.Metadata.Get(wmjs.MetaDelivered), first, attempt)
		}
		info := consumerInfo(t, js, "ack-after-success")
		if info.AckFloor.Stream != 0 || info.NumAckPending != 1 {
			t.Fatalf("attempt %d, handler still running: ack floor %d, ack pending %d; want 0 and 1",
				attempt, info.AckFloor.Stream, info.NumAckPending)
		}
		if attempt == 1 {
			expectNone(t, ch) // one in flight: e2 waits until e1 is settled
		}
		if attempt < 3 {
			m.Nack() // the handler failed
			continue
		}
		m.Ack()
	}

	m := receive(t, ch)
	if m.UUID != "e2" || seqOf(t, m) != second {
		t.Fatalf("after e1 succeeded got %s seq %d, want e2 seq %d", m.UUID, seqOf(t, m), second)
	}
	// e2 is delivered only once e1's ack is confirmed, so no polling here.
	info := consumerInfo(t, js, "ack-after-success")
	if info.AckFloor.Stream != first || info.NumAckPending != 1 {
		t.Fatalf("after e1 acked: ack floor %d, ack pending %d; want %d and 1", info.AckFloor.Stream, info.NumAckPending, first)
	}
	m.Ack()
	eventually(t, "ack floor reaches e2", func() bool {
		info := consumerInfo(t, js, "ack-after-success")
		return info.AckFloor.Stream == second && info.NumAckPending == 0
	})
}

// A process that dies mid-handler (its context ends before it acks) loses
// nothing: a new subscriber on the same durable gets the message again.
func TestCrashBeforeAckLosesNothing(t *testing.T) {
	t.Parallel()
	js := startJS(t)
	cfg := wmjs.Config{Stream: testStream, Durable: "crash", AckWait: 500 * time.Millisecond}
	sub := newSubscriber(t, js, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := sub.Subscribe(ctx, testStream)
	if err != nil {
		t.Fatal(err)
	}
	seq := publish(t, js, "test.b.1.recorded", "e1", nil)

	m := receive(t, ch)
	if seqOf(t, m) != seq {
		t.Fatalf("got seq %d, want %d", seqOf(t, m), seq)
	}
	cancel() // the process dies while the handler blocks
	select {
	case <-m.Context().Done():
	case <-time.After(5 * time.Second):
		t.Fatal("message context not done after the subscription ended")
	}
	select {
	case _, open := <-ch:
		if open {
			t.Fatal("a second message arrived after the subscription ended")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("subscription channel still open after its context ended")
	}
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	if info := consumerInfo(t, js, "crash"); info.AckFloor.Stream != 0 {
		t.Fatalf("ack floor %d after a crash before ack, want 0", info.AckFloor.Stream)
	}

	restarted := newSubscriber(t, js, cfg)
	ch2, err := restarted.Subscribe(context.Background(), testStream)
	if err != nil {
		t.Fatal(err)
	}
	again := receive(t, ch2)
	if again.UUID != "e1" || seqOf(t, again) != seq || again.Metadata.Get(wmjs.MetaDelivered) != "2" {
		t.Fatalf("after restart got %s seq %d delivered %s, want e1 seq %d delivered 2",
			again.UUID, seqOf(t, again), again.Metadata.Get(wmjs.MetaDelivered), seq)
	}
	again.Ack()
	eventually(t, "ack floor moves after the redelivery succeeded", func() bool {
		return consumerInfo(t, js, "crash").AckFloor.Stream == seq
	})
}

// Sequence is the real stream sequence, with the gaps other subjects leave.
func TestSequenceIsStreamSequence(t *testing.T) {
	t.Parallel()
	js := startJS(t)
	sub := newSubscriber(t, js, wmjs.Config{Stream: testStream, Durable: "seq", FilterSubjects: []string{"test.c.*"}})
	var want []uint64
	for i, subject := range []string{"test.c.1", "test.x.1", "test.c.2", "test.x.2", "test.x.3", "test.c.3"} {
		seq := publish(t, js, subject, "e"+strconv.Itoa(i), nil)
		if subject[5] == 'c' {
			want = append(want, seq)
		}
	}
	ch, err := sub.Subscribe(context.Background(), testStream)
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	for range want {
		m := receive(t, ch)
		got = append(got, seqOf(t, m))
		m.Ack()
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("sequences (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]uint64{1, 3, 6}, got); diff != "" {
		t.Fatalf("sequences are not the stream's (-want +got):\n%s", diff)
	}
}

// Recorded rebuilds the same envelope eventstore reads from the stream.
func TestRecordedMatchesStoredEvent(t *testing.T) {
	t.Parallel()
	js := startJS(t)
	sub := newSubscriber(t, js, wmjs.Config{Stream: testStream, Durable: "recorded"})
	seq := publish(t, js, "test.r.R1.recorded", "ev-1", map[string]string{
		eventstore.HeaderCorrelationID: "corr-1",
		eventstore.HeaderCausationID:   "req-1",
		eventstore.HeaderActor:         "tester",
	})
	ch, err := sub.Subscribe(context.Background(), testStream)
	if err != nil {
		t.Fatal(err)
	}
	m := receive(t, ch)
	got, err := wmjs.Recorded(m)
	if err != nil {
		t.Fatal(err)
	}
	m.Ack()

	ctx := context.Background()
	st, err := js.Stream(ctx, testStream)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := st.GetMsg(ctx, seq)
	if err != nil {
		t.Fatal(err)
	}
	want, err := eventstore.FromMsg(testStream, raw.Sequence, raw.Subject, raw.Time, raw.Header, raw.Data)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("Recorded (-want +got):\n%s", diff)
	}
}

func TestSubscribeRejectsOtherTopic(t *testing.T) {
	t.Parallel()
	js := startJS(t)
	sub := newSubscriber(t, js, wmjs.Config{Stream: testStream, Durable: "topic"})
	if _, err := sub.Subscribe(context.Background(), "OTHER"); err == nil {
		t.Fatal("Subscribe to another stream succeeded")
	}
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Subscribe(context.Background(), testStream); !errors.Is(err, wmjs.ErrClosed) {
		t.Fatalf("Subscribe after Close: %v, want ErrClosed", err)
	}
}

func TestPositionOfForeignMessage(t *testing.T) {
	t.Parallel()
	m := message.NewMessage("x", nil)
	if _, err := wmjs.Sequence(m); !errors.Is(err, wmjs.ErrNoPosition) {
		t.Fatalf("Sequence: %v, want ErrNoPosition", err)
	}
	if _, err := wmjs.Recorded(m); !errors.Is(err, wmjs.ErrNoPosition) {
		t.Fatalf("Recorded: %v, want ErrNoPosition", err)
	}
}

// A replica that stops (its subscription ends) while a handler works on a
// message hands the message back at once (a Nak), so the replica that
// still runs takes it without waiting out AckWait: before, the durable
// (MaxAckPending 1) stalled for AckWait on every rolling restart.
func TestStoppingSubscriberHandsOverAtOnce(t *testing.T) {
	t.Parallel()
	js := startJS(t)
	cfg := wmjs.Config{Stream: testStream, Durable: "handover", AckWait: time.Minute}
	stopping := newSubscriber(t, js, cfg)
	stayCtx, stayCancel := context.WithCancel(context.Background())
	t.Cleanup(stayCancel)
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := stopping.Subscribe(ctx, testStream)
	if err != nil {
		t.Fatal(err)
	}
	seq := publish(t, js, "test.h.1.recorded", "e1", nil)
	m := receive(t, ch)
	if seqOf(t, m) != seq {
		t.Fatalf("got seq %d, want %d", seqOf(t, m), seq)
	}
	// The other replica subscribes; with e1 ack-pending it gets nothing.
	staying := newSubscriber(t, js, cfg)
	ch2, err := staying.Subscribe(stayCtx, testStream)
	if err != nil {
		t.Fatal(err)
	}
	cancel() // the first replica is told to stop mid-handler
	began := time.Now()
	select {
	case again := <-ch2:
		if again.UUID != "e1" || again.Metadata.Get(wmjs.MetaDelivered) != "2" {
			t.Fatalf("the staying replica got %s delivered %s, want e1 delivered 2", again.UUID, again.Metadata.Get(wmjs.MetaDelivered))
		}
		again.Ack()
		t.Logf("handed over in %v (AckWait %v)", time.Since(began).Round(time.Millisecond), cfg.AckWait)
	case <-time.After(10 * time.Second):
		t.Fatalf("the staying replica got nothing 10s after the other stopped mid-handler (AckWait %v)", cfg.AckWait)
	}
	if err := stopping.Close(); err != nil {
		t.Fatal(err)
	}
}
