package ports

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/grpcx"
	"github.com/furrow/furrow/pkg/limits"
	"github.com/furrow/furrow/pkg/money"

	"github.com/furrow/furrow/services/farmer-ledger/app"
	"github.com/furrow/furrow/services/farmer-ledger/domain"
)

// ListFarmers implements LedgerService.
func (s *GRPCServer) ListFarmers(ctx context.Context, req *ledgerv1.ListFarmersRequest) (*ledgerv1.ListFarmersResponse, error) {
	if err := firstErr(
		limits.Text("county", req.GetCounty(), limits.MaxCodeLen),
		limits.Text("cooperative", req.GetCooperative(), limits.MaxNameLen),
	); err != nil {
		return nil, err
	}
	rows, next, asOf, err := s.app.ListFarmers(ctx, app.FarmerFilter{County: req.GetCounty(), Cooperative: req.GetCooperative()},
		req.GetPageSize(), req.GetPageToken(), grpcx.FromPosition(req.GetMinPosition()))
	if err != nil {
		return nil, err
	}
	resp := &ledgerv1.ListFarmersResponse{NextPageToken: next, AsOf: grpcx.ToPosition(asOf)}
	for _, r := range rows {
		f, err := s.farmerMessage(ctx, r.FarmerID, r.Name, r.County, r.Cooperative, r.Phone, r.PayoutAccount, 0)
		if err != nil {
			return nil, err
		}
		resp.Farmers = append(resp.Farmers, f)
	}
	return resp, nil
}

// GetFarmerBalanceAt implements LedgerService.
func (s *GRPCServer) GetFarmerBalanceAt(ctx context.Context, req *ledgerv1.GetFarmerBalanceAtRequest) (*ledgerv1.GetFarmerBalanceAtResponse, error) {
	var at app.BalancePoint
	switch a := req.GetAt().(type) {
	case *ledgerv1.GetFarmerBalanceAtRequest_Time:
		t, err := limits.Time("time", a.Time)
		if err != nil {
			return nil, err
		}
		at.Time = t
	case *ledgerv1.GetFarmerBalanceAtRequest_LedgerSequence:
		if a.LedgerSequence == 0 {
			return nil, failure.Invalid("ledger_sequence", "must be positive")
		}
		at.Seq = a.LedgerSequence
	}
	b, last, asOf, err := s.app.BalanceAt(ctx, req.GetFarmerId(), at)
	if err != nil {
		return nil, err
	}
	bal, err := farmerBalance(b)
	if err != nil {
		return nil, err
	}
	return &ledgerv1.GetFarmerBalanceAtResponse{
		FarmerId: req.GetFarmerId(), Balance: bal, LastEntrySequence: last, AsOf: grpcx.ToPosition(asOf),
	}, nil
}

// RequestPayout implements LedgerService.
func (s *GRPCServer) RequestPayout(ctx context.Context, req *ledgerv1.RequestPayoutRequest) (*ledgerv1.RequestPayoutResponse, error) {
	if err := limits.AtMost("amount_fen", req.GetAmountFen(), limits.MaxAmountFen, "fen"); err != nil {
		return nil, err
	}
	p, res, err := s.app.RequestPayout(ctx, app.RequestPayout{
		RequestID:    req.GetRequestId(),
		Fingerprint:  eventstore.Fingerprint(req),
		Meta:         grpcx.CommandMeta(ctx, req.GetRequestId()),
		FarmerID:     req.GetFarmerId(),
		AmountFen:    req.GetAmountFen(),
		AllAvailable: req.GetAllAvailable(),
	})
	if err != nil {
		return nil, err
	}
	out, err := s.payoutOf(ctx, app.PayoutView{Payout: p})
	if err != nil {
		return nil, err
	}
	return &ledgerv1.RequestPayoutResponse{
		Payout: out, Position: grpcx.ToPosition(res.Position()), Version: res.Last,
	}, nil
}

// GetPayout implements LedgerService.
func (s *GRPCServer) GetPayout(ctx context.Context, req *ledgerv1.GetPayoutRequest) (*ledgerv1.GetPayoutResponse, error) {
	p, asOf, err := s.app.Payout(ctx, req.GetPayoutId(), grpcx.FromPosition(req.GetMinPosition()))
	if err != nil {
		return nil, err
	}
	out, err := s.payoutOf(ctx, p)
	if err != nil {
		return nil, err
	}
	return &ledgerv1.GetPayoutResponse{Payout: out, AsOf: grpcx.ToPosition(asOf)}, nil
}

