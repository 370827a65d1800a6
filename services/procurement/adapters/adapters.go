// Package adapters connects procurement to JetStream: its own stream, and
// the ledger's stream for the farmers it may buy from.
package adapters

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/furrow/furrow/pkg/eventstore"

	"github.com/furrow/furrow/services/procurement/domain"
)

// DeliveryRepository loads and appends delivery aggregates.
type DeliveryRepository struct{ store *eventstore.Store }

// NewDeliveryRepository returns a repository over store.
func NewDeliveryRepository(store *eventstore.Store) *DeliveryRepository {
	return &DeliveryRepository{store: store}
}

// Load rebuilds a delivery from its events, with the idempotency keys seen.
func (r *DeliveryRepository) Load(ctx context.Context, id string) (*domain.Delivery, *eventstore.Requests, error) {
	d := domain.NewDelivery(id)
	seen := eventstore.NewRequests(domain.Stream)
	evs, err := r.store.Load(ctx, domain.Stream, domain.DeliveryAggregate(id), 0)
	if err != nil {
		return nil, nil, fmt.Errorf("load delivery %s: %w", id, err)
	}
	for _, ev := range evs {
		msg, err := eventstore.Decode(ev)
		if err != nil {
			return nil, nil, fmt.Errorf("load delivery %s: %w", id, err)
		}
		d.Apply(ev.Sequence, msg)
		seen.Record(ev)
	}
	return d, seen, nil
}

// Append writes an event of the given kind to d, expecting d unchanged.
func (r *DeliveryRepository) Append(ctx context.Context, d *domain.Delivery, kind string, ev proto.Message, key, fingerprint string, md eventstore.Metadata) (eventstore.AppendResult, error) {
	e, err := eventstore.NewEvent(domain.DeliverySubject(d.ID(), kind), ev, md)
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	return r.store.Append(ctx, eventstore.AppendRequest{
		Stream: domain.Stream, Aggregate: domain.DeliveryAggregate(d.ID()),
		Expect: eventstore.ExpectVersion(d.Version()), IdempotencyKey: key, Fingerprint: fingerprint,
		Events: []eventstore.Event{e},
	})
}

// LedgerFarmers answers whether a farmer is registered by looking for the
// registration event in the ledger's stream: the ledger's events are its
// public contract, and the stream is always current, unlike a projection.
type LedgerFarmers struct{ store *eventstore.Store }

// NewLedgerFarmers returns a directory over store.
func NewLedgerFarmers(store *eventstore.Store) *LedgerFarmers { return &LedgerFarmers{store: store} }

// Known reports whether farmerID has been registered.
func (l *LedgerFarmers) Known(ctx context.Context, farmerID string) (bool, error) {
	v, err := l.store.Version(ctx, "LEDGER", "ledger.farmer."+farmerID+".farmer_registered")
	if err != nil {
		return false, fmt.Errorf("is farmer %s registered: %w", farmerID, err)
	}
	return v > 0, nil
}
