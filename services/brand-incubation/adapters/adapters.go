// Package adapters connects brand incubation to JetStream.
package adapters

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/furrow/furrow/pkg/eventstore"

	"github.com/furrow/furrow/services/brand-incubation/domain"
)

// BrandRepository loads and appends brand aggregates.
type BrandRepository struct{ store *eventstore.Store }

// NewBrandRepository returns a repository over store.
func NewBrandRepository(store *eventstore.Store) *BrandRepository {
	return &BrandRepository{store: store}
}

// Load rebuilds a brand from its events, with the idempotency keys seen.
func (r *BrandRepository) Load(ctx context.Context, id string) (*domain.Brand, *eventstore.Requests, error) {
	b := domain.NewBrand(id)
	seen := eventstore.NewRequests(domain.Stream)
	evs, err := r.store.Load(ctx, domain.Stream, domain.BrandAggregate(id), 0)
	if err != nil {
		return nil, nil, fmt.Errorf("load brand %s: %w", id, err)
	}
	for _, ev := range evs {
		msg, err := eventstore.Decode(ev)
		if err != nil {
			return nil, nil, fmt.Errorf("load brand %s: %w", id, err)
		}
		b.Apply(ev.Sequence, msg)
		seen.Record(ev)
	}
	return b, seen, nil
}

// Append writes an event of the given kind to b, expecting b unchanged.
func (r *BrandRepository) Append(ctx context.Context, b *domain.Brand, kind string, ev proto.Message, key, fingerprint string, md eventstore.Metadata) (eventstore.AppendResult, error) {
	e, err := eventstore.NewEvent(domain.BrandSubject(b.ID(), kind), ev, md)
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	return r.store.Append(ctx, eventstore.AppendRequest{
		Stream: domain.Stream, Aggregate: domain.BrandAggregate(b.ID()),
		Expect: eventstore.ExpectVersion(b.Version()), IdempotencyKey: key, Fingerprint: fingerprint,
		Events: []eventstore.Event{e},
	})
}