// ListPayouts implements LedgerService.
func (s *GRPCServer) ListPayouts(ctx context.Context, req *ledgerv1.ListPayoutsRequest) (*ledgerv1.ListPayoutsResponse, error) {
	st, err := payoutStatusOf(req.GetStatus())
	if err != nil {
		return nil, err
	}
	rows, next, asOf, err := s.app.Payouts(ctx, app.PayoutFilter{FarmerID: req.GetFarmerId(), Status: st},
		req.GetPageSize(), req.GetPageToken(), grpcx.FromPosition(req.GetMinPosition()))
	if err != nil {
		return nil, err
	}
	resp := &ledgerv1.ListPayoutsResponse{NextPageToken: next, AsOf: grpcx.ToPosition(asOf)}
	for _, p := range rows {
		out, err := s.payoutOf(ctx, p)
		if err != nil {
			return nil, err
		}
		resp.Payouts = append(resp.Payouts, out)
	}
	return resp, nil
}

// GetFarmerStatement implements LedgerService.
func (s *GRPCServer) GetFarmerStatement(ctx context.Context, req *ledgerv1.GetFarmerStatementRequest) (*ledgerv1.GetFarmerStatementResponse, error) {
	period, err := periodOf(req.GetFrom(), req.GetTo())
	if err != nil {
		return nil, err
	}
	f, st, asOf, err := s.app.Statement(ctx, req.GetFarmerId(), period, grpcx.FromPosition(req.GetMinPosition()))
	if err != nil {
		return nil, err
	}
	farmer, err := s.farmerOf(ctx, f)
	if err != nil {
		return nil, err
	}
	opening, err := farmerBalance(st.Opening)
	if err != nil {
		return nil, err
	}
	closing, err := farmerBalance(st.Closing)
	if err != nil {
		return nil, err
	}
	resp := &ledgerv1.GetFarmerStatementResponse{
		Farmer:  farmer,
		To:      timestamppb.New(st.To),
		Opening: opening,
		Closing: closing,
		AsOf:    grpcx.ToPosition(asOf),
	}
	if !st.From.IsZero() {
		resp.From = timestamppb.New(st.From)
	}
	// The running available balance is checked at every entry, like the
	// balances it is read from.
	available := opening.GetAvailableFen()
	for _, e := range st.Entries {
		change, err := farmerBalance(e.Change)
		if err == nil {
			available, err = money.Add(available, change.GetAvailableFen())
		}
		if err != nil {
			return nil, fmt.Errorf("statement of %s: entry %s: %w", req.GetFarmerId(), e.EntryID, err)
		}
		se := &ledgerv1.StatementEntry{
			EntryId: e.EntryID, Sequence: e.Seq, PostedAt: timestamppb.New(e.PostedAt), Description: e.Description,
			Source: &ledgerv1.SourceEvent{
				Stream: e.Source.Stream, Sequence: e.Source.Sequence, EventId: e.Source.EventID, EventType: e.Source.EventType,
			},
			PayoutId: e.PayoutID, Change: change, AvailableAfterFen: available,
		}
		for _, l := range e.Lines {
			se.Lines = append(se.Lines, &ledgerv1.JournalLine{Account: l.Account, DebitFen: l.DebitFen, CreditFen: l.CreditFen})
		}
		resp.Entries = append(resp.Entries, se)
	}
	return resp, nil
}

// GetTrialBalance implements LedgerService. An unbalanced journal is
// DATA_LOSS: the stream holds an entry the domain would never write. The
// totals travel as the status's detail, so the caller can still see them.
func (s *GRPCServer) GetTrialBalance(ctx context.Context, req *ledgerv1.GetTrialBalanceRequest) (*ledgerv1.GetTrialBalanceResponse, error) {
	tb, entries, asOf, err := s.app.TrialBalance(ctx, req.GetByFarmer(), grpcx.FromPosition(req.GetMinPosition()))
	if err != nil && !errors.Is(err, app.ErrUnbalanced) {
		return nil, err
	}
	resp := &ledgerv1.GetTrialBalanceResponse{
		TotalDebitFen: tb.DebitFen, TotalCreditFen: tb.CreditFen, Balanced: tb.Balanced(),
		Entries: entries, AsOf: grpcx.ToPosition(asOf),
	}
	for _, a := range tb.Accounts {
		resp.Accounts = append(resp.Accounts, &ledgerv1.AccountTotal{
			Account: a.Account, DebitFen: a.DebitFen, CreditFen: a.CreditFen, BalanceFen: a.BalanceFen(),
		})
	}
	if err != nil {
		st := status.New(codes.DataLoss, err.Error())
		if d, derr := st.WithDetails(resp); derr == nil {
			st = d
		}
		return nil, st.Err()
	}
	return resp, nil
}

