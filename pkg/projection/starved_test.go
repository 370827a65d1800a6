package projection_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/furrow/furrow/pkg/projection"
)

// TestConsumerThatStopsDeliveringIsRecreated: the server side of a
// copy's consumer stops delivering (as when the node holding it dies or
// is cut off, which the fault test on a cluster hit) while the stream
// holds events for the copy. The client notices nothing; before the
// worker checked, the copy looked alive and stayed at its checkpoint for
// good, and reads waiting for a later position timed out. Now it
// recreates the consumer from its stored checkpoint and catches up.
func TestConsumerThatStopsDeliveringIsRecreated(t *testing.T) {
	js := startJetStream(t, true)
	db := openDB(t, sqliteStore)
	r := newRunner(t, db, js, newCounter("starved"), projection.Options{StallAfter: 600 * time.Millisecond})
	start(t, r)
	first := appendEvents(t, js, "test.a.1")
	waitFor(t, r, first[0])

	// Pause the copy's consumer on the server for an hour: it keeps its
	// heartbeats, so the client library sees a healthy consumer.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, testStream)
	if err != nil {
		t.Fatal(err)
	}
	paused := 0
	for name := range st.ConsumerNames(ctx).Name() {
		if _, err := js.PauseConsumer(ctx, testStream, name, time.Now().Add(time.Hour)); err != nil {
			t.Fatalf("pause consumer %s: %v", name, err)
		}
		paused++
	}
	if paused == 0 {
		t.Fatal("the runner has no consumer on the stream to pause")
	}

	later := appendEvents(t, js, "test.a.2", "test.a.3")
	wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer wcancel()
	if err := r.WaitFor(wctx, later[1]); err != nil {
		t.Fatalf("the copy never moved past its starved consumer: %v (at %d)", err, r.Checkpoint())
	}
	if diff := cmp.Diff(once(first[0], later[0], later[1]), applied(t, db, "starved")); diff != "" {
		t.Fatalf("applied (-want +got):\n%s", diff)
	}
}
