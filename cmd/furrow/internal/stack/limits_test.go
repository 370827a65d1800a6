package stack_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/furrow/furrow/proto/furrow/admin/v1"
	brandv1 "github.com/furrow/furrow/proto/furrow/brand/v1"
	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"
	procurementv1 "github.com/furrow/furrow/proto/furrow/procurement/v1"
)

// The limits as the API documents them (README "Limits", pkg/limits).
// They are spelled out here rather than imported: the test checks the
// contract, not whatever the constants happen to say.
const (
	docMaxNetGrams      = 100_000_000               // 100 t per weigh-in
	docMaxOrderGrams    = 10_000_000_000            // 10,000 t per order
	docMaxPriceFenPerKg = 10_000_000                // 100,000 yuan per kg
	docMaxAmountFen     = 10_000_000_000_000        // 100 billion yuan
	docMaxPremium       = 1_000_000                 // 10,000 yuan per kg
	docMaxSaleGrams     = 10_000_000_000            // 10,000 t per sales line
	docMaxCodeLen       = 64                        // grades, counties, phones, accounts
	docMaxNameLen       = 200                       // names
	docMaxTextLen       = 1000                      // reasons and notes
	year318857          = int64(10_000_000_000_000) // seconds: {seconds: 1e13}
)

// runes returns n characters of a Chinese string: limits count
// characters, not bytes, so a name in hanzi gets as many as one in latin.
func runes(n int) string { return strings.Repeat("稻", n) }

// wantRefused checks that err has code, names field (in the message and,
// for INVALID_ARGUMENT, as the google.rpc.BadRequest field violation) and
// mentions each of mentions (the limit, typically).
func wantRefused(t testing.TB, err error, code codes.Code, field string, mentions ...string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code {
		t.Fatalf("err = %v, want %s naming %s", err, code, field)
	}
	if !strings.Contains(st.Message(), field) {
		t.Fatalf("message %q does not name %s", st.Message(), field)
	}
	for _, m := range mentions {
		if !strings.Contains(st.Message(), m) {
			t.Fatalf("message %q does not mention %q", st.Message(), m)
		}
	}
	if code != codes.InvalidArgument {
		return
	}
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				if v.GetField() == field {
					return
				}
			}
			t.Fatalf("BadRequest detail %v does not name %s", br, field)
		}
	}
	t.Fatalf("status %v has no BadRequest detail", st.Proto())
}

