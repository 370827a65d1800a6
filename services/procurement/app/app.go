// Package app holds procurement's command and query handlers: it loads
// aggregates, asks the domain to decide, and appends the outcome, retrying
// on a lost optimistic-concurrency race where re-deciding is safe.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/failure"

	"github.com/furrow/furrow/services/procurement/domain"
)

// Aggregate is what an append's expectation is about: the subject filter
// covering an aggregate's events and the version it was decided on.
type Aggregate interface {
	Filter() string
	Version() uint64
}

// Events loads procurement's aggregates from its stream and appends to it.
type Events interface {
	LoadProgram(ctx context.Context, id string) (*domain.Program, *eventstore.Requests, error)
	LoadOrder(ctx context.Context, id string) (*domain.Order, *eventstore.Requests, error)
	LoadDelivery(ctx context.Context, id string) (*domain.Delivery, *eventstore.Requests, error)
	// LoadDeliveries loads many ad-hoc deliveries at once, in order: bulk
	// ingest, where nearly all are new, asks which exist in a few requests
	// rather than one each.
	LoadDeliveries(ctx context.Context, ids []string) ([]*domain.Delivery, []*eventstore.Requests, error)
	// Append writes changes as one atomic batch, expecting expect (the
	// aggregate of the first change) to be still at its version. A lost
	// race is eventstore.ErrConflict.
	Append(ctx context.Context, expect Aggregate, key, fingerprint string, md eventstore.Metadata, changes ...domain.Change) (eventstore.AppendResult, error)
	// AppendMany makes each append as Append would, together, so they
	// share the event store's atomic batches; each succeeds or fails on
	// its own. Outcomes are in the order given.
	AppendMany(ctx context.Context, appends []Append) []eventstore.AppendOutcome
}

// Append is one append of Events.AppendMany: Append's arguments.
type Append struct {
	Expect      Aggregate
	Key         string
	Fingerprint string
	Meta        eventstore.Metadata
	Changes     []domain.Change
}

// Farmers finds farmers registered with the ledger.
type Farmers interface {
	// Lookup returns the farmer, or false when it was never registered.
	Lookup(ctx context.Context, farmerID string) (domain.Farmer, bool, error)
	// LookupMany returns those of farmerIDs that are registered, in a few
	// requests rather than one each.
	LookupMany(ctx context.Context, farmerIDs []string) (map[string]domain.Farmer, error)
}

// Positions waits until the read models reflect a position (a nil one:
// no wait) and returns the PROCUREMENT position they then reflect.
type Positions interface {
	WaitFor(ctx context.Context, pos *eventstore.Position) (eventstore.Position, error)
}

// maxConflictRetries bounds how often a command reloads and re-decides
// after losing an optimistic-concurrency race. Each lost race means
// another command made progress, so a bound this size is reached only
// under a storm on one aggregate; the caller then gets Aborted.
const maxConflictRetries = 16

// Procurement is procurement's application service.
type Procurement struct {
	events    Events
	farmers   Farmers
	views     ReadModel
	positions Positions
	log       *slog.Logger
	now       func() time.Time
}

// New returns the application service.
func New(events Events, farmers Farmers, views ReadModel, positions Positions, log *slog.Logger) *Procurement {
	return &Procurement{events: events, farmers: farmers, views: views, positions: positions, log: log, now: time.Now}
}

// retry runs attempt until it does not lose a concurrency race, at most
// maxConflictRetries+1 times, waiting a short random while between tries so
// that contenders spread out (full jitter: up to 1ms, doubling, at most
// 16ms). attempt must reload whatever it decides on.
func retry[T any](ctx context.Context, log *slog.Logger, op string, attempt func() (T, error)) (T, error) {
	lost := 0
	v, err := backoff.Retry(ctx, func() (T, error) {
		v, err := attempt()
		if err != nil && !errors.Is(err, eventstore.ErrConflict) {
			return v, backoff.Permanent(err)
		}
		return v, err
	},
		backoff.WithBackOff(&backoff.ExponentialBackOff{
			InitialInterval: time.Millisecond / 2, RandomizationFactor: 1, Multiplier: 2, MaxInterval: 8 * time.Millisecond}),
		backoff.WithMaxTries(maxConflictRetries+1), backoff.WithMaxElapsedTime(0),
		backoff.WithNotify(func(error, time.Duration) {
			lost++
			log.DebugContext(ctx, "append lost a race; reloading", "op", op, "attempt", lost)
		}))
	if errors.Is(err, eventstore.ErrConflict) {
		return v, failure.Conflict(err)
	}
	return v, err
}

// reused names the request id in an idempotency mismatch (the same
// request id sent with different content), keeping the store's error
// underneath; other errors pass unchanged.
func reused(requestID string, err error) error {
	if !errors.Is(err, eventstore.ErrIdempotencyMismatch) {
		return err
	}
	return &failure.Error{Kind: failure.KindAlreadyExists, Field: "request_id",
		Msg: fmt.Sprintf("%q was already used for a different request; use a new request id", requestID), Err: err}
}

// prior looks for an earlier command with key in every aggregate it wrote
// to and returns its result spanning all of them (a two-aggregate command
// wrote to both, and its position is the later of the two). A key found
// with another fingerprint is eventstore.ErrIdempotencyMismatch.
func prior(key, fingerprint string, seen ...*eventstore.Requests) (eventstore.AppendResult, bool, error) {
	var out eventstore.AppendResult
	found := false
	for _, s := range seen {
		res, ok, err := s.Check(key, fingerprint)
		if err != nil {
			return eventstore.AppendResult{}, true, err
		}
		if !ok {
			continue
		}
		if !found {
			out, found = res, true
			continue
		}
		out.First, out.Last = min(out.First, res.First), max(out.Last, res.Last)
		out.EventIDs = append(out.EventIDs, res.EventIDs...)
	}
	return out, found, nil
}
