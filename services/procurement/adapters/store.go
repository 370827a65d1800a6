// Package adapters connects procurement to JetStream (its own stream, and
// the ledger's for the farmers it may buy from) and to SQL (its read
// models).
package adapters

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/furrow/furrow/pkg/aggregate"
	"github.com/furrow/furrow/pkg/eventstore"

	"github.com/furrow/furrow/services/procurement/app"
	"github.com/furrow/furrow/services/procurement/domain"
)

// EventStore loads procurement's aggregates from the PROCUREMENT stream
// and appends their events. It keeps recently used programmes and orders in
// memory (see package aggregate): a programme takes a reservation for every
// order placed under it and an order an event for every delivery, and each
// command against them would otherwise replay them whole. Ad-hoc
// deliveries are written once and rarely read again, so they are not kept.
type EventStore struct {
	store    *eventstore.Store
	programs *aggregate.Loader[*domain.Program]
	orders   *aggregate.Loader[*domain.Order]
}

var _ app.Events = (*EventStore)(nil)

var (
	programKind = aggregate.Kind[*domain.Program]{
		Name: "programme", Stream: domain.Stream, Filter: domain.ProgramAggregate, New: domain.NewProgram,
		Snapshot: &aggregate.Schema[*domain.Program]{
			Version: domain.ProgramSnapshotVersion, Encode: domain.EncodeProgramSnapshot, Decode: domain.DecodeProgramSnapshot,
		},
	}
	orderKind = aggregate.Kind[*domain.Order]{
		Name: "order", Stream: domain.Stream, Filter: domain.OrderAggregate, New: domain.NewOrder,
		Snapshot: &aggregate.Schema[*domain.Order]{
			Version: domain.OrderSnapshotVersion, Encode: domain.EncodeOrderSnapshot, Decode: domain.DecodeOrderSnapshot,
		},
	}
)

// NewEventStore returns an EventStore over store that keeps recently used
// programmes and orders within aggregate's default bounds.
func NewEventStore(store *eventstore.Store) *EventStore {
	return NewEventStoreWith(store, aggregate.Options{})
}

// NewEventStoreWith returns an EventStore over store whose programme and
// order caches each keep within cache's bounds (MaxAggregates < 0: none),
// with snapshots in cache.Snapshots if set.
func NewEventStoreWith(store *eventstore.Store, cache aggregate.Options) *EventStore {
	return &EventStore{
		store:    store,
		programs: aggregate.NewLoader(store, programKind, cache),
		orders:   aggregate.NewLoader(store, orderKind, cache),
	}
}

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

// LoadProgram returns a programme as of its last event, reading only the
// events appended since it was last loaded; an unknown one comes back
// empty. The caller owns the results.
func (s *EventStore) LoadProgram(ctx context.Context, id string) (*domain.Program, *eventstore.Requests, error) {
	return s.programs.Load(ctx, id)
}

// LoadOrder returns an order with its deliveries as of its last event,
// reading only the events appended since it was last loaded; an unknown
// one comes back empty. The caller owns the results.
func (s *EventStore) LoadOrder(ctx context.Context, id string) (*domain.Order, *eventstore.Requests, error) {
	return s.orders.Load(ctx, id)
}

// CacheStats returns the programme and order caches' counters.
func (s *EventStore) CacheStats() (programs, orders aggregate.Stats) {
	return s.programs.Stats(), s.orders.Stats()
}

// LoadDelivery rebuilds an ad-hoc delivery; an unknown one comes back empty.
func (s *EventStore) LoadDelivery(ctx context.Context, id string) (*domain.Delivery, *eventstore.Requests, error) {
	d := domain.NewDelivery(id)
	seen, err := s.load(ctx, "delivery "+id, domain.DeliveryAggregate(id), d)
	return d, seen, err
}

// LoadDeliveries rebuilds many ad-hoc deliveries: one Lasts request per
// few hundred tells which have any event, and only those are loaded.
func (s *EventStore) LoadDeliveries(ctx context.Context, ids []string) ([]*domain.Delivery, []*eventstore.Requests, error) {
	filters := make([]string, len(ids))
	for i, id := range ids {
		filters[i] = domain.DeliveryAggregate(id)
	}
	lasts, err := s.store.Lasts(ctx, domain.Stream, filters)
	if err != nil {
		return nil, nil, fmt.Errorf("load %d deliveries: %w", len(ids), err)
	}
	exists := map[string]bool{}
	for _, r := range lasts {
		// procurement.delivery.<id>.<kind>
		if parts := strings.Split(r.Subject, "."); len(parts) == 4 {
			exists[parts[2]] = true
		}
	}
	ds := make([]*domain.Delivery, len(ids))
	seen := make([]*eventstore.Requests, len(ids))
	for i, id := range ids {
		if exists[id] {
			if ds[i], seen[i], err = s.LoadDelivery(ctx, id); err != nil {
				return nil, nil, err
			}
			continue
		}
		ds[i], seen[i] = domain.NewDelivery(id), eventstore.NewRequests(domain.Stream)
	}
	return ds, seen, nil
}

// Append writes changes as one atomic batch. The expectation is on expect's
// subjects, which must be those of the first change: JetStream checks a
// batch's expectation on its first message.
func (s *EventStore) Append(ctx context.Context, expect app.Aggregate, key, fingerprint string, md eventstore.Metadata, changes ...domain.Change) (eventstore.AppendResult, error) {
	req, err := request(app.Append{Expect: expect, Key: key, Fingerprint: fingerprint, Meta: md, Changes: changes})
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	res, err := s.store.Append(ctx, req)
	s.conflicted(expect, err)
	return res, err
}

// AppendMany makes each append as Append would, sharing atomic batches.
func (s *EventStore) AppendMany(ctx context.Context, appends []app.Append) []eventstore.AppendOutcome {
	out := make([]eventstore.AppendOutcome, len(appends))
	reqs := make([]eventstore.AppendRequest, 0, len(appends))
	at := make([]int, 0, len(appends)) // reqs[k] is appends[at[k]]
	for i, a := range appends {
		req, err := request(a)
		if err != nil {
			out[i].Err = err
			continue
		}
		reqs, at = append(reqs, req), append(at, i)
	}
	for k, o := range s.store.AppendMany(ctx, reqs) {
		out[at[k]] = o
		s.conflicted(appends[at[k]].Expect, o.Err)
	}
	return out
}

func request(a app.Append) (eventstore.AppendRequest, error) {
	evs := make([]eventstore.Event, len(a.Changes))
	for i, c := range a.Changes {
		ev, err := eventstore.NewEvent(c.Subject, c.Event, a.Meta)
		if err != nil {
			return eventstore.AppendRequest{}, err
		}
		evs[i] = ev
	}
	return eventstore.AppendRequest{
		Stream:         domain.Stream,
		Aggregate:      a.Expect.Filter(),
		Expect:         eventstore.ExpectVersion(a.Expect.Version()),
		IdempotencyKey: a.Key,
		Fingerprint:    a.Fingerprint,
		Events:         evs,
	}, nil
}

// conflicted tells the caches that an aggregate lost a race, so its next
// load reads the stream.
func (s *EventStore) conflicted(expect app.Aggregate, err error) {
	if !errors.Is(err, eventstore.ErrConflict) {
		return
	}
	switch agg := expect.(type) {
	case *domain.Program:
		s.programs.Conflicted(agg.ID(), agg.Version())
	case *domain.Order:
		s.orders.Conflicted(agg.ID(), agg.Version())
	}
}
