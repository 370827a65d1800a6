// Package adapters connects the farmer ledger to JetStream (its event
// stream), SQL (its read models) and a payment provider (a deterministic
// simulator for development and tests).
package adapters

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/furrow/furrow/pkg/aggregate"
	"github.com/furrow/furrow/pkg/eventstore"

	"github.com/furrow/furrow/services/farmer-ledger/app"
	"github.com/furrow/furrow/services/farmer-ledger/domain"
)

// FarmerRepository loads farmer aggregates from, and appends their events
// to, the LEDGER stream. It keeps recently used farmers in memory (see
// package aggregate): a farmer takes an entry for every delivery, premium
// and payout, and rebuilding one from all its events on every posting
// would cost the square of its history.
type FarmerRepository struct {
	store   *eventstore.Store
	farmers *aggregate.Loader[*domain.Farmer]
}

var _ app.Farmers = (*FarmerRepository)(nil)

// farmerKind says where a farmer's events are.
var farmerKind = aggregate.Kind[*domain.Farmer]{
	Name: "farmer", Stream: domain.Stream, Filter: domain.FarmerAggregate, New: domain.NewFarmer,
	Snapshot: &aggregate.Schema[*domain.Farmer]{
		Version: domain.FarmerSnapshotVersion, Encode: domain.EncodeFarmerSnapshot, Decode: domain.DecodeFarmerSnapshot,
	},
}

// NewFarmerRepository returns a repository over store that keeps recently
// used farmers within aggregate's default bounds.
func NewFarmerRepository(store *eventstore.Store) *FarmerRepository {
	return NewFarmerRepositoryWith(store, aggregate.Options{})
}

// NewFarmerRepositoryWith returns a repository over store that keeps
// recently used farmers within cache's bounds (MaxAggregates < 0: none),
// and snapshots of farmers in cache.Snapshots if set.
func NewFarmerRepositoryWith(store *eventstore.Store, cache aggregate.Options) *FarmerRepository {
	return &FarmerRepository{store: store, farmers: aggregate.NewLoader(store, farmerKind, cache)}
}

// Load returns a farmer as of its last event, reading only the events
// appended since the farmer was last loaded; an unknown farmer comes back
// empty (not registered, version 0). The returned Requests hold the
// idempotency keys of the farmer's events. The caller owns both.
func (r *FarmerRepository) Load(ctx context.Context, farmerID string) (*domain.Farmer, *eventstore.Requests, error) {
	return r.farmers.Load(ctx, farmerID)
}

// CacheStats returns the farmer cache's counters.
func (r *FarmerRepository) CacheStats() aggregate.Stats { return r.farmers.Stats() }

// Append writes changes to f, expecting f to be unchanged since it was
// loaded. key and fingerprint make the append idempotent.
func (r *FarmerRepository) Append(ctx context.Context, f *domain.Farmer, key, fingerprint string, md eventstore.Metadata, changes ...domain.Change) (eventstore.AppendResult, error) {
	evs := make([]eventstore.Event, len(changes))
	for i, c := range changes {
		ev, err := eventstore.NewEvent(domain.FarmerSubject(f.ID(), c.Kind), c.Event, md)
		if err != nil {
			return eventstore.AppendResult{}, err
		}
		ev.ID = c.ID // empty: the store derives it from the idempotency key
		evs[i] = ev
	}
	res, err := r.store.Append(ctx, eventstore.AppendRequest{
		Stream:         domain.Stream,
		Aggregate:      domain.FarmerAggregate(f.ID()),
		Expect:         eventstore.ExpectVersion(f.Version()),
		IdempotencyKey: key,
		Fingerprint:    fingerprint,
		Events:         evs,
	})
	if busy(err) {
		return res, fmt.Errorf("%w: %w", app.ErrBusy, err)
	}
	if errors.Is(err, eventstore.ErrConflict) {
		r.farmers.Conflicted(f.ID(), f.Version())
	}
	return res, err
}

// errCodeTooManyInflight is JetStream's answer when a stream already has
// as many atomic batches in flight as it allows: back-pressure, nothing
// was written.
const errCodeTooManyInflight jetstream.ErrorCode = 10210

// busy reports whether err is back-pressure from the server, which the
// caller may retry after a pause.
func busy(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeTooManyInflight
}
