package adapters

import (
	"context"
	"log/slog"

	"github.com/furrow/furrow/services/farmer-ledger/app"
	"github.com/furrow/furrow/services/farmer-ledger/domain"
)

// LogNotifier is the development notifier: it writes each notice to the
// log instead of sending it, with the phone number masked (a log is no
// place for it). A production notifier sends the text to the phone
// through an SMS gateway and to the cooperative's channel.
type LogNotifier struct{ Log *slog.Logger }

var _ app.Notifier = LogNotifier{}

// Notify implements app.Notifier.
func (n LogNotifier) Notify(ctx context.Context, no app.Notice) error {
	n.Log.InfoContext(ctx, "farmer notified (log notifier: nothing was sent)",
		"farmer_id", no.FarmerID, "reason", no.Reason, "phone", domain.Mask(no.Phone), "cooperative", no.Cooperative, "text", no.Text)
	return nil
}
