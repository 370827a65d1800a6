package stack_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	brandv1 "github.com/furrow/furrow/proto/furrow/brand/v1"
	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"
	procurementevents "github.com/furrow/furrow/proto/furrow/procurement/events/v1"
	typesv1 "github.com/furrow/furrow/proto/furrow/types/v1"

	"github.com/furrow/furrow/pkg/eventstore"
)

// deliverLot records a delivery of F1's the way procurement publishes it.
func (w *brandWorld) deliverLot(t testing.TB, id string, grams, fenPerKg, amountFen int64, day int) *typesv1.Position {
	t.Helper()
	subject := "procurement.delivery." + id + ".delivery_recorded"
	ev, err := eventstore.NewEvent(subject, &procurementevents.DeliveryRecorded{
		DeliveryId: id, FarmerId: "F1", Product: "xunwu-navel-orange", Grade: "A", NetGrams: grams,
		PriceFenPerKg: fenPerKg, AmountFen: amountFen, WeighedAt: w.at(day), Warehouse: "Xunwu DC", County: "Xunwu",
	}, eventstore.Metadata{Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := eventstore.New(w.st.JetStream()).Append(bctx(t), eventstore.AppendRequest{
		Stream: "PROCUREMENT", Aggregate: subject, IdempotencyKey: "delivery-" + id, Events: []eventstore.Event{ev}})
	if err != nil {
		t.Fatal(err)
	}
	return &typesv1.Position{Stream: res.Stream, Sequence: res.Last}
}

func (w *brandWorld) balance(t testing.TB, pos *typesv1.Position) *ledgerv1.GetFarmerBalanceResponse {
	t.Helper()
	b, err := w.ledger.GetFarmerBalance(bctx(t), &ledgerv1.GetFarmerBalanceRequest{FarmerId: "F1", MinPosition: pos})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// payOut pays F1 amount and waits until the provider settled it.
func (w *brandWorld) payOut(t testing.TB, requestID string, amount int64) string {
	t.Helper()
	res, err := w.ledger.RequestPayout(bctx(t), &ledgerv1.RequestPayoutRequest{
		RequestId: requestID, FarmerId: "F1", Amount: &ledgerv1.RequestPayoutRequest_AmountFen{AmountFen: amount}})
	if err != nil {
		t.Fatalf("RequestPayout(%d): %v", amount, err)
	}
	finWaitPayout(t, clients{st: w.st, ledger: w.ledger}, res.GetPayout().GetPayoutId(), ledgerv1.PayoutStatus_PAYOUT_STATUS_SETTLED)
	return res.GetPayout().GetPayoutId()
}

// TestNavelOrangeLotTracedToThePayout is issue 14's acceptance story, every
// figure worked out by hand. One lot D1 of 1,000 kg navel oranges at 500
// fen/kg (payable 500,000 fen). 600 kg of it sell at Hema under the
// "season" rule at +100 fen/kg (premium 60,000); a second report claiming
// 500 kg more is refused: only 400 kg are left. The farmer is paid 560,000
// (PO-F1-1). The rule is revised to +120 fen/kg (+12,000), paid out too
// (PO-F1-2, 12,000). Then the rule is ended before the sale's day: the
// sale earns nothing (−72,000), all of it already paid: a receivable of
// 72,000, available 0, payouts refused. A second lot D2 of 100 kg
// (50,000) nets against it: 22,000 still owed. TraceLot shows each step
// to the fen and the payouts that carried the lot; the trial balance is
// zero.
func TestNavelOrangeLotTracedToThePayout(t *testing.T) {
	t.Parallel()
	w := startBrandWorld(t)
	w.setUp(t, []string{"F1"}, "F1")
	ctx := bctx(t)
	w.deliverLot(t, "D1", 1_000_000, 500, 500_000, 1)

	line := func(id string, grams int64) *brandv1.SaleLine {
		return &brandv1.SaleLine{LineId: id, BrandId: "xunwu-navel", DeliveryId: "D1", Grams: grams, SoldAt: w.at(10)}
	}
	sold, err := w.brand.ReportSales(ctx, &brandv1.ReportSalesRequest{ReportId: "hema-1", Revision: 1, Channel: "hema", Lines: []*brandv1.SaleLine{line("L1", 600_000)}})
	if err != nil {
		t.Fatal(err)
	}
	if got := sold.GetPremiumFen(); got != 60_000 {
		t.Fatalf("premium of 600 kg at 100 fen/kg = %d, want 60,000", got)
	}
	_, err = w.brand.ReportSales(ctx, &brandv1.ReportSalesRequest{ReportId: "hema-2", Revision: 1, Channel: "hema", Lines: []*brandv1.SaleLine{line("L1", 500_000)}})
	finWantCode(t, "500 kg more of D1", err, codes.FailedPrecondition)
	if !strings.Contains(err.Error(), "lot D1 has 400 kg left (1,000 kg delivered, 600 kg claimed") {
		t.Fatalf("refusal does not name the lot and what is left: %v", err)
	}

	if b := w.balance(t, sold.GetPosition()); b.GetAvailableFen() != 560_000 {
		t.Fatalf("available before the first payout = %d, want 560,000", b.GetAvailableFen())
	}
	po1 := w.payOut(t, "pay-1", 560_000)

	revised, err := w.brand.ReviseRule(ctx, &brandv1.ReviseRuleRequest{RequestId: "rev-120", BrandId: "xunwu-navel", Channel: "hema",
		RuleId: "season", FenPerKg: 120, Reason: "Hema raised the premium"})
	if err != nil {
		t.Fatal(err)
	}
	if revised.GetDeltaFen() != 12_000 {
		t.Fatalf("revision delta %d, want 600 kg × 20 fen/kg = 12,000", revised.GetDeltaFen())
	}
	if b := w.balance(t, revised.GetPosition()); b.GetAvailableFen() != 12_000 {
		t.Fatalf("available after the revision = %d, want 12,000", b.GetAvailableFen())
	}
	po2 := w.payOut(t, "pay-2", 12_000)

	preview, err := w.brand.PreviewEndRule(ctx, &brandv1.PreviewEndRuleRequest{BrandId: "xunwu-navel", Channel: "hema", RuleId: "season", EffectiveTo: w.day(5)})
	if err != nil {
		t.Fatal(err)
	}
	ended, err := w.brand.EndRule(ctx, &brandv1.EndRuleRequest{RequestId: "end", BrandId: "xunwu-navel", Channel: "hema",
		RuleId: "season", EffectiveTo: w.day(5), Reason: "campaign withdrawn"})
	if err != nil {
		t.Fatal(err)
	}
	if preview.GetDeltaFen() != -72_000 || ended.GetDeltaFen() != -72_000 || ended.GetAdjustedSales() != 1 {
		t.Fatalf("end of the rule: preview %d fen, applied %d fen on %d sales; want -72,000 on 1", preview.GetDeltaFen(), ended.GetDeltaFen(), ended.GetAdjustedSales())
	}
	b := w.balance(t, ended.GetPosition())
	if b.GetAvailableFen() != 0 || b.GetReceivableFen() != 72_000 || b.GetPaidFen() != 572_000 || b.GetPremiumsFen() != 0 {
		t.Fatalf("balance after the clawback: %v; want available 0, receivable 72,000, paid 572,000, premiums 0", b)
	}
	_, err = w.ledger.RequestPayout(ctx, &ledgerv1.RequestPayoutRequest{RequestId: "pay-3", FarmerId: "F1",
		Amount: &ledgerv1.RequestPayoutRequest_AllAvailable{AllAvailable: true}})
	finWantCode(t, "payout while 72,000 fen are owed", err, codes.FailedPrecondition)

	d2 := w.deliverLot(t, "D2", 100_000, 500, 50_000, 20)
	b = w.balance(t, d2)
	if b.GetAvailableFen() != 0 || b.GetReceivableFen() != 22_000 || b.GetPurchasesFen() != 550_000 {
		t.Fatalf("balance after D2: %v; want available 0, receivable 22,000, purchases 550,000", b)
	}
	tb, err := w.ledger.GetTrialBalance(ctx, &ledgerv1.GetTrialBalanceRequest{MinPosition: d2})
	if err != nil {
		t.Fatal(err)
	}
	accounts := map[string]int64{}
	for _, a := range tb.GetAccounts() {
		accounts[a.GetAccount()] = a.GetBalanceFen()
	}
	if !tb.GetBalanced() || tb.GetTotalDebitFen() != tb.GetTotalCreditFen() ||
		accounts["farmer:*:receivable"] != 22_000 || accounts["farmer:*:clawback"] != -22_000 {
		t.Fatalf("trial balance: %v", tb)
	}

	trace, err := w.ledger.TraceLot(ctx, &ledgerv1.TraceLotRequest{DeliveryId: "D1", MinPosition: d2})
	if err != nil {
		t.Fatal(err)
	}
	if c := trace.GetCurrent(); c.GetNetGrams() != 1_000_000 || c.GetAmountFen() != 500_000 || c.GetPriceFenPerKg() != 500 {
		t.Fatalf("lot as delivered: %v", c)
	}
	wantSales := []*ledgerv1.LotSale{{SaleId: "hema-1/L1", ReportId: "hema-1", LineId: "L1", BrandId: "xunwu-navel", Channel: "hema",
		Grams: 600_000, SoldAt: w.at(10), WithheldReason: int32(brandv1.WithheldReason_WITHHELD_REASON_NO_RULE)}}
	if diff := cmp.Diff(wantSales, trace.GetSales(), protocmp.Transform()); diff != "" {
		t.Errorf("sales (-want +got):\n%s", diff)
	}
	type step struct {
		kind        string
		rule        string
		version     int32
		rate, delta int64
	}
	var steps []step
	for _, e := range trace.GetPremiumEvents() {
		steps = append(steps, step{e.GetKind(), e.GetRuleId(), e.GetRuleVersion(), e.GetFenPerKg(), e.GetDeltaFen()})
	}
	wantSteps := []step{{"earned", "season", 1, 100, 60_000}, {"adjusted", "season", 2, 120, 12_000}, {"adjusted", "season", 3, 0, -72_000}}
	if diff := cmp.Diff(wantSteps, steps, cmp.AllowUnexported(step{})); diff != "" {
		t.Errorf("premium events (-want +got):\n%s", diff)
	}
	type money struct {
		kind   string
		amount int64
		parts  string
		open   int64
	}
	var got []money
	for _, e := range trace.GetEntries() {
		var parts []string
		for _, a := range e.GetAllocations() {
			parts = append(parts, a.GetKind()+":"+a.GetPayoutId()+":"+itoa(a.GetFen()))
		}
		got = append(got, money{e.GetKind(), e.GetAmountFen(), strings.Join(parts, ","), e.GetOpenFen()})
	}
	want := []money{
		{"payable", 500_000, "payout:" + po1 + ":500000", 0},
		{"premium_earned", 60_000, "payout:" + po1 + ":60000", 0},
		{"premium_adjusted", 12_000, "payout:" + po2 + ":12000", 0},
		{"premium_adjusted", -72_000, "receivable::72000", 22_000},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(money{})); diff != "" {
		t.Errorf("entries and where their money went (-want +got):\n%s", diff)
	}
	wantPayouts := []*ledgerv1.LotPayout{{PayoutId: po1, AmountFen: 560_000, LotFen: 560_000}, {PayoutId: po2, AmountFen: 12_000, LotFen: 12_000}}
	for _, p := range trace.GetPayouts() {
		p.SettledSequence = 0
	}
	if diff := cmp.Diff(wantPayouts, trace.GetPayouts(), protocmp.Transform()); diff != "" {
		t.Errorf("payouts (-want +got):\n%s", diff)
	}
	wantTotals := &ledgerv1.LotTotals{DeliveredGrams: 1_000_000, SoldGrams: 600_000, EarningGrams: 0, PayableFen: 500_000,
		PremiumFen: 0, PaidFen: 572_000, UnpaidFen: 0, ReceivableFen: 22_000}
	if !proto.Equal(wantTotals, trace.GetTotals()) {
		t.Errorf("totals: %v, want %v", trace.GetTotals(), wantTotals)
	}
	if !strings.HasPrefix(trace.GetAllocation(), "first-in first-out") {
		t.Errorf("allocation not stated: %q", trace.GetAllocation())
	}

	farmer, err := w.ledger.TraceFarmer(ctx, &ledgerv1.TraceFarmerRequest{FarmerId: "F1", MinPosition: d2})
	if err != nil {
		t.Fatal(err)
	}
	wantTotal := &ledgerv1.TraceMonth{Deliveries: 2, DeliveredGrams: 1_100_000, PayableFen: 550_000, BrandedGrams: 600_000}
	if !proto.Equal(wantTotal, farmer.GetTotal()) {
		t.Errorf("farmer's total: %v, want %v", farmer.GetTotal(), wantTotal)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
