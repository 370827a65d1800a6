package adapters

import (
	"context"
	"fmt"

	ledgerevents "github.com/furrow/furrow/proto/furrow/ledger/events/v1"

	"github.com/furrow/furrow/pkg/eventstore"

	"github.com/furrow/furrow/services/farmer-ledger/app"
	"github.com/furrow/furrow/services/farmer-ledger/domain"
)

// NoticeRepository records the notices sent to a farmer, in an aggregate
// of their own (ledger.notice.<farmer_id>.>) rather than the farmer's:
// recording one must not move the farmer's version, which clients use as
// expected_version right after the change the notice is about.
type NoticeRepository struct{ store *eventstore.Store }

var _ app.Notices = (*NoticeRepository)(nil)

// NewNoticeRepository returns a repository over store.
func NewNoticeRepository(store *eventstore.Store) *NoticeRepository {
	return &NoticeRepository{store: store}
}

// Load implements app.Notices.
func (r *NoticeRepository) Load(ctx context.Context, farmerID string) (uint64, *eventstore.Requests, error) {
	seen := eventstore.NewRequests(domain.Stream)
	evs, err := r.store.Load(ctx, domain.Stream, domain.NoticeAggregate(farmerID), 0)
	if err != nil {
		return 0, nil, fmt.Errorf("load notices of %s: %w", farmerID, err)
	}
	var version uint64
	for _, ev := range evs {
		seen.Record(ev)
		version = ev.Sequence
	}
	return version, seen, nil
}

// Record implements app.Notices.
func (r *NoticeRepository) Record(ctx context.Context, version uint64, key string, md eventstore.Metadata, ev *ledgerevents.FarmerNotified) error {
	e, err := eventstore.NewEvent(domain.NoticeSubject(ev.GetFarmerId(), domain.KindFarmerNotified), ev, md)
	if err != nil {
		return err
	}
	_, err = r.store.Append(ctx, eventstore.AppendRequest{
		Stream: domain.Stream, Aggregate: domain.NoticeAggregate(ev.GetFarmerId()), Expect: eventstore.ExpectVersion(version),
		IdempotencyKey: key, Fingerprint: key, Events: []eventstore.Event{e},
	})
	if busy(err) {
		return fmt.Errorf("%w: %w", app.ErrBusy, err)
	}
	return err
}
