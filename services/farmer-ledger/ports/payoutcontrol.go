package ports

import (
	"context"

	"github.com/ThreeDotsLabs/watermill/message"

	ledgerevents "github.com/furrow/furrow/proto/furrow/ledger/events/v1"
	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/grpcx"
	"github.com/furrow/furrow/pkg/limits"

	"github.com/furrow/furrow/services/farmer-ledger/app"
	"github.com/furrow/furrow/services/farmer-ledger/domain"
)

// DurableNotifyAccountChanges is the durable consumer that tells farmers
// about changes of their payout account.
const DurableNotifyAccountChanges = "ledger-notify-account-changes"

// AccountChangeSubjects are the subjects it consumes.
var AccountChangeSubjects = []string{"ledger.farmer.*." + domain.KindPayoutAccountUpdated}

// NotifyAccountChanges returns the handler that notifies a farmer and its
// cooperative of each change of its payout account.
func NotifyAccountChanges(a *app.Ledger) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		rec, ev, err := decode(msg)
		if err != nil {
			return err
		}
		if e, ok := ev.(*ledgerevents.PayoutAccountUpdated); ok {
			return a.NotifyOnPayoutAccountUpdated(msg.Context(), rec, e)
		}
		return unexpected(rec)
	}
}

// ApprovePayout implements LedgerService.
func (s *GRPCServer) ApprovePayout(ctx context.Context, req *ledgerv1.ApprovePayoutRequest) (*ledgerv1.ApprovePayoutResponse, error) {
	p, res, err := s.app.ApprovePayout(ctx, app.ApprovePayout{
		RequestID:   req.GetRequestId(),
		Fingerprint: eventstore.Fingerprint(req),
		Meta:        grpcx.CommandMeta(ctx, req.GetRequestId()),
		PayoutID:    req.GetPayoutId(),
	})
	if err != nil {
		return nil, err
	}
	out, err := s.payoutOf(ctx, app.PayoutView{Payout: p})
	if err != nil {
		return nil, err
	}
	return &ledgerv1.ApprovePayoutResponse{Payout: out, Position: grpcx.ToPosition(res.Position())}, nil
}

// RejectPayout implements LedgerService.
func (s *GRPCServer) RejectPayout(ctx context.Context, req *ledgerv1.RejectPayoutRequest) (*ledgerv1.RejectPayoutResponse, error) {
	if err := limits.Text("reason", req.GetReason(), limits.MaxTextLen); err != nil {
		return nil, err
	}
	p, res, err := s.app.RejectPayout(ctx, app.RejectPayout{
		RequestID:   req.GetRequestId(),
		Fingerprint: eventstore.Fingerprint(req),
		Meta:        grpcx.CommandMeta(ctx, req.GetRequestId()),
		PayoutID:    req.GetPayoutId(),
		Reason:      req.GetReason(),
	})
	if err != nil {
		return nil, err
	}
	out, err := s.payoutOf(ctx, app.PayoutView{Payout: p})
	if err != nil {
		return nil, err
	}
	return &ledgerv1.RejectPayoutResponse{Payout: out, Position: grpcx.ToPosition(res.Position())}, nil
}
