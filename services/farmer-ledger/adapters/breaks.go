package adapters

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	ledgerevents "github.com/furrow/furrow/proto/furrow/ledger/events/v1"

	"github.com/furrow/furrow/pkg/eventstore"

	"github.com/furrow/furrow/services/farmer-ledger/app"
	"github.com/furrow/furrow/services/farmer-ledger/domain"
)

// BreakRepository loads and appends the events of reconciliation breaks,
// one tiny aggregate per break (ledger.break.<break_id>.>): that a
// reconciliation reported it, and the decision about it, so a break is
// resolved once and only once it was reported.
type BreakRepository struct{ store *eventstore.Store }

var _ app.Breaks = (*BreakRepository)(nil)

// NewBreakRepository returns a repository over store.
func NewBreakRepository(store *eventstore.Store) *BreakRepository {
	return &BreakRepository{store: store}
}

// Load reports whether the break was reported and resolved, its version
// and the idempotency keys of its events.
func (r *BreakRepository) Load(ctx context.Context, breakID string) (state domain.BreakState, version uint64, seen *eventstore.Requests, err error) {
	seen = eventstore.NewRequests(domain.Stream)
	evs, err := r.store.Load(ctx, domain.Stream, domain.BreakAggregate(breakID), 0)
	if err != nil {
		return domain.BreakState{}, 0, nil, fmt.Errorf("load break %s: %w", breakID, err)
	}
	for _, ev := range evs {
		seen.Record(ev)
		version = ev.Sequence
		switch ev.Subject {
		case domain.BreakSubject(breakID, domain.KindBreakFound):
			state.Found = true
		case domain.BreakSubject(breakID, domain.KindBreakResolved):
			state.Resolved = true
		}
	}
	return state, version, seen, nil
}

// foundBatch is how many PayoutBreakFound one append carries, at most
// (below eventstore.MaxBatch).
const foundBatch = 500

// Found implements app.Breaks: the events go in atomic batches without an
// expectation (a break found twice by racing reconciliations is still one
// break found). A batch's key derives from the breaks it names, so a
// retried batch is de-duplicated.
func (r *BreakRepository) Found(ctx context.Context, md eventstore.Metadata, evs []*ledgerevents.PayoutBreakFound) error {
	for len(evs) > 0 {
		chunk := evs[:min(foundBatch, len(evs))]
		evs = evs[len(chunk):]
		events := make([]eventstore.Event, len(chunk))
		h := sha256.New()
		for i, f := range chunk {
			e, err := eventstore.NewEvent(domain.BreakSubject(f.GetBreakId(), domain.KindBreakFound), f, md)
			if err != nil {
				return err
			}
			events[i] = e
			h.Write([]byte(f.GetBreakId()))
		}
		key := "ledger.BreaksFound:" + hex.EncodeToString(h.Sum(nil))[:32]
		if _, err := r.store.Append(ctx, eventstore.AppendRequest{
			Stream: domain.Stream, Aggregate: "ledger.break.*." + domain.KindBreakFound,
			Expect: eventstore.ExpectAny, IdempotencyKey: key, Fingerprint: key, Events: events,
		}); err != nil {
			return err
		}
	}
	return nil
}

// FoundBreaks implements app.Finance from the finance read model's
// ledger_breaks table.
func (r *FinanceReader) FoundBreaks(ctx context.Context, breakIDs []string) (map[string]bool, error) {
	out := map[string]bool{}
	for len(breakIDs) > 0 {
		chunk := breakIDs[:min(idChunk, len(breakIDs))]
		breakIDs = breakIDs[len(chunk):]
		ph := make([]string, len(chunk))
		args := make([]any, len(chunk))
		for i, id := range chunk {
			ph[i], args[i] = fmt.Sprintf("$%d", i+1), id
		}
		rows, err := r.db.QueryContext(ctx, `SELECT break_id FROM `+tableBreaks+`
			WHERE break_id IN (`+strings.Join(ph, ", ")+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("breaks found: %w", err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, fmt.Errorf("breaks found: %w", err)
			}
			out[id] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("breaks found: %w", err)
		}
	}
	return out, nil
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
