package eventstore

import (
	"context"
	"fmt"
	"time"
)

// reflectingWaits is how long Reflecting waits before each load: about
// three seconds in all, far longer than a healthy follower lags. A table,
// not a backoff library: the first look is immediate and the steps are
// hand-picked, which a written-out schedule says more plainly.
var reflectingWaits = []time.Duration{0, 10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, 1600 * time.Millisecond}

// Reflecting calls load, which loads an aggregate afresh and returns its
// version, until that version is at least version.
//
// Loads are direct gets, which any replica of a replicated stream may
// answer, and a replica that lags the leader answers with what it holds.
// A caller that knows an event of the aggregate was written at version
// (the earlier append an idempotent retry found, on another replica or
// in the server's duplicate window) and builds its answer from a new load
// must not answer from a replica that does not hold it yet: a retried
// sales report would come back without its lines. Reflecting waits such a
// replica out for a moment and then fails with ErrReplicaLag, which the
// gRPC layer reports as UNAVAILABLE (retry with the same request id).
func Reflecting(ctx context.Context, version uint64, load func(context.Context) (uint64, error)) error {
	var got uint64
	for _, wait := range reflectingWaits {
		if !sleepCtx(ctx, wait) {
			return ctx.Err()
		}
		v, err := load(ctx)
		if err != nil {
			return err
		}
		if v >= version {
			return nil
		}
		got = v
	}
	return fmt.Errorf("%w: loaded version %d, want at least %d", ErrReplicaLag, got, version)
}
