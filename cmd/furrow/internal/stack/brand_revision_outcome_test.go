package stack_test

import (
	"testing"

	"google.golang.org/protobuf/proto"

	brandevents "github.com/furrow/furrow/proto/furrow/brand/events/v1"
	brandv1 "github.com/furrow/furrow/proto/furrow/brand/v1"

	"github.com/furrow/furrow/pkg/eventstore"

	"github.com/furrow/furrow/services/brand-incubation/domain"
)

// written sums the PremiumAdjusted events a rule revision caused in a
// report, read from the BRAND stream: what a ReviseRule reply must say.
type written struct {
	Sales    int32
	DeltaFen int64
	// Last is the sequence of the last of them.
	Last uint64
}

func (w *brandWorld) revisionWrote(t testing.TB, reportID, brandID, ruleID string, version int32) written {
	t.Helper()
	recs, err := eventstore.New(w.st.JetStream()).Load(bctx(t), domain.Stream, domain.ReportAggregate(reportID), 0)
	if err != nil {
		t.Fatal(err)
	}
	var out written
	for _, rec := range recs {
		msg, err := eventstore.Decode(rec)
		if err != nil {
			t.Fatal(err)
		}
		a, ok := msg.(*brandevents.PremiumAdjusted)
		if !ok || a.GetCause() != domain.CauseRuleRevised || a.GetBrandId() != brandID || a.GetRuleId() != ruleID || a.GetRuleVersion() != version {
			continue
		}
		out.Sales++
		out.DeltaFen += a.GetDeltaFen()
		out.Last = rec.Sequence
	}
	return out
}

