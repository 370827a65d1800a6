// Package adapters connects procurement to JetStream (its own stream, and
// the ledger's for the farmers it may buy from) and to SQL (its read
// models).
package adapters

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/furrow/furrow/pkg/eventstore"

	"github.com/furrow/furrow/services/procurement/app"
	"github.com/furrow/furrow/services/procurement/domain"
)

// EventStore loads procurement's aggregates from the PROCUREMENT stream
// and appends their events.
type EventStore struct{ store *eventstore.Store }

var _ app.Events = (*EventStore)(nil)

// NewEventStore returns an EventStore over store.
func NewEventStore(store *eventstore.Store) *EventStore { return &EventStore{store: store} }

// applier is an aggregate that folds its events.
type applier interface {
	Apply(seq uint64, ev proto.Message)
}

// load replays every event under filter into agg and returns the
// idempotency keys seen.
func (s *EventStore) load(ctx context.Context, what, filter string, agg applier) (*eventstore.Requests, error) {
	seen := eventstore.NewRequests(domain.Stream)
	evs, err := s.store.Load(ctx, domain.Stream, filter, 0)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", what, err)
	}
	for _, ev := range evs {
		msg, err := eventstore.Decode(ev)
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", what, err)
		}
		agg.Apply(ev.Sequence, msg)
		seen.Record(ev)
	}
	return seen, nil
}

// LoadProgram rebuilds a programme; an unknown one comes back empty.
func (s *EventStore) LoadProgram(ctx context.Context, id string) (*domain.Program, *eventstore.Requests, error) {
	p := domain.NewProgram(id)
	seen, err := s.load(ctx, "programme "+id, domain.ProgramAggregate(id), p)
	return p, seen, err
}

// LoadOrder rebuilds an order with its deliveries; an unknown one comes
// back empty.
func (s *EventStore) LoadOrder(ctx context.Context, id string) (*domain.Order, *eventstore.Requests, error) {
	o := domain.NewOrder(id)
	seen, err := s.load(ctx, "order "+id, domain.OrderAggregate(id), o)
	return o, seen, err
}

// LoadDelivery rebuilds an ad-hoc delivery; an unknown one comes back empty.
func (s *EventStore) LoadDelivery(ctx context.Context, id string) (*domain.Delivery, *eventstore.Requests, error) {
	d := domain.NewDelivery(id)
	seen, err := s.load(ctx, "delivery "+id, domain.DeliveryAggregate(id), d)
	return d, seen, err
}

// Append writes changes as one atomic batch. The expectation is on expect's
// subjects, which must be those of the first change: JetStream checks a
// batch's expectation on its first message.
func (s *EventStore) Append(ctx context.Context, expect app.Aggregate, key, fingerprint string, md eventstore.Metadata, changes ...domain.Change) (eventstore.AppendResult, error) {
	evs := make([]eventstore.Event, len(changes))
	for i, c := range changes {
		ev, err := eventstore.NewEvent(c.Subject, c.Event, md)
		if err != nil {
			return eventstore.AppendResult{}, err
		}
		evs[i] = ev
	}
	return s.store.Append(ctx, eventstore.AppendRequest{
		Stream:         domain.Stream,
		Aggregate:      expect.Filter(),
		Expect:         eventstore.ExpectVersion(expect.Version()),
		IdempotencyKey: key,
		Fingerprint:    fingerprint,
		Events:         evs,
	})
}
