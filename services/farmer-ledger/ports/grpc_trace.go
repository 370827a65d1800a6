package ports

import (
	"context"

	"google.golang.org/protobuf/types/known/timestamppb"

	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"
	typesv1 "github.com/furrow/furrow/proto/furrow/types/v1"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/grpcx"

	"github.com/furrow/furrow/services/farmer-ledger/app"
	"github.com/furrow/furrow/services/farmer-ledger/domain"
)

// TraceLot implements LedgerService.
func (s *GRPCServer) TraceLot(ctx context.Context, req *ledgerv1.TraceLotRequest) (*ledgerv1.TraceLotResponse, error) {
	t, err := s.app.TraceLot(ctx, req.GetDeliveryId(), grpcx.FromPosition(req.GetMinPosition()))
	if err != nil {
		return nil, err
	}
	out := &ledgerv1.TraceLotResponse{
		Recorded: lotDelivery(t.Deliveries[0]), Current: lotDelivery(t.Deliveries[len(t.Deliveries)-1]),
		Allocation: domain.AllocationRule, AsOf: positions(t.AsOf),
		Totals: &ledgerv1.LotTotals{
			DeliveredGrams: t.Totals.DeliveredGrams, SoldGrams: t.Totals.SoldGrams, EarningGrams: t.Totals.EarningGrams,
			PayableFen: t.Totals.PayableFen, PremiumFen: t.Totals.PremiumFen, PaidFen: t.Totals.PaidFen,
			UnpaidFen: t.Totals.UnpaidFen, ReceivableFen: t.Totals.ReceivableFen,
		},
	}
	for _, d := range t.Deliveries[1:] {
		out.Corrections = append(out.Corrections, lotDelivery(d))
	}
	for _, s := range t.Current {
		ls := &ledgerv1.LotSale{
			SaleId: s.SaleID, ReportId: s.ReportID, LineId: s.LineID, BrandId: s.BrandID, Channel: s.Channel,
			Grams: s.Grams, SoldAt: timestamppb.New(s.SoldAt), WithheldReason: s.Withheld,
		}
		if s.Kind != "withheld" && s.Withheld == 0 {
			ls.RuleId, ls.RuleVersion, ls.FenPerKg, ls.PremiumFen = s.RuleID, s.RuleVersion, s.FenPerKg, s.PremiumFen
		}
		out.Sales = append(out.Sales, ls)
	}
	for _, s := range t.Sales {
		out.PremiumEvents = append(out.PremiumEvents, &ledgerv1.LotPremiumEvent{
			Kind: s.Kind, SaleId: s.SaleID, BrandId: s.BrandID, Channel: s.Channel, Grams: s.Grams,
			RuleId: s.RuleID, RuleVersion: s.RuleVersion, FenPerKg: s.FenPerKg, PremiumFen: s.PremiumFen,
			DeltaFen: s.DeltaFen, Cause: s.Cause, Reason: s.Reason, Sequence: s.Seq, EventId: s.EventID,
		})
	}
	for _, e := range t.Entries {
		le := &ledgerv1.LotEntry{
			EntryId: e.Entry.EntryID, LedgerSequence: e.Entry.Seq, Kind: e.Kind, SourceEventId: e.Entry.SourceEventID,
			AmountFen: e.AmountFen, OpenFen: e.Allocated.Open,
		}
		for _, p := range e.Allocated.Parts {
			le.Allocations = append(le.Allocations, &ledgerv1.Allocation{Kind: p.Kind, Fen: p.Fen, PayoutId: p.PayoutID, EntryId: p.EntryID})
		}
		out.Entries = append(out.Entries, le)
	}
	for _, p := range t.Payouts {
		out.Payouts = append(out.Payouts, &ledgerv1.LotPayout{PayoutId: p.PayoutID, AmountFen: p.AmountFen, LotFen: p.LotFen, SettledSequence: p.Settled})
	}
	return out, nil
}

// TraceFarmer implements LedgerService.
func (s *GRPCServer) TraceFarmer(ctx context.Context, req *ledgerv1.TraceFarmerRequest) (*ledgerv1.TraceFarmerResponse, error) {
	months, total, asOf, err := s.app.TraceFarmer(ctx, req.GetFarmerId(), req.GetMonthFrom(), req.GetMonthTo(), grpcx.FromPosition(req.GetMinPosition()))
	if err != nil {
		return nil, err
	}
	out := &ledgerv1.TraceFarmerResponse{FarmerId: req.GetFarmerId(), Total: traceMonth(total), AsOf: positions(asOf)}
	for _, m := range months {
		out.Months = append(out.Months, traceMonth(m))
	}
	return out, nil
}

func traceMonth(m app.TraceMonth) *ledgerv1.TraceMonth {
	return &ledgerv1.TraceMonth{
		Month: m.Month, Deliveries: int32(m.Deliveries), DeliveredGrams: m.DeliveredGrams, PayableFen: m.PayableFen,
		BrandedGrams: m.BrandedGrams, EarningGrams: m.EarningGrams, PremiumFen: m.PremiumFen,
	}
}

func lotDelivery(d app.LotEvent) *ledgerv1.LotDelivery {
	out := &ledgerv1.LotDelivery{
		DeliveryId: d.DeliveryID, FarmerId: d.FarmerID, Product: d.Product, Grade: d.Grade, NetGrams: d.NetGrams,
		PriceFenPerKg: d.PriceFenPerKg, AmountFen: d.AmountFen, CorrectionNumber: d.Correction,
		ReversedAmountFen: d.ReversedFen, Reason: d.Reason, Warehouse: d.Warehouse, County: d.County, Sequence: d.Seq,
		DistributionCentre: d.Centre,
	}
	if !d.WeighedAt.IsZero() {
		out.WeighedAt = timestamppb.New(d.WeighedAt)
	}
	return out
}

func positions(ps []eventstore.Position) []*typesv1.Position {
	out := make([]*typesv1.Position, 0, len(ps))
	for _, p := range ps {
		out = append(out, grpcx.ToPosition(p))
	}
	return out
}