// ReconcilePayouts implements LedgerService.
func (s *GRPCServer) ReconcilePayouts(ctx context.Context, req *ledgerv1.ReconcilePayoutsRequest) (*ledgerv1.ReconcilePayoutsResponse, error) {
	period, err := periodOf(req.GetFrom(), req.GetTo())
	if err != nil {
		return nil, err
	}
	rec, asOf, err := s.app.Reconcile(ctx, req.GetSettlementCsv(), period, grpcx.FromPosition(req.GetMinPosition()),
		grpcx.CommandMeta(ctx, ""))
	if err != nil {
		return nil, err
	}
	totals := &ledgerv1.ReconciliationTotals{
		SettlementLines: int32(rec.SettlementLines), SettlementFen: rec.SettlementFen,
		LedgerPayouts: int32(rec.LedgerPayouts), LedgerFen: rec.LedgerFen,
	}
	byResult := map[domain.ReconResult]*ledgerv1.ResultTotal{}
	for _, r := range domain.ReconResults {
		t := &ledgerv1.ResultTotal{Result: reconResult(r)}
		byResult[r] = t
		totals.ByResult = append(totals.ByResult, t)
	}
	resp := &ledgerv1.ReconcilePayoutsResponse{Totals: totals, AsOf: grpcx.ToPosition(asOf)}
	for _, it := range rec.Items {
		t := byResult[it.Result]
		t.Count++
		if t.AmountFen, err = money.Add(t.AmountFen, it.AmountFen()); err != nil {
			return nil, fmt.Errorf("reconciliation: total of %s: %w", it.Result, err)
		}
		item := &ledgerv1.ReconciliationItem{
			Result: reconResult(it.Result), BreakId: it.BreakID, PayoutId: it.PayoutID, ProviderReference: it.ProviderRef,
			FarmerId: it.FarmerID, LedgerAmountFen: it.LedgerAmountFen, SettlementAmountFen: it.SettlementAmountFen,
			LedgerStatus: it.LedgerStatus, SettlementStatus: it.SettlementStatus, Line: int32(it.Line), Detail: it.Detail,
		}
		if it.BreakID != "" {
			if r, ok := rec.Resolutions[it.BreakID]; ok {
				item.Resolution = &ledgerv1.BreakResolution{
					Decision: breakDecision(r.Decision), Note: r.Note, Actor: r.Actor,
					ResolvedAt: timestamppb.New(r.ResolvedAt),
					Position:   grpcx.ToPosition(eventstore.Position{Stream: domain.Stream, Sequence: r.Seq}),
				}
				totals.ResolvedBreaks++
			} else {
				totals.OpenBreaks++
			}
		}
		resp.Items = append(resp.Items, item)
	}
	return resp, nil
}

// ResolvePayoutBreak implements LedgerService.
func (s *GRPCServer) ResolvePayoutBreak(ctx context.Context, req *ledgerv1.ResolvePayoutBreakRequest) (*ledgerv1.ResolvePayoutBreakResponse, error) {
	if err := limits.Text("note", req.GetNote(), limits.MaxTextLen); err != nil {
		return nil, err
	}
	res, err := s.app.ResolveBreak(ctx, app.ResolveBreak{
		RequestID:   req.GetRequestId(),
		Fingerprint: eventstore.Fingerprint(req),
		Meta:        grpcx.CommandMeta(ctx, req.GetRequestId()),
		BreakID:     req.GetBreakId(),
		Decision:    decisionOf(req.GetDecision()),
		Note:        req.GetNote(),
	})
	if err != nil {
		return nil, err
	}
	return &ledgerv1.ResolvePayoutBreakResponse{Position: grpcx.ToPosition(res.Position())}, nil
}

// farmerBalance is b with what it leaves available, or an error wrapping
// money.ErrOverflow when that does not fit in an int64.
func farmerBalance(b domain.Balance) (*ledgerv1.FarmerBalance, error) {
	avail, err := b.Available()
	if err != nil {
		return nil, err
	}
	return &ledgerv1.FarmerBalance{
		PurchasesFen: b.PurchasesFen, PremiumsFen: b.PremiumsFen, HeldFen: b.HeldFen, PaidFen: b.PaidFen,
		AvailableFen: avail, ReceivableFen: b.ReceivableFen,
	}, nil
}

