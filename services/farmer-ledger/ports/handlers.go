package ports

import (
	"fmt"

	"github.com/ThreeDotsLabs/watermill/message"

	brandevents "github.com/furrow/furrow/proto/furrow/brand/events/v1"
	procurementevents "github.com/furrow/furrow/proto/furrow/procurement/events/v1"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/wmjs"

	"github.com/furrow/furrow/services/farmer-ledger/app"
)

// Durable consumer names of the ledger's handlers, one per upstream stream.
// Renaming one starts its consumer over from the beginning of the stream
// (harmless, since postings are idempotent by source event, but slow).
const (
	DurableProcurementEntries = "ledger-post-entries-procurement"
	DurableBrandEntries       = "ledger-post-entries-brand"
)

// Subjects each handler consumes: the event kinds that make journal entries.
var (
	ProcurementEntrySubjects = []string{"procurement.*.*.delivery_recorded", "procurement.*.*.delivery_corrected"}
	BrandEntrySubjects       = []string{"brand.*.*.premium_earned", "brand.*.*.premium_adjusted"}
)

// PostProcurementEntries returns the Watermill handler that posts the
// journal entries for deliveries and their corrections.
func PostProcurementEntries(a *app.Ledger) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		rec, ev, err := decode(msg)
		if err != nil {
			return err
		}
		switch e := ev.(type) {
		case *procurementevents.DeliveryRecorded:
			return a.PostEntryOnDeliveryRecorded(msg.Context(), rec, e)
		case *procurementevents.DeliveryCorrected:
			return a.PostEntryOnDeliveryCorrected(msg.Context(), rec, e)
		}
		return unexpected(rec)
	}
}

// PostBrandEntries returns the Watermill handler that posts the journal
// entries for premiums earned and adjusted.
func PostBrandEntries(a *app.Ledger) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		rec, ev, err := decode(msg)
		if err != nil {
			return err
		}
		switch e := ev.(type) {
		case *brandevents.PremiumEarned:
			return a.PostEntryOnPremiumEarned(msg.Context(), rec, e)
		case *brandevents.PremiumAdjusted:
			return a.PostEntryOnPremiumAdjusted(msg.Context(), rec, e)
		}
		return unexpected(rec)
	}
}

func decode(msg *message.Message) (eventstore.Recorded, any, error) {
	rec, err := wmjs.Recorded(msg)
	if err != nil {
		return eventstore.Recorded{}, nil, err
	}
	ev, err := eventstore.Decode(rec)
	return rec, ev, err
}

// unexpected reports an event the consumer's filter should not have let
// through; it is parked as a dead letter rather than silently acked.
func unexpected(rec eventstore.Recorded) error {
	return fmt.Errorf("ledger handler: unexpected %s at %s seq %d", rec.Type, rec.Stream, rec.Sequence)
}
