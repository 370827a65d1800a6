package ports

import (
	"log/slog"

	"github.com/ThreeDotsLabs/watermill/message"

	ledgerevents "github.com/furrow/furrow/proto/furrow/ledger/events/v1"

	"github.com/furrow/furrow/services/farmer-ledger/app"
)

// DurableSendPayouts is the durable consumer of the payout saga: it reads
// the ledger's own PayoutRequested events, and PayoutApproved for payouts
// that waited for a second approver.
const DurableSendPayouts = "ledger-send-payouts"

// PayoutRequestedSubjects are the subjects the payout saga consumes.
var PayoutRequestedSubjects = []string{"ledger.farmer.*.payout_requested", "ledger.farmer.*.payout_approved"}

// SendPayouts returns the Watermill handler of the payout saga: it sends
// each requested payout to the payment provider. A failing call is retried
// by the router with the same payout id (the provider's idempotency key).
func SendPayouts(a *app.Ledger) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		rec, ev, err := decode(msg)
		if err != nil {
			return err
		}
		switch e := ev.(type) {
		case *ledgerevents.PayoutRequested:
			return a.SendPayoutOnPayoutRequested(msg.Context(), rec, e)
		case *ledgerevents.PayoutApproved:
			return a.SendPayoutOnPayoutApproved(msg.Context(), rec, e)
		}
		return unexpected(rec)
	}
}

// SettleSentPayouts returns the handler that, on every tick, asks the
// provider about the payouts it accepted but has not settled. It never
// fails the tick: a payout it could not settle is asked about again on the
// next one.
func SettleSentPayouts(a *app.Ledger, log *slog.Logger) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		n, err := a.SettleSentPayoutsOnTick(msg.Context())
		if err != nil {
			log.WarnContext(msg.Context(), "settlement poll failed", "err", err)
		}
		if n > 0 {
			log.InfoContext(msg.Context(), "late payouts completed", "count", n)
		}
		return nil
	}
}
