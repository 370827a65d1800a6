// Package adapters connects brand incubation to JetStream (its own
// stream, and the ledger's and procurement's for the farmers and
// deliveries it refers to) and to SQL (its read models).
package adapters

import (
	"context"
	"errors"
	"fmt"

	"github.com/furrow/furrow/pkg/aggregate"
	"github.com/furrow/furrow/pkg/eventstore"

	"github.com/furrow/furrow/services/brand-incubation/app"
	"github.com/furrow/furrow/services/brand-incubation/domain"
)

// Events loads brand incubation's aggregates from, and appends their
// events to, the BRAND stream. It keeps recently used aggregates of every
// kind in memory (package aggregate), as the ledger keeps its farmers and
// procurement its programmes and orders: a load reads only the events
// appended since the aggregate was last loaded. The cache is never the
// guarantee: appends still expect the version the decision was made on.
type Events struct {
	store      *eventstore.Store
	brands     *aggregate.Loader[*domain.Brand]
	channels   *aggregate.Loader[*domain.Channel]
	enrolments *aggregate.Loader[*domain.Enrolment]
	ruleSets   *aggregate.Loader[*domain.RuleSet]
	reports    *aggregate.Loader[*domain.Report]
	lots       *aggregate.Loader[*domain.Lot]
}

var _ app.Events = (*Events)(nil)

// NewEvents returns the repository over store, with aggregate's default
// cache bounds per kind.
func NewEvents(store *eventstore.Store) *Events { return NewEventsWith(store, aggregate.Options{}) }

// NewEventsWith returns the repository over store whose cache of each kind
// of aggregate is bounded by cache (MaxAggregates < 0: no cache).
func NewEventsWith(store *eventstore.Store, cache aggregate.Options) *Events {
	return &Events{
		store: store,
		brands: aggregate.NewLoader(store, aggregate.Kind[*domain.Brand]{
			Name: "brand", Stream: domain.Stream, Filter: domain.BrandAggregate, New: domain.NewBrand}, cache),
		channels: aggregate.NewLoader(store, aggregate.Kind[*domain.Channel]{
			Name: "channel", Stream: domain.Stream, Filter: domain.ChannelAggregate, New: domain.NewChannel}, cache),
		enrolments: aggregate.NewLoader(store, aggregate.Kind[*domain.Enrolment]{
			Name: "enrolment", Stream: domain.Stream, Filter: domain.EnrolmentAggregate, New: domain.NewEnrolmentByID}, cache),
		ruleSets: aggregate.NewLoader(store, aggregate.Kind[*domain.RuleSet]{
			Name: "rule set", Stream: domain.Stream, Filter: domain.RuleSetAggregateByID, New: domain.NewRuleSetByID}, cache),
		reports: aggregate.NewLoader(store, aggregate.Kind[*domain.Report]{
			Name: "report", Stream: domain.Stream, Filter: domain.ReportAggregate, New: domain.NewReport}, cache),
		lots: aggregate.NewLoader(store, aggregate.Kind[*domain.Lot]{
			Name: "lot", Stream: domain.Stream, Filter: domain.LotAggregate, New: domain.NewLot}, cache),
	}
}

// CacheStats returns the counters of each kind's cache, by kind name.
func (e *Events) CacheStats() map[string]aggregate.Stats {
	return map[string]aggregate.Stats{
		"brand": e.brands.Stats(), "channel": e.channels.Stats(), "enrolment": e.enrolments.Stats(),
		"rule set": e.ruleSets.Stats(), "report": e.reports.Stats(), "lot": e.lots.Stats(),
	}
}

// Load implements app.Events. An aggregate of a kind the cache knows is
// filled from it (a private copy, brought up to the stream's last event);
// any other (a wrapper that records the events it is given) folds every
// event of the aggregate. An aggregate without events comes back empty
// (version 0).
func (e *Events) Load(ctx context.Context, agg domain.Aggregate) (*eventstore.Requests, error) {
	var (
		seen *eventstore.Requests
		err  error
	)
	switch a := agg.(type) {
	case *domain.Brand:
		seen, err = fill(ctx, e.brands, a.ID(), a)
	case *domain.Channel:
		seen, err = fill(ctx, e.channels, a.ID(), a)
	case *domain.Enrolment:
		seen, err = fill(ctx, e.enrolments, a.ID(), a)
	case *domain.RuleSet:
		seen, err = fill(ctx, e.ruleSets, a.ID(), a)
	case *domain.Report:
		seen, err = fill(ctx, e.reports, a.ID(), a)
	case *domain.Lot:
		seen, err = fill(ctx, e.lots, a.ID(), a)
	default:
		return e.loadAll(ctx, agg)
	}
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", agg.Filter(), err)
	}
	return seen, nil
}

// fill loads aggregate id through l and copies it into dst, which must be
// empty: the loaded aggregate is the caller's own copy, so dst may take
// its state as it is.
func fill[A interface {
	aggregate.Root[A]
	*T
}, T any](ctx context.Context, l *aggregate.Loader[A], id string, dst A) (*eventstore.Requests, error) {
	got, seen, err := l.Load(ctx, id)
	if err != nil {
		return nil, err
	}
	*dst = *got
	return seen, nil
}

// conflicted tells the cache of agg's kind that an append expecting
// agg's version was refused.
func (e *Events) conflicted(agg domain.Aggregate) {
	switch a := agg.(type) {
	case *domain.Brand:
		e.brands.Conflicted(a.ID(), a.Version())
	case *domain.Channel:
		e.channels.Conflicted(a.ID(), a.Version())
	case *domain.Enrolment:
		e.enrolments.Conflicted(a.ID(), a.Version())
	case *domain.RuleSet:
		e.ruleSets.Conflicted(a.ID(), a.Version())
	case *domain.Report:
		e.reports.Conflicted(a.ID(), a.Version())
	case *domain.Lot:
		e.lots.Conflicted(a.ID(), a.Version())
	}
}

// loadAll folds every event of agg into it.
func (e *Events) loadAll(ctx context.Context, agg domain.Aggregate) (*eventstore.Requests, error) {
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
	res, err := e.store.Append(ctx, eventstore.AppendRequest{
		Stream: domain.Stream, Aggregate: agg.Filter(), Expect: eventstore.ExpectVersion(agg.Version()),
		IdempotencyKey: key, Fingerprint: fingerprint, Events: evs,
	})
	if errors.Is(err, eventstore.ErrConflict) {
		// The aggregate, or a lot the batch guards, moved on.
		e.conflicted(agg)
		for _, c := range changes {
			if c.Aggregate != nil {
				e.conflicted(c.Aggregate)
			}
		}
	}
	return res, err
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
