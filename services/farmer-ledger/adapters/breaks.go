package adapters

import (
	"context"
	"fmt"

	ledgerevents "github.com/furrow/furrow/proto/furrow/ledger/events/v1"

	"github.com/furrow/furrow/pkg/eventstore"

	"github.com/furrow/furrow/services/farmer-ledger/app"
	"github.com/furrow/furrow/services/farmer-ledger/domain"
)

// BreakRepository loads and appends the decisions recorded about
// reconciliation breaks, one tiny aggregate per break
// (ledger.break.<break_id>.>), so a break is resolved once.
type BreakRepository struct{ store *eventstore.Store }

var _ app.Breaks = (*BreakRepository)(nil)

// NewBreakRepository returns a repository over store.
func NewBreakRepository(store *eventstore.Store) *BreakRepository {
	return &BreakRepository{store: store}
}

// Load reports whether the break has been resolved, its version and the
// idempotency keys of its events.
func (r *BreakRepository) Load(ctx context.Context, breakID string) (resolved bool, version uint64, seen *eventstore.Requests, err error) {
	seen = eventstore.NewRequests(domain.Stream)
	evs, err := r.store.Load(ctx, domain.Stream, domain.BreakAggregate(breakID), 0)
	if err != nil {
		return false, 0, nil, fmt.Errorf("load break %s: %w", breakID, err)
	}
	for _, ev := range evs {
		seen.Record(ev)
		version = ev.Sequence
		resolved = resolved || ev.Subject == domain.BreakSubject(breakID, domain.KindBreakResolved)
	}
	return resolved, version, seen, nil
}

// Append records a resolution, expecting the break unchanged since version.
func (r *BreakRepository) Append(ctx context.Context, version uint64, key, fingerprint string, md eventstore.Metadata, ev *ledgerevents.PayoutBreakResolved) (eventstore.AppendResult, error) {
	e, err := eventstore.NewEvent(domain.BreakSubject(ev.GetBreakId(), domain.KindBreakResolved), ev, md)
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	return r.store.Append(ctx, eventstore.AppendRequest{
		Stream: domain.Stream, Aggregate: domain.BreakAggregate(ev.GetBreakId()),
		Expect: eventstore.ExpectVersion(version), IdempotencyKey: key, Fingerprint: fingerprint,
		Events: []eventstore.Event{e},
	})
}
