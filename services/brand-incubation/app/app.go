// Package app holds brand incubation's command and query handlers and its
// reactions: it loads aggregates, asks the domain to decide, and appends
// the outcome under optimistic concurrency.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/ident"

	"github.com/furrow/furrow/services/brand-incubation/domain"
)

// Events loads aggregates from, and appends their events to, the BRAND
// stream.
type Events interface {
	// Load folds all of agg's events into it and returns the idempotency
	// keys they were written under.
	Load(ctx context.Context, agg domain.Aggregate) (*eventstore.Requests, error)
	// Append writes changes to agg, expecting agg.Version() to be current.
	Append(ctx context.Context, agg domain.Aggregate, key, fingerprint string, md eventstore.Metadata, changes ...domain.Change) (eventstore.AppendResult, error)
	// Version returns the sequence of the last event on filter (0: none).
	Version(ctx context.Context, filter string) (uint64, error)
	// Head returns the stream's last sequence.
	Head(ctx context.Context) (uint64, error)
}

// Farmers says whether a farmer is registered with the ledger.
type Farmers interface {
	Registered(ctx context.Context, farmerID string) (bool, error)
}

// Deliveries finds a procurement delivery (a lot): its farmer and the
// grams it delivered, as corrected.
type Deliveries interface {
	Lot(ctx context.Context, deliveryID string) (Lot, bool, error)
}

// Lot is what brand incubation knows of a delivered lot.
type Lot struct {
	DeliveryID string
	FarmerID   string
	Product    string
	// Grams delivered, as the latest correction left them.
	Grams int64
}

// Positions waits until a read model reflects a position.
type Positions interface {
	WaitFor(ctx context.Context, pos eventstore.Position) (eventstore.Position, error)
}

// maxConflictRetries bounds how often a command reloads and decides again
// after losing an optimistic-concurrency race.
const maxConflictRetries = 8

// Deps are the ports the application service uses.
type Deps struct {
	Events     Events
	Farmers    Farmers
	Deliveries Deliveries
	Catalog    Catalog
	Premiums   Premiums
	// CatalogAt and PremiumsAt wait for the two read models.
	CatalogAt  Positions
	PremiumsAt Positions
	Log        *slog.Logger
	// Now is the clock (default time.Now): "today" in CST for defaulted
	// dates, and the bound on sold_at.
	Now func() time.Time
}

// Incubator is brand incubation's application service.
type Incubator struct {
	events     Events
	farmers    Farmers
	deliveries Deliveries
	catalog    Catalog
	premiums   Premiums
	catalogAt  Positions
	premiumsAt Positions
	log        *slog.Logger
	now        func() time.Time
}

// New returns the application service.
func New(d Deps) *Incubator {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Log == nil {
		d.Log = slog.Default()
	}
	return &Incubator{
		events: d.Events, farmers: d.Farmers, deliveries: d.Deliveries,
		catalog: d.Catalog, premiums: d.Premiums, catalogAt: d.CatalogAt, premiumsAt: d.PremiumsAt,
		log: d.Log, now: d.Now,
	}
}

func (i *Incubator) today() domain.Date { return domain.DateOf(i.now()) }

// execute runs a command against one aggregate: it loads the aggregate,
// recognises a retry of the same request (returning the first result, or
// ErrIdempotencyMismatch for the same key with other content), asks decide
// for the events and appends them expecting the version it loaded. When a
// concurrent command wins the race it reloads and decides again: decide
// must reload whatever else it depends on. No events means nothing to do;
// the result then names the aggregate's current version.
func execute[A domain.Aggregate](ctx context.Context, i *Incubator, fresh func() A, key, fingerprint string, md eventstore.Metadata,
	decide func(A) ([]domain.Change, error)) (A, eventstore.AppendResult, error) {
	for attempt := 0; ; attempt++ {
		agg := fresh()
		seen, err := i.events.Load(ctx, agg)
		if err != nil {
			return agg, eventstore.AppendResult{}, err
		}
		if res, ok, err := seen.Check(key, fingerprint); ok || err != nil {
			return agg, res, err
		}
		changes, err := decide(agg)
		if err != nil {
			return agg, eventstore.AppendResult{}, err
		}
		if len(changes) == 0 {
			return agg, eventstore.AppendResult{Stream: domain.Stream, Last: agg.Version()}, nil
		}
		res, err := i.events.Append(ctx, agg, key, fingerprint, md, changes...)
		if errors.Is(err, eventstore.ErrConflict) {
			if attempt < maxConflictRetries {
				i.log.DebugContext(ctx, "append lost a race; deciding again", "aggregate", agg.Filter(), "attempt", attempt)
				continue
			}
			return agg, eventstore.AppendResult{}, failure.Conflict(err)
		}
		return agg, res, err
	}
}

// checkCommand validates the request id and the ids a command names.
func checkCommand(requestID string, idPairs ...string) error {
	if err := ident.CheckRequestID(requestID); err != nil {
		return err
	}
	return checkIDs(idPairs...)
}

// load loads agg, for queries.
func (i *Incubator) load(ctx context.Context, agg domain.Aggregate) error {
	if _, err := i.events.Load(ctx, agg); err != nil {
		return fmt.Errorf("load %s: %w", agg.Filter(), err)
	}
	return nil
}

// position is a position in the BRAND stream.
func position(seq uint64) eventstore.Position {
	return eventstore.Position{Stream: domain.Stream, Sequence: seq}
}

// checkIDs validates ids given as field/value pairs.
func checkIDs(pairs ...string) error {
	for k := 0; k+1 < len(pairs); k += 2 {
		if err := ident.Check(pairs[k], pairs[k+1]); err != nil {
			return err
		}
	}
	return nil
}
