package ports

import (
	"fmt"

	"github.com/ThreeDotsLabs/watermill/message"

	procurementevents "github.com/furrow/furrow/proto/furrow/procurement/events/v1"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/wmjs"

	"github.com/furrow/furrow/services/farmer-ledger/app"
)

// Durable consumer names of the ledger's handlers. Renaming one starts its
// consumer over from the beginning of the stream (harmless: handlers are
// idempotent, but slow).
const (
	DurablePostEntryOnDeliveryRecorded = "ledger-post-entry-on-delivery-recorded"
)

// PostEntryOnDeliveryRecorded returns the Watermill handler that posts the
// payable for each DeliveryRecorded event.
func PostEntryOnDeliveryRecorded(a *app.Ledger) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		rec, err := wmjs.Recorded(msg)
		if err != nil {
			return err
		}
		ev, err := eventstore.Decode(rec)
		if err != nil {
			return err
		}
		d, ok := ev.(*procurementevents.DeliveryRecorded)
		if !ok {
			return fmt.Errorf("post entry: %s seq %d is a %s, not a DeliveryRecorded", rec.Stream, rec.Sequence, rec.Type)
		}
		return a.PostEntryOnDeliveryRecorded(msg.Context(), rec, d)
	}
}
