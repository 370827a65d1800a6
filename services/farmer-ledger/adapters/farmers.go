// Package adapters connects the farmer ledger to JetStream (its event
// stream), SQL (its read models) and a payment provider (a deterministic
// simulator for development and tests).
package adapters

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/furrow/furrow/pkg/eventstore"

	"github.com/furrow/furrow/services/farmer-ledger/app"
	"github.com/furrow/furrow/services/farmer-ledger/domain"
)

// FarmerRepository loads farmer aggregates from, and appends their events
// to, the LEDGER stream.
type FarmerRepository struct {
	store *eventstore.Store
}

// NewFarmerRepository returns a repository over store.
func NewFarmerRepository(store *eventstore.Store) *FarmerRepository {
	return &FarmerRepository{store: store}
}

// Load rebuilds a farmer from all its events; an unknown farmer comes back
// empty (not registered, version 0).
// The returned Requests hold the idempotency keys of the farmer's events.
func (r *FarmerRepository) Load(ctx context.Context, farmerID string) (*domain.Farmer, *eventstore.Requests, error) {
	f := domain.NewFarmer(farmerID)
	seen := eventstore.NewRequests(domain.Stream)
	evs, err := r.store.Load(ctx, domain.Stream, domain.FarmerAggregate(farmerID), 0)
	if err != nil {
		return nil, nil, fmt.Errorf("load farmer %s: %w", farmerID, err)
	}
	for _, ev := range evs {
		msg, err := eventstore.Decode(ev)
		if err != nil {
			return nil, nil, fmt.Errorf("load farmer %s: %w", farmerID, err)
		}
		f.Apply(ev.Sequence, msg)
		seen.Record(ev)
	}
	return f, seen, nil
}

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
