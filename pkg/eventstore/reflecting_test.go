package eventstore_test

import (
	"context"
	"errors"
	"testing"

	"github.com/furrow/furrow/pkg/eventstore"
)

func TestReflectingWaitsForALaggingReplica(t *testing.T) {
	ctx := context.Background()
	// A replica that catches up on the third load.
	loads := 0
	err := eventstore.Reflecting(ctx, 7, func(context.Context) (uint64, error) {
		loads++
		return map[bool]uint64{true: 7, false: 3}[loads >= 3], nil
	})
	if err != nil || loads != 3 {
		t.Errorf("catching up on the third load: %v after %d loads, want nil after 3", err, loads)
	}
	// One that never does: ErrReplicaLag, after a few seconds at most.
	loads = 0
	err = eventstore.Reflecting(ctx, 7, func(context.Context) (uint64, error) { loads++; return 6, nil })
	if !errors.Is(err, eventstore.ErrReplicaLag) || loads < 5 {
		t.Errorf("never catching up: %v after %d loads, want ErrReplicaLag after several", err, loads)
	}
	// A failed load is the answer.
	boom := errors.New("boom")
	if err := eventstore.Reflecting(ctx, 7, func(context.Context) (uint64, error) { return 0, boom }); !errors.Is(err, boom) {
		t.Errorf("failed load: %v, want boom", err)
	}
	// A cancelled context stops the wait.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := eventstore.Reflecting(cctx, 7, func(context.Context) (uint64, error) { return 0, nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v, want context.Canceled", err)
	}
}
