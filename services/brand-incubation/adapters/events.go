// Package adapters connects brand incubation to JetStream (its own
// stream, and the ledger's and procurement's for the farmers and
// deliveries it refers to) and to SQL (its read models).
package adapters

import (
	"context"
	"fmt"

	"github.com/furrow/furrow/pkg/eventstore"

	"github.com/furrow/furrow/services/brand-incubation/app"
	"github.com/furrow/furrow/services/brand-incubation/domain"
)

// Events loads brand incubation's aggregates from, and appends their
// events to, the BRAND stream.
type Events struct{ store *eventstore.Store }

var _ app.Events = (*Events)(nil)

// NewEvents returns the repository over store.
func NewEvents(store *eventstore.Store) *Events { return &Events{store: store} }

// Load implements app.Events: it folds every event of agg into it. An
// aggregate without events comes back empty (version 0).
func (e *Events) Load(ctx context.Context, agg domain.Aggregate) (*eventstore.Requests, error) {
	seen := eventstore.NewRequests(domain.Stream)
	evs, err := e.store.Load(ctx, domain.Stream, agg.Filter(), 0)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", agg.Filter(), err)
	}
	for _, ev := range evs {
		msg, err := eventstore.Decode(ev)
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", agg.Filter(), err)
		}
		agg.Apply(ev.Sequence, msg)
		seen.Record(ev)
	}
	return seen, nil
}

// Append implements app.Events: the changes are one atomic batch,
// appended only if agg is still at the version it was loaded at, and every
// other aggregate a change names (Change.Aggregate) too.
func (e *Events) Append(ctx context.Context, agg domain.Aggregate, key, fingerprint string, md eventstore.Metadata, changes ...domain.Change) (eventstore.AppendResult, error) {
	evs := make([]eventstore.Event, len(changes))
	for i, c := range changes {
		owner := agg
		if c.Aggregate != nil {
			owner = c.Aggregate
		}
		ev, err := eventstore.NewEvent(owner.Subject(c.Kind), c.Event, md)
		if err != nil {
			return eventstore.AppendResult{}, err
		}
		if c.Aggregate != nil {
			if i == 0 {
				return eventstore.AppendResult{}, fmt.Errorf("append to %s: the first event must be the aggregate's own", agg.Filter())
			}
			ev.Guard = &eventstore.Guard{Filter: c.Aggregate.Filter(), Version: c.Aggregate.Version()}
		}
		evs[i] = ev
	}
	return e.store.Append(ctx, eventstore.AppendRequest{
		Stream: domain.Stream, Aggregate: agg.Filter(), Expect: eventstore.ExpectVersion(agg.Version()),
		IdempotencyKey: key, Fingerprint: fingerprint, Events: evs,
	})
}

// Version implements app.Events.
func (e *Events) Version(ctx context.Context, filter string) (uint64, error) {
	return e.store.Version(ctx, domain.Stream, filter)
}

// Head implements app.Events.
func (e *Events) Head(ctx context.Context) (uint64, error) {
	return streamHead(ctx, e.store, domain.Stream)
}

// streamHead returns a stream's last sequence, asking the server.
func streamHead(ctx context.Context, store *eventstore.Store, stream string) (uint64, error) {
	s, err := store.JetStream().Stream(ctx, stream)
	if err != nil {
		return 0, fmt.Errorf("head of %s: %w", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("head of %s: %w", stream, err)
	}
	return info.State.LastSeq, nil
}

// LedgerFarmers answers whether a farmer is registered by looking for the
// registration event in the ledger's stream: the ledger's events are its
// public contract, and the stream is always current, unlike a projection.
type LedgerFarmers struct{ store *eventstore.Store }

var _ app.Farmers = (*LedgerFarmers)(nil)

// NewLedgerFarmers returns a directory over store.
func NewLedgerFarmers(store *eventstore.Store) *LedgerFarmers { return &LedgerFarmers{store: store} }

// Registered implements app.Farmers.
func (l *LedgerFarmers) Registered(ctx context.Context, farmerID string) (bool, error) {
	v, err := l.store.Version(ctx, "LEDGER", "ledger.farmer."+farmerID+".farmer_registered")
	if err != nil {
		return false, fmt.Errorf("is farmer %s registered: %w", farmerID, err)
	}
	return v > 0, nil
}