func payoutMessage(p app.PayoutView) *ledgerv1.Payout {
	m := &ledgerv1.Payout{
		PayoutId: p.ID, FarmerId: p.FarmerID, AmountFen: p.AmountFen, Currency: p.Currency, PayoutAccount: p.Account,
		Status: payoutStatus(p.Status), ProviderReference: p.ProviderRef, FailureReason: p.Reason, RequestId: p.RequestID,
	}
	if !p.RequestedAt.IsZero() {
		m.RequestedAt = timestamppb.New(p.RequestedAt)
	}
	if !p.CompletedAt.IsZero() {
		m.CompletedAt = timestamppb.New(p.CompletedAt)
	}
	return m
}

var payoutStatuses = map[domain.PayoutStatus]ledgerv1.PayoutStatus{
	domain.PayoutStatusRequested:       ledgerv1.PayoutStatus_PAYOUT_STATUS_REQUESTED,
	domain.PayoutStatusSent:            ledgerv1.PayoutStatus_PAYOUT_STATUS_SENT,
	domain.PayoutStatusSettled:         ledgerv1.PayoutStatus_PAYOUT_STATUS_SETTLED,
	domain.PayoutStatusFailed:          ledgerv1.PayoutStatus_PAYOUT_STATUS_FAILED,
	domain.PayoutStatusPendingApproval: ledgerv1.PayoutStatus_PAYOUT_STATUS_PENDING_APPROVAL,
	domain.PayoutStatusRejected:        ledgerv1.PayoutStatus_PAYOUT_STATUS_REJECTED,
}

func payoutStatus(s domain.PayoutStatus) ledgerv1.PayoutStatus { return payoutStatuses[s] }

func payoutStatusOf(s ledgerv1.PayoutStatus) (domain.PayoutStatus, error) {
	if s == ledgerv1.PayoutStatus_PAYOUT_STATUS_UNSPECIFIED {
		return 0, nil
	}
	for d, v := range payoutStatuses {
		if v == s {
			return d, nil
		}
	}
	return 0, failure.Invalid("status", "unknown payout status %d", s)
}

func reconResult(r domain.ReconResult) ledgerv1.ReconciliationResult {
	switch r {
	case domain.ReconMatched:
		return ledgerv1.ReconciliationResult_RECONCILIATION_RESULT_MATCHED
	case domain.ReconMissingInLedger:
		return ledgerv1.ReconciliationResult_RECONCILIATION_RESULT_MISSING_IN_LEDGER
	case domain.ReconMissingInSettlement:
		return ledgerv1.ReconciliationResult_RECONCILIATION_RESULT_MISSING_IN_SETTLEMENT
	case domain.ReconAmountMismatch:
		return ledgerv1.ReconciliationResult_RECONCILIATION_RESULT_AMOUNT_MISMATCH
	case domain.ReconStatusMismatch:
		return ledgerv1.ReconciliationResult_RECONCILIATION_RESULT_STATUS_MISMATCH
	case domain.ReconDuplicate:
		return ledgerv1.ReconciliationResult_RECONCILIATION_RESULT_DUPLICATE
	case domain.ReconFarmerMismatch:
		return ledgerv1.ReconciliationResult_RECONCILIATION_RESULT_FARMER_MISMATCH
	}
	return ledgerv1.ReconciliationResult_RECONCILIATION_RESULT_UNSPECIFIED
}

var decisions = map[ledgerv1.BreakDecision]string{
	ledgerv1.BreakDecision_BREAK_DECISION_ACCEPTED:            domain.DecisionAccepted,
	ledgerv1.BreakDecision_BREAK_DECISION_PROVIDER_TO_CORRECT: domain.DecisionProviderToCorrect,
	ledgerv1.BreakDecision_BREAK_DECISION_LEDGER_TO_CORRECT:   domain.DecisionLedgerToCorrect,
	ledgerv1.BreakDecision_BREAK_DECISION_WRITTEN_OFF:         domain.DecisionWrittenOff,
}

// decisionOf maps the API's decision to the domain's ("" when unset, which
// the domain refuses).
func decisionOf(d ledgerv1.BreakDecision) string { return decisions[d] }

func breakDecision(s string) ledgerv1.BreakDecision {
	for k, v := range decisions {
		if v == s {
			return k
		}
	}
	return ledgerv1.BreakDecision_BREAK_DECISION_UNSPECIFIED
}

func periodOf(from, to *timestamppb.Timestamp) (domain.Period, error) {
	f, err := limits.Time("from", from)
	if err != nil {
		return domain.Period{}, err
	}
	t, err := limits.Time("to", to)
	if err != nil {
		return domain.Period{}, err
	}
	p := domain.Period{From: f, To: t}
	if err := p.Check(); err != nil {
		return domain.Period{}, fmt.Errorf("period: %w", err)
	}
	return p, nil
}
