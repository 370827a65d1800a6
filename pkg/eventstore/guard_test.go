package eventstore_test

import (
	"context"
	"errors"
	"testing"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/natstest"
)

// TestGuardChecksASecondAggregate: an append to aggregate A whose batch
// also writes to aggregate B with a Guard on B lands only while B is at
// the guarded version; once B moved, the whole batch is refused
// (ErrConflict) and nothing of it is stored.
func TestGuardChecksASecondAggregate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, natstest.Embedded(t), 0)
	guarded := func(key string, aVersion, bVersion uint64) eventstore.AppendRequest {
		b := ev(e.subj("b.B1.claimed"), key)
		b.Guard = &eventstore.Guard{Filter: e.subj("b.B1.>"), Version: bVersion}
		return eventstore.AppendRequest{Stream: e.stream, Aggregate: e.subj("a.A1.>"), Expect: eventstore.ExpectVersion(aVersion),
			IdempotencyKey: key, Fingerprint: key, Events: []eventstore.Event{ev(e.subj("a.A1.x"), key), b}}
	}
	if _, err := e.s.Append(ctx, guarded("k1", 0, 0)); err != nil {
		t.Fatal(err)
	}
	// A second command that read B before k1's claim: A is where it read
	// it (another aggregate A2), but B moved.
	stale := guarded("k2", 0, 0)
	stale.Aggregate, stale.Events[0].Subject = e.subj("a.A2.>"), e.subj("a.A2.x")
	if _, err := e.s.Append(ctx, stale); !errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("append with a stale guard: %v, want ErrConflict", err)
	}
	if v, err := e.s.Version(ctx, e.stream, e.subj("a.A2.>")); err != nil || v != 0 {
		t.Fatalf("A2 after the refused batch: version %d, %v; want nothing stored", v, err)
	}
	fresh := guarded("k3", 0, 2)
	fresh.Aggregate, fresh.Events[0].Subject = e.subj("a.A2.>"), e.subj("a.A2.x")
	if _, err := e.s.Append(ctx, fresh); err != nil {
		t.Fatalf("append with a current guard: %v", err)
	}
}