// TestEdgeLimitsAndTimestampsAppendNothing sends every kind of value the
// API refuses at its edge — quantities, prices and amounts above their
// domain limits, strings longer than the contract allows, timestamps that
// are invalid or implausible, an unknown farmer — and checks each is
// refused with the documented code naming the field and the limit, and
// that none of them appended anything to any stream. Values at the limits
// are accepted.
func TestEdgeLimitsAndTimestampsAppendNothing(t *testing.T) {
	t.Parallel()
	w := startBrandWorld(t)
	ctx := bctx(t)
	conn, err := grpc.NewClient(w.st.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	proc, admin := procurementv1.NewProcurementServiceClient(conn), adminv1.NewAdminServiceClient(conn)
	w.setUp(t, []string{"F1"}, "F1")
	c := clients{st: w.st, ledger: w.ledger, procurement: proc}
	registerIn(t, c, "QL-1", "Qinglong")
	openBaba(t, c, 300_000)
	order := place(t, c, chestnutOrder("po-1", "QL-1")).GetOrderId()
	adHoc := deliver(t, c, &procurementv1.RecordDeliveryRequest{
		RequestId: "adhoc-1", FarmerId: "F1", Product: "xunwu-navel-orange", NetGrams: 1000, PriceFenPerKg: 680,
		WeighedAt: timestamppb.Now(),
	})
	onOrder := deliver(t, c, weighIn("wh-1", order, "A", 1_000))
	if _, err := w.ledger.GetFarmerBalance(ctx, &ledgerv1.GetFarmerBalanceRequest{FarmerId: "F1", MinPosition: adHoc.GetPosition()}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.ledger.GetFarmerBalance(ctx, &ledgerv1.GetFarmerBalanceRequest{FarmerId: "QL-1", MinPosition: onOrder.GetPosition()}); err != nil {
		t.Fatal(err)
	}

	counts := func() map[string]uint64 {
		out := map[string]uint64{}
		for _, s := range []string{"PROCUREMENT", "LEDGER", "BRAND"} {
			out[s] = streamMsgs(t, c, s)
		}
		return out
	}
	before := counts()

	now := time.Now()
	// Every call has its own request id, so that each case stands alone
	// (before the limits existed, some of them were accepted).
	seq := 0
	rid := func(prefix string) string { seq++; return fmt.Sprintf("%s-%d", prefix, seq) }
	adHocWith := func(edit func(*procurementv1.RecordDeliveryRequest)) func() error {
		return func() error {
			r := &procurementv1.RecordDeliveryRequest{RequestId: rid("adhoc-bad"), FarmerId: "F1", Product: "xunwu-navel-orange",
				NetGrams: 1000, PriceFenPerKg: 680, WeighedAt: timestamppb.New(now)}
			edit(r)
			_, err := proc.RecordDelivery(ctx, r)
			return err
		}
	}
	orderWith := func(edit func(*procurementv1.PlaceOrderRequest)) func() error {
		return func() error {
			r := chestnutOrder(rid("po-bad"), "QL-1")
			edit(r)
			_, err := proc.PlaceOrder(ctx, r)
			return err
		}
	}
	programWith := func(edit func(*procurementv1.OpenProgramRequest)) func() error {
		return func() error {
			r := openRequest(1_000_000)
			r.RequestId, r.ProgramId = rid("open-bad"), rid("bad")
			edit(r)
			_, err := proc.OpenProgram(ctx, r)
			return err
		}
	}
	correctWith := func(edit func(*procurementv1.CorrectDeliveryRequest)) func() error {
		return func() error {
			r := &procurementv1.CorrectDeliveryRequest{RequestId: rid("fix-bad"), DeliveryId: adHoc.GetDeliveryId(), NetGrams: 900, Reason: "tare"}
			edit(r)
			_, err := proc.CorrectDelivery(ctx, r)
			return err
		}
	}
	farmerWith := func(edit func(*ledgerv1.RegisterFarmerRequest)) func() error {
		return func() error {
			r := &ledgerv1.RegisterFarmerRequest{RequestId: rid("reg-bad"), FarmerId: rid("F-bad"), Name: "Li Wei", County: "Xunwu",
				Cooperative: "Xunwu Co-op", Phone: "13800000000", PayoutAccount: "6222-bad"}
			edit(r)
			_, err := w.ledger.RegisterFarmer(ctx, r)
			return err
		}
	}
	saleWith := func(edit func(*brandv1.SaleLine)) func() error {
		return func() error {
			l := &brandv1.SaleLine{LineId: "L1", BrandId: "xunwu-navel", FarmerId: "F1", Grams: 1000, SoldAt: w.at(20)}
			edit(l)
			_, err := w.brand.ReportSales(ctx, &brandv1.ReportSalesRequest{ReportId: "bad", Revision: 1, Channel: "hema", Lines: []*brandv1.SaleLine{l}})
			return err
		}
	}
	farFuture := &timestamppb.Timestamp{Seconds: year318857}
	negNanos := &timestamppb.Timestamp{Seconds: now.Unix(), Nanos: -1}

	for _, tc := range []struct {
		name     string
		call     func() error
		code     codes.Code
		field    string
		mentions []string
	}{
		// Procurement: quantities, prices, amounts.
		{"net_grams over the limit", adHocWith(func(r *procurementv1.RecordDeliveryRequest) { r.NetGrams = docMaxNetGrams + 1 }),
			codes.InvalidArgument, "net_grams", []string{"100000000"}},
		{"net_grams of max int64", adHocWith(func(r *procurementv1.RecordDeliveryRequest) { r.NetGrams = 9223372036854775807 }),
			codes.InvalidArgument, "net_grams", []string{"100000000"}},
		{"net_grams over the limit on an order", func() error {
			_, err := proc.RecordDelivery(ctx, weighIn(rid("wh-bad"), order, "A", docMaxNetGrams+1))
			return err
		}, codes.InvalidArgument, "net_grams", []string{"100000000"}},
		{"price over the limit", adHocWith(func(r *procurementv1.RecordDeliveryRequest) { r.PriceFenPerKg = docMaxPriceFenPerKg + 1 }),
			codes.InvalidArgument, "price_fen_per_kg", []string{"10000000"}},
		{"unknown farmer on an ad-hoc delivery", adHocWith(func(r *procurementv1.RecordDeliveryRequest) { r.FarmerId = "NOBODY" }),
			codes.NotFound, "farmer_id", nil},
		{"product too long", adHocWith(func(r *procurementv1.RecordDeliveryRequest) { r.Product = strings.Repeat("x", docMaxCodeLen+1) }),
			codes.InvalidArgument, "product", []string{"64"}},
		{"grade too long", adHocWith(func(r *procurementv1.RecordDeliveryRequest) { r.Grade = runes(docMaxCodeLen + 1) }),
			codes.InvalidArgument, "grade", []string{"64"}},
		{"corrected net_grams over the limit", correctWith(func(r *procurementv1.CorrectDeliveryRequest) { r.NetGrams = docMaxNetGrams + 1 }),
			codes.InvalidArgument, "net_grams", []string{"100000000"}},
		{"corrected price over the limit", correctWith(func(r *procurementv1.CorrectDeliveryRequest) {
			p := int64(docMaxPriceFenPerKg + 1)
			r.PriceFenPerKg = &p
		}), codes.InvalidArgument, "price_fen_per_kg", []string{"10000000"}},
		{"correction reason too long", correctWith(func(r *procurementv1.CorrectDeliveryRequest) { r.Reason = runes(docMaxTextLen + 1) }),
			codes.InvalidArgument, "reason", []string{"1000"}},
		{"order price over the limit", orderWith(func(r *procurementv1.PlaceOrderRequest) { r.Prices[1].PriceFenPerKg = docMaxPriceFenPerKg + 1 }),
			codes.InvalidArgument, "prices[1].price_fen_per_kg", []string{"10000000"}},
		{"ordered_grams over the limit", orderWith(func(r *procurementv1.PlaceOrderRequest) { r.OrderedGrams = docMaxOrderGrams + 1 }),
			codes.InvalidArgument, "ordered_grams", []string{"10000000000"}},
		{"order warehouse too long", orderWith(func(r *procurementv1.PlaceOrderRequest) { r.OriginWarehouse = strings.Repeat("W", docMaxCodeLen+1) }),
			codes.InvalidArgument, "origin_warehouse", []string{"64"}},
		{"budget over the limit", programWith(func(r *procurementv1.OpenProgramRequest) { r.BudgetFen = docMaxAmountFen + 1 }),
			codes.InvalidArgument, "budget_fen", []string{"10000000000000"}},
		{"programme name too long", programWith(func(r *procurementv1.OpenProgramRequest) { r.Name = runes(docMaxNameLen + 1) }),
			codes.InvalidArgument, "name", []string{"200"}},
		// Procurement: timestamps.
		{"weighed_at in year 318857", adHocWith(func(r *procurementv1.RecordDeliveryRequest) { r.WeighedAt = farFuture }),
			codes.InvalidArgument, "weighed_at", nil},
		{"weighed_at with nanos -1", adHocWith(func(r *procurementv1.RecordDeliveryRequest) { r.WeighedAt = negNanos }),
			codes.InvalidArgument, "weighed_at", nil},
		{"weighed_at before 2000", adHocWith(func(r *procurementv1.RecordDeliveryRequest) {
			r.WeighedAt = timestamppb.New(time.Date(1999, 12, 31, 0, 0, 0, 0, time.UTC))
		}), codes.InvalidArgument, "weighed_at", []string{"2000"}},
		{"weighed_at more than a year ahead", adHocWith(func(r *procurementv1.RecordDeliveryRequest) {
			r.WeighedAt = timestamppb.New(now.AddDate(1, 0, 7))
		}), codes.InvalidArgument, "weighed_at", nil},
		{"weighed_at with nanos -1 on an order", func() error {
			r := weighIn(rid("wh-bad"), order, "A", 1_000)
			r.WeighedAt = &timestamppb.Timestamp{Seconds: nov15.GetSeconds(), Nanos: -1}
			_, err := proc.RecordDelivery(ctx, r)
			return err
		}, codes.InvalidArgument, "weighed_at", nil},
		{"period_start invalid", programWith(func(r *procurementv1.OpenProgramRequest) { r.PeriodStart.Nanos = -1 }),
			codes.InvalidArgument, "period_start", nil},
		{"period_end in year 318857", programWith(func(r *procurementv1.OpenProgramRequest) { r.PeriodEnd = farFuture }),
			codes.InvalidArgument, "period_end", nil},
		{"window_start invalid", orderWith(func(r *procurementv1.PlaceOrderRequest) { r.WindowStart.Nanos = 1_000_000_000 }),
			codes.InvalidArgument, "window_start", nil},
		{"window_end in year 318857", orderWith(func(r *procurementv1.PlaceOrderRequest) { r.WindowEnd = farFuture }),
			codes.InvalidArgument, "window_end", nil},

		// Ledger.
		{"farmer name too long", farmerWith(func(r *ledgerv1.RegisterFarmerRequest) { r.Name = runes(docMaxNameLen + 1) }),
			codes.InvalidArgument, "name", []string{"200"}},
		{"farmer county too long", farmerWith(func(r *ledgerv1.RegisterFarmerRequest) { r.County = runes(docMaxCodeLen + 1) }),
			codes.InvalidArgument, "county", []string{"64"}},
		{"cooperative too long", farmerWith(func(r *ledgerv1.RegisterFarmerRequest) { r.Cooperative = runes(docMaxNameLen + 1) }),
			codes.InvalidArgument, "cooperative", []string{"200"}},
		{"phone too long", farmerWith(func(r *ledgerv1.RegisterFarmerRequest) { r.Phone = strings.Repeat("1", docMaxCodeLen+1) }),
			codes.InvalidArgument, "phone", []string{"64"}},
		{"payout account too long", farmerWith(func(r *ledgerv1.RegisterFarmerRequest) { r.PayoutAccount = strings.Repeat("6", docMaxCodeLen+1) }),
			codes.InvalidArgument, "payout_account", []string{"64"}},
		{"updated payout account too long", func() error {
			_, err := w.ledger.UpdatePayoutAccount(ctx, &ledgerv1.UpdatePayoutAccountRequest{RequestId: rid("acct-bad"), FarmerId: "F1", PayoutAccount: strings.Repeat("6", docMaxCodeLen+1)})
			return err
		}, codes.InvalidArgument, "payout_account", []string{"64"}},
		{"payout over the limit", func() error {
			_, err := w.ledger.RequestPayout(ctx, &ledgerv1.RequestPayoutRequest{RequestId: rid("pay-bad"), FarmerId: "F1",
				Amount: &ledgerv1.RequestPayoutRequest_AmountFen{AmountFen: docMaxAmountFen + 1}})
			return err
		}, codes.InvalidArgument, "amount_fen", []string{"10000000000000"}},
		{"break note too long", func() error {
			_, err := w.ledger.ResolvePayoutBreak(ctx, &ledgerv1.ResolvePayoutBreakRequest{RequestId: rid("res-bad"), BreakId: "B0123456789abcdef",
				Decision: ledgerv1.BreakDecision_BREAK_DECISION_ACCEPTED, Note: runes(docMaxTextLen + 1)})
			return err
		}, codes.InvalidArgument, "note", []string{"1000"}},
		{"balance at an invalid time", func() error {
			_, err := w.ledger.GetFarmerBalanceAt(ctx, &ledgerv1.GetFarmerBalanceAtRequest{FarmerId: "F1",
				At: &ledgerv1.GetFarmerBalanceAtRequest_Time{Time: negNanos}})
			return err
		}, codes.InvalidArgument, "time", nil},
		{"statement to year 318857", func() error {
			_, err := w.ledger.GetFarmerStatement(ctx, &ledgerv1.GetFarmerStatementRequest{FarmerId: "F1", To: farFuture})
			return err
		}, codes.InvalidArgument, "to", nil},
		{"reconcile from before 2000", func() error {
			_, err := w.ledger.ReconcilePayouts(ctx, &ledgerv1.ReconcilePayoutsRequest{
				From: timestamppb.New(time.Date(1999, 1, 1, 0, 0, 0, 0, time.UTC))})
			return err
		}, codes.InvalidArgument, "from", []string{"2000"}},

		// Brand.
		{"sold_at with nanos -1", saleWith(func(l *brandv1.SaleLine) {
			l.SoldAt = &timestamppb.Timestamp{Seconds: w.at(20).GetSeconds(), Nanos: -1}
		}),
			codes.InvalidArgument, "lines[0].sold_at", nil},
		{"sold_at in year 318857", saleWith(func(l *brandv1.SaleLine) { l.SoldAt = farFuture }),
			codes.InvalidArgument, "lines[0].sold_at", nil},
		{"sold_at before the epoch of timestamps", saleWith(func(l *brandv1.SaleLine) { l.SoldAt = &timestamppb.Timestamp{Seconds: -62135596801} }),
			codes.InvalidArgument, "lines[0].sold_at", nil},
		{"sale grams over the limit", saleWith(func(l *brandv1.SaleLine) { l.Grams = docMaxSaleGrams + 1 }),
			codes.InvalidArgument, "lines[0].grams", []string{"10000000000"}},
		{"premium rate over the limit", func() error {
			_, err := w.brand.SetPremiumRule(ctx, &brandv1.SetPremiumRuleRequest{RequestId: rid("rule-bad"), BrandId: "xunwu-navel", Channel: "hema",
				RuleId: "other", FenPerKg: docMaxPremium + 1, EffectiveFrom: w.day(-20), EffectiveTo: w.day(-10)})
			return err
		}, codes.InvalidArgument, "fen_per_kg", []string{"1000000"}},
		{"revised rate over the limit", func() error {
			_, err := w.brand.ReviseRule(ctx, &brandv1.ReviseRuleRequest{RequestId: rid("rev-bad"), BrandId: "xunwu-navel", Channel: "hema",
				RuleId: "season", FenPerKg: docMaxPremium + 1, Reason: "r"})
			return err
		}, codes.InvalidArgument, "fen_per_kg", []string{"1000000"}},
		{"revision reason too long", func() error {
			_, err := w.brand.ReviseRule(ctx, &brandv1.ReviseRuleRequest{RequestId: rid("rev-bad"), BrandId: "xunwu-navel", Channel: "hema",
				RuleId: "season", FenPerKg: 120, Reason: runes(docMaxTextLen + 1)})
			return err
		}, codes.InvalidArgument, "reason", []string{"1000"}},
		{"rule date not strictly YYYY-MM-DD", func() error {
			_, err := w.brand.SetPremiumRule(ctx, &brandv1.SetPremiumRuleRequest{RequestId: rid("rule-bad"), BrandId: "xunwu-navel", Channel: "hema",
				RuleId: "other", FenPerKg: 50, EffectiveFrom: "2025-1-01"})
			return err
		}, codes.InvalidArgument, "effective_from", nil},
		{"rule date that does not exist", func() error {
			_, err := w.brand.SetPremiumRule(ctx, &brandv1.SetPremiumRuleRequest{RequestId: rid("rule-bad"), BrandId: "xunwu-navel", Channel: "hema",
				RuleId: "other", FenPerKg: 50, EffectiveFrom: "2025-02-30"})
			return err
		}, codes.InvalidArgument, "effective_from", nil},
		{"brand name too long", func() error {
			_, err := w.brand.RegisterBrand(ctx, &brandv1.RegisterBrandRequest{RequestId: rid("brand-bad"), BrandId: "long-name",
				Kind: brandv1.BrandKind_BRAND_KIND_REGIONAL_PRODUCT, Name: runes(docMaxNameLen + 1), County: "Xunwu"})
			return err
		}, codes.InvalidArgument, "name", []string{"200"}},
		{"channel name too long", func() error {
			_, err := w.brand.RegisterChannel(ctx, &brandv1.RegisterChannelRequest{RequestId: rid("ch-bad"), ChannelId: "long", Name: runes(docMaxNameLen + 1)})
			return err
		}, codes.InvalidArgument, "name", []string{"200"}},
		{"stage note too long", func() error {
			_, err := w.brand.ChangeBrandStage(ctx, &brandv1.ChangeBrandStageRequest{RequestId: rid("stage-bad"), BrandId: "xunwu-navel",
				Stage: brandv1.BrandStage_BRAND_STAGE_LAUNCHED, Note: runes(docMaxTextLen + 1)})
			return err
		}, codes.InvalidArgument, "note", []string{"1000"}},
		{"suspension reason too long", func() error {
			_, err := w.brand.SuspendFarmer(ctx, &brandv1.SuspendFarmerRequest{RequestId: rid("susp-bad"), BrandId: "xunwu-navel", FarmerId: "F1",
				SuspendedFrom: w.day(30), Reason: runes(docMaxTextLen + 1)})
			return err
		}, codes.InvalidArgument, "reason", []string{"1000"}},

		// Admin.
		{"rebuild from an invalid time", func() error {
			_, err := admin.RebuildProjection(ctx, &adminv1.RebuildProjectionRequest{Name: w.st.Projections()[0].Name(),
				FromTime: &timestamppb.Timestamp{Seconds: year318857}})
			return err
		}, codes.InvalidArgument, "from_time", nil},

		// Last: before the limits, these closed the programme and cancelled the order.
		{"close reason too long", func() error {
			_, err := proc.CloseProgram(ctx, &procurementv1.CloseProgramRequest{RequestId: "close-bad", ProgramId: "baba-2025", Reason: runes(docMaxTextLen + 1)})
			return err
		}, codes.InvalidArgument, "reason", []string{"1000"}},
		{"cancel reason too long", func() error {
			_, err := proc.CancelOrder(ctx, &procurementv1.CancelOrderRequest{RequestId: "cancel-bad", OrderId: order, Reason: runes(docMaxTextLen + 1)})
			return err
		}, codes.InvalidArgument, "reason", []string{"1000"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantRefused(t, tc.call(), tc.code, tc.field, tc.mentions...)
		})
	}

	// A bad line of RecordDeliveries is refused on its own, with the code
	// and message it would get alone.
	res, err := proc.RecordDeliveries(ctx, &procurementv1.RecordDeliveriesRequest{Lines: []*procurementv1.RecordDeliveryRequest{
		{RequestId: "bulk-1", FarmerId: "F1", Product: "xunwu-navel-orange", NetGrams: 1000, PriceFenPerKg: 680, WeighedAt: farFuture},
		{RequestId: "bulk-2", FarmerId: "F1", Product: "xunwu-navel-orange", NetGrams: docMaxNetGrams + 1, PriceFenPerKg: 680},
		{RequestId: "bulk-3", FarmerId: "NOBODY", Product: "xunwu-navel-orange", NetGrams: 1000, PriceFenPerKg: 680},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []struct{ code, field string }{{"INVALID_ARGUMENT", "weighed_at"}, {"INVALID_ARGUMENT", "net_grams"}, {"NOT_FOUND", "farmer_id"}} {
		le := res.GetResults()[i].GetError()
		if le.GetCode() != want.code || !strings.Contains(le.GetMessage(), want.field) {
			t.Errorf("line %d: %v, want %s naming %s", i, le, want.code, want.field)
		}
	}
	if res.GetRefused() != 3 || res.GetRecorded() != 0 {
		t.Errorf("RecordDeliveries = %d recorded, %d refused; want 0, 3", res.GetRecorded(), res.GetRefused())
	}

	if after := counts(); after["PROCUREMENT"] != before["PROCUREMENT"] || after["LEDGER"] != before["LEDGER"] || after["BRAND"] != before["BRAND"] {
		t.Fatalf("refused requests appended events: before %v, after %v", before, after)
	}

	// The limits are inclusive, and count characters: a weigh-in of
	// exactly 100 t at exactly 100,000 yuan/kg, a farmer whose name is 200
	// hanzi and a stage note of 1000 are accepted.
	atMax := deliver(t, c, &procurementv1.RecordDeliveryRequest{RequestId: "adhoc-max", FarmerId: "F1", Product: "xunwu-navel-orange",
		NetGrams: docMaxNetGrams, PriceFenPerKg: docMaxPriceFenPerKg})
	if atMax.GetAmountFen() != docMaxNetGrams*docMaxPriceFenPerKg/1000 {
		t.Fatalf("amount at the limits = %d", atMax.GetAmountFen())
	}
	must(t, farmerWith(func(r *ledgerv1.RegisterFarmerRequest) {
		r.Name, r.County, r.Cooperative = runes(docMaxNameLen), runes(docMaxCodeLen), runes(docMaxNameLen)
	}))
	must(t, func() error {
		_, err := w.brand.ChangeBrandStage(ctx, &brandv1.ChangeBrandStageRequest{RequestId: "stage-max", BrandId: "xunwu-navel",
			Stage: brandv1.BrandStage_BRAND_STAGE_LAUNCHED, EffectiveOn: w.day(1), Note: runes(docMaxTextLen)})
		return err
	})
	if _, err := w.ledger.GetFarmerBalance(context.WithoutCancel(ctx), &ledgerv1.GetFarmerBalanceRequest{FarmerId: "F1", MinPosition: atMax.GetPosition()}); err != nil {
		t.Fatal(err)
	}
}