// TestRevisionOutcomeIsItsOwnAndRetriesRepeatIt: two brands each have a
// rule "season" at hema, and one report sells both. A ReviseRule reply
// counts exactly the adjustments its revision wrote (not the other
// brand's of the same rule id and version), at the position of the last
// of them; a retry, even after the other brand's revisions touched the
// same report, returns the first reply exactly. A retried ReportSales
// likewise returns its first reply, changed_lines included.
func TestRevisionOutcomeIsItsOwnAndRetriesRepeatIt(t *testing.T) {
	t.Parallel()
	w := startBrandWorld(t)
	ctx := bctx(t)
	w.setUp(t, []string{"F1", "F2", "F3"}, "F1", "F2")
	// Gannan navel orange: F3 enrolled, its own rule "season" at hema.
	must(t, func() error {
		_, err := w.brand.RegisterBrand(ctx, &brandv1.RegisterBrandRequest{
			RequestId: "brand-gannan", BrandId: "gannan-navel", Kind: brandv1.BrandKind_BRAND_KIND_REGIONAL_PRODUCT,
			Name: "Gannan navel orange", County: "Xunwu", ProductCategory: "citrus", RegisteredOn: w.day(-30),
		})
		return err
	})
	must(t, func() error {
		_, err := w.brand.EnrolFarmer(ctx, &brandv1.EnrolFarmerRequest{
			RequestId: "enrol-gannan-F3", BrandId: "gannan-navel", FarmerId: "F3", EnrolledFrom: w.day(0), Certificate: "GI-F3",
		})
		return err
	})
	must(t, func() error {
		_, err := w.brand.SetPremiumRule(ctx, &brandv1.SetPremiumRuleRequest{
			RequestId: "rule-gannan-season", BrandId: "gannan-navel", Channel: "hema", RuleId: "season", FenPerKg: 100, EffectiveFrom: w.day(0),
		})
		return err
	})

	report := &brandv1.ReportSalesRequest{ReportId: "hema-mixed", Revision: 1, Channel: "hema", Lines: []*brandv1.SaleLine{
		{LineId: "A1", BrandId: "xunwu-navel", FarmerId: "F1", Grams: 123_457, SoldAt: w.at(20)},
		{LineId: "A2", BrandId: "xunwu-navel", FarmerId: "F2", Grams: 250_001, SoldAt: w.at(25)},
		{LineId: "A3", BrandId: "xunwu-navel", FarmerId: "F1", Grams: 40_000, SoldAt: w.at(5)}, // before the revised day
		{LineId: "B1", BrandId: "gannan-navel", FarmerId: "F3", Grams: 310_003, SoldAt: w.at(20)},
		{LineId: "B2", BrandId: "gannan-navel", FarmerId: "F3", Grams: 77_777, SoldAt: w.at(30)},
		{LineId: "B3", BrandId: "gannan-navel", FarmerId: "F3", Grams: 5_000, SoldAt: w.at(22)},
	}}
	rep, err := w.brand.ReportSales(ctx, report)
	if err != nil {
		t.Fatal(err)
	}
	if rep.GetChangedLines() != 6 {
		t.Fatalf("first report: %d changed lines, want 6", rep.GetChangedLines())
	}
	if again, err := w.brand.ReportSales(ctx, report); err != nil || !proto.Equal(again, rep) {
		t.Errorf("retried report: changed_lines %d, position %v; first: %d, %v",
			again.GetChangedLines(), again.GetPosition(), rep.GetChangedLines(), rep.GetPosition())
	}

	revise := func(requestID, brandID string, fenPerKg int64) *brandv1.ReviseRuleResponse {
		t.Helper()
		res, err := w.brand.ReviseRule(ctx, &brandv1.ReviseRuleRequest{RequestId: requestID, BrandId: brandID, Channel: "hema",
			RuleId: "season", FenPerKg: fenPerKg, RevisedFrom: w.day(10), Reason: "shelf price " + requestID})
		if err != nil {
			t.Fatalf("ReviseRule(%s): %v", requestID, err)
		}
		return res
	}
	check := func(what string, got *brandv1.ReviseRuleResponse, brandID string, version int32) {
		t.Helper()
		want := w.revisionWrote(t, "hema-mixed", brandID, "season", version)
		reply := written{got.GetAdjustedSales(), got.GetDeltaFen(), got.GetPosition().GetSequence()}
		if got.GetRuleVersion() != version || reply != want {
			t.Errorf("%s: reply v%d %+v, events written v%d %+v", what, got.GetRuleVersion(), reply, version, want)
		}
	}

	// Xunwu's "season" 100 → 130 from day 10: A1 and A2 only.
	revA := revise("rev-xunwu-1", "xunwu-navel", 130)
	check("xunwu's first revision", revA, "xunwu-navel", 2)
	// Gannan's "season" reaches version 2 too, in the same report.
	revB := revise("rev-gannan-1", "gannan-navel", 150)
	check("gannan's first revision", revB, "gannan-navel", 2)
	// Re-sending xunwu's acknowledged revision: its first reply, exactly.
	if again := revise("rev-xunwu-1", "xunwu-navel", 130); !proto.Equal(again, revA) {
		t.Errorf("retried xunwu revision: %d / %d @%d, first %d / %d @%d", again.GetAdjustedSales(), again.GetDeltaFen(),
			again.GetPosition().GetSequence(), revA.GetAdjustedSales(), revA.GetDeltaFen(), revA.GetPosition().GetSequence())
	}

	// Now gannan revises first, and xunwu's version 3 meets gannan's.
	revB3 := revise("rev-gannan-2", "gannan-navel", 170)
	check("gannan's second revision", revB3, "gannan-navel", 3)
	revA3 := revise("rev-xunwu-2", "xunwu-navel", 90)
	check("xunwu's second revision", revA3, "xunwu-navel", 3)
	for _, tc := range []struct {
		id, brand string
		fen       int64
		first     *brandv1.ReviseRuleResponse
	}{
		{"rev-xunwu-1", "xunwu-navel", 130, revA}, {"rev-gannan-1", "gannan-navel", 150, revB},
		{"rev-gannan-2", "gannan-navel", 170, revB3}, {"rev-xunwu-2", "xunwu-navel", 90, revA3},
	} {
		if again := revise(tc.id, tc.brand, tc.fen); !proto.Equal(again, tc.first) {
			t.Errorf("retried %s: %d / %d @%v, first %d / %d @%v", tc.id, again.GetAdjustedSales(), again.GetDeltaFen(),
				again.GetPosition().GetSequence(), tc.first.GetAdjustedSales(), tc.first.GetDeltaFen(), tc.first.GetPosition().GetSequence())
		}
	}

	// The report was re-rated four times since: a retry still says what
	// the report call did.
	if again, err := w.brand.ReportSales(ctx, report); err != nil || !proto.Equal(again, rep) {
		t.Errorf("report retried after the revisions:\n got %v, %v\nwant %v", again, err, rep)
	}
}
