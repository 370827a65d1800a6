package app_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	brandevents "github.com/furrow/furrow/proto/furrow/brand/events/v1"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/failure"

	"github.com/furrow/furrow/services/brand-incubation/app"
	"github.com/furrow/furrow/services/brand-incubation/domain"
)

// saleOn is sale(line, grams) sold at noon CST on day (2026-MM-DD).
func saleOn(line string, grams int64, day string) domain.SaleLine {
	l := sale(line, grams)
	d, err := time.ParseInLocation(time.DateOnly, day, time.FixedZone("CST", 8*3600))
	if err != nil {
		panic(err)
	}
	l.SoldAt = d.Add(12 * time.Hour)
	return l
}

// adjustments returns the PremiumAdjusted events of a report.
func adjustments(t testing.TB, h *harness, reportID string) []*brandevents.PremiumAdjusted {
	t.Helper()
	evs, err := h.store.Load(testCtx(t), domain.Stream, domain.ReportAggregate(reportID), 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []*brandevents.PremiumAdjusted
	for _, ev := range evs {
		msg, err := eventstore.Decode(ev)
		if err != nil {
			t.Fatal(err)
		}
		if a, ok := msg.(*brandevents.PremiumAdjusted); ok {
			out = append(out, a)
		}
	}
	return out
}

// TestEndRuleReratesTheSalesAfterItsEnd: ending the open-ended rule
// "season" (from 2026-10-01) on 2026-10-31 takes the premium of a November
// sale back to nothing, exactly as the preview said, leaves the October
// sale alone, is idempotent, and lets a November rule be set where the
// open-ended one blocked it.
func TestEndRuleReratesTheSalesAfterItsEnd(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.setUp(t)
	ctx := testCtx(t)
	if _, err := h.app.ReportSales(ctx, report("r1", saleOn("oct", 400_000, "2026-10-15"), saleOn("nov", 600_000, "2026-11-10"))); err != nil {
		t.Fatal(err)
	}
	later := app.SetPremiumRule{RequestID: "r2", Fingerprint: "r2", BrandID: "xunwu", Channel: "hema",
		Rule: domain.NewRule{RuleID: "winter", FenPerKg: 150, EffectiveFrom: "2026-11-01"}}
	if _, err := h.app.SetPremiumRule(ctx, later); failure.KindOf(err) != failure.KindFailedPrecondition {
		t.Fatalf("a rule overlapping the open-ended one: %v, want a failed precondition", err)
	}

	ending := domain.Ending{RuleID: "season", EffectiveTo: "2026-10-31", Reason: "season over"}
	preview, err := h.app.PreviewEndRule(ctx, app.PreviewEndRule{BrandID: "xunwu", Channel: "hema", Ending: ending})
	if err != nil {
		t.Fatal(err)
	}
	wantFarmers := []domain.FarmerDelta{{FarmerID: "F1", Sales: 1, Grams: 600_000, BeforeFen: 60_000, AfterFen: 0, DeltaFen: -60_000}}
	if diff := cmp.Diff(wantFarmers, preview.Farmers); diff != "" || preview.RuleVersion != 2 || !preview.Changed {
		t.Fatalf("preview (-want +got):\n%s%+v", diff, preview)
	}
	cmd := app.EndRule{RequestID: "end", Fingerprint: "end", BrandID: "xunwu", Channel: "hema", Ending: ending}
	for attempt := range 2 {
		out, err := h.app.EndRule(ctx, cmd)
		if err != nil {
			t.Fatal(err)
		}
		if !out.Changed || out.RuleVersion != 2 || out.Adjusted != 1 || out.DeltaFen != -60_000 {
			t.Fatalf("attempt %d: %+v, want version 2, one sale, -60000 fen", attempt, out)
		}
	}
	rep, err := h.app.SalesReport(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if rep.PremiumFen() != 40_000 {
		t.Errorf("report premium %d fen, want only October's 400 kg × 100 = 40000", rep.PremiumFen())
	}
	adj := adjustments(t, h, "r1")
	if len(adj) != 1 || adj[0].GetCause() != domain.CauseRuleEnded || adj[0].GetWithheldReason() != domain.WithheldNoRule ||
		adj[0].GetRuleId() != "season" || adj[0].GetRuleVersion() != 2 {
		t.Fatalf("adjustments: %v", adj)
	}
	// The reaction finds nothing left to do.
	rs, err := h.app.RuleSet(ctx, "xunwu", "hema")
	if err != nil {
		t.Fatal(err)
	}
	if r := rs.Rule("season"); r.OpenEnded || r.To.String() != "2026-10-31" || r.EndReason != "season over" {
		t.Fatalf("rule after the end: %+v", r)
	}
	if _, err := h.app.SetPremiumRule(ctx, later); err != nil {
		t.Fatalf("a rule after the end: %v", err)
	}
	if n := len(adjustments(t, h, "r1")); n != 1 {
		t.Errorf("%d adjustments after the later rule, want still 1", n)
	}
	// Ending on the same day again changes nothing; ending later is refused.
	same, err := h.app.EndRule(ctx, app.EndRule{RequestID: "end2", Fingerprint: "end2", BrandID: "xunwu", Channel: "hema", Ending: ending})
	if err != nil || same.Changed {
		t.Fatalf("ending again on the same day: %+v %v", same, err)
	}
	_, err = h.app.EndRule(ctx, app.EndRule{RequestID: "end3", Fingerprint: "end3", BrandID: "xunwu", Channel: "hema",
		Ending: domain.Ending{RuleID: "season", EffectiveTo: "2026-11-15", Reason: "longer"}})
	if failure.KindOf(err) != failure.KindFailedPrecondition {
		t.Fatalf("lengthening an ended rule: %v, want a failed precondition", err)
	}
}

// TestZeroDeltaReratingWritesNothing: 3 g at 100 fen/kg earn 0.3 fen,
// rounded to 0; revised to 120 fen/kg they still earn 0 fen. The revision
// changes no premium, so it writes no PremiumAdjusted (the ledger would
// post a zero entry) and counts no adjusted sale.
func TestZeroDeltaReratingWritesNothing(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.setUp(t)
	ctx := testCtx(t)
	if _, err := h.app.ReportSales(ctx, report("r1", sale("tiny", 3), sale("big", 10_000))); err != nil {
		t.Fatal(err)
	}
	out, err := h.app.ReviseRule(ctx, app.ReviseRule{RequestID: "rv", Fingerprint: "rv", BrandID: "xunwu", Channel: "hema",
		Revision: domain.Revision{RuleID: "season", FenPerKg: 120, Reason: "better price"}})
	if err != nil {
		t.Fatal(err)
	}
	if out.Adjusted != 1 || out.DeltaFen != 200 {
		t.Errorf("revision: %+v, want one sale adjusted by 10 kg × 20 = 200 fen", out)
	}
	for _, a := range adjustments(t, h, "r1") {
		if a.GetDeltaFen() == 0 {
			t.Errorf("a zero-delta adjustment was written: %v", a)
		}
	}
	_, err = h.app.EndRule(ctx, app.EndRule{RequestID: "end", Fingerprint: "end", BrandID: "xunwu", Channel: "hema",
		Ending: domain.Ending{RuleID: "season", EffectiveTo: "2026-11-01", Reason: "stop"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range adjustments(t, h, "r1") {
		if a.GetDeltaFen() == 0 {
			t.Errorf("a zero-delta adjustment was written: %v", a)
		}
	}
}

// TestRestatementWithoutMoneyWritesNoAdjustment: under a rule of 0 fen/kg
// a sale earns 0 fen; a restatement that changes its grams changes no
// premium, so it writes no (zero-delta) PremiumAdjusted, which the ledger
// would turn into a zero entry, but a SaleRestated: the report and the
// premium read model follow the new grams all the same.
func TestRestatementWithoutMoneyWritesNoAdjustment(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.setUp(t)
	ctx := testCtx(t)
	// Revise the season rule to 0 fen/kg, then sell under it.
	if _, err := h.app.ReviseRule(ctx, app.ReviseRule{RequestID: "rv0", Fingerprint: "rv0", BrandID: "xunwu", Channel: "hema",
		Revision: domain.Revision{RuleID: "season", FenPerKg: 0, Reason: "promotion without premium"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.app.ReportSales(ctx, report("r1", sale("L1", 5_000))); err != nil {
		t.Fatal(err)
	}
	restated := report("r1", sale("L1", 7_000))
	restated.Report.Revision, restated.Fingerprint = 2, "r1#2"
	out, err := h.app.ReportSales(ctx, restated)
	if err != nil {
		t.Fatal(err)
	}
	if out.ChangedLines != 1 {
		t.Errorf("changed lines %d, want 1", out.ChangedLines)
	}
	for _, a := range adjustments(t, h, "r1") {
		if a.GetDeltaFen() == 0 {
			t.Errorf("a zero-delta adjustment was written: %v", a)
		}
	}
	rep, err := h.app.SalesReport(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if s := rep.Sales()[0]; s.Grams != 7_000 || s.PremiumFen != 0 || !s.Earning() {
		t.Fatalf("sale after the restatement: %+v, want 7 kg earning 0 fen", s)
	}
	evs, err := h.store.Load(ctx, domain.Stream, "brand.report.r1.sale_restated", 0)
	if err != nil || len(evs) != 1 {
		t.Fatalf("SaleRestated events: %d, %v; want 1", len(evs), err)
	}
}
