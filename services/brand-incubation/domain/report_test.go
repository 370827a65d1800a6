package domain_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	brandevents "github.com/furrow/furrow/proto/furrow/brand/events/v1"

	"github.com/furrow/furrow/pkg/failure"

	"github.com/furrow/furrow/services/brand-incubation/domain"
)

// world is a brand at a channel with farmers in every standing:
//
//	F1, F2  enrolled from 2026-11-01
//	F3      registered with the ledger, never enrolled
//	F4      enrolled from 2026-11-20
//	F5      enrolled from 2026-11-01, suspended from 2026-11-10
//	F6      enrolled from 2026-10-01 (before any rule)
//	GHOST   not registered with the ledger
//
// The rule "season" pays 100 fen/kg at hema from 2026-11-01 to 2027-01-31.
// Delivery D1 is F1's.
type world struct {
	s      seq
	brand  *domain.Brand
	rules  *domain.RuleSet
	facts  domain.SaleFacts
	report *domain.Report
}

var now = cst("2026-11-28", "12:00")

func newWorld(t testing.TB) *world {
	t.Helper()
	w := &world{}
	w.brand = registeredBrand(t, &w.s, "xunwu")
	w.rules = ruleSet(t, &w.s, w.brand, "hema",
		domain.NewRule{RuleID: "season", FenPerKg: 100, EffectiveFrom: "2026-11-01", EffectiveTo: "2027-01-31"})
	w.facts = domain.SaleFacts{
		Now: now, ChannelRegistered: true,
		Brands:     map[string]*domain.Brand{"xunwu": w.brand},
		RuleSets:   map[string]*domain.RuleSet{"xunwu": w.rules},
		Enrolments: map[string]*domain.Enrolment{},
		Farmers:    map[string]bool{"F1": true, "F2": true, "F3": true, "F4": true, "F5": true, "F6": true},
		Deliveries: map[string]string{"D1": "F1"},
		LotGrams:   map[string]int64{"D1": 50_000},
	}
	for farmer, from := range map[string]string{"F1": "2026-11-01", "F2": "2026-11-01", "F4": "2026-11-20", "F5": "2026-11-01", "F6": "2026-10-01"} {
		w.facts.Enrolments[domain.EnrolmentID("xunwu", farmer)] = enrolled(t, &w.s, w.brand, farmer, from)
	}
	f5 := w.facts.Enrolments[domain.EnrolmentID("xunwu", "F5")]
	sus, err := f5.Suspend("2026-11-10", "failed inspection", d("2026-11-10"))
	if err != nil {
		t.Fatal(err)
	}
	w.s.apply(t, f5, domain.Change{Event: sus})
	w.report = domain.NewReport("hema-2026-11")
	return w
}

// record reports in and applies its events, returning them.
func (w *world) record(t testing.TB, revision uint32, lines ...domain.SaleLine) []domain.Change {
	t.Helper()
	changes, err := w.report.Record(domain.SalesReport{ReportID: w.report.ID(), Revision: revision, Channel: "hema", Lines: lines}, w.facts)
	if err != nil {
		t.Fatalf("Record revision %d: %v", revision, err)
	}
	w.s.apply(t, w.report, changes...)
	return changes
}

func line(id, farmer string, grams int64, soldAt time.Time) domain.SaleLine {
	return domain.SaleLine{LineID: id, BrandID: "xunwu", FarmerID: farmer, Grams: grams, SoldAt: soldAt}
}

func kinds(changes []domain.Change) []string {
	var out []string
	for _, c := range changes {
		out = append(out, c.Kind)
	}
	return out
}

func TestReportEarnsAtTheRuleInForce(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	soldAt := cst("2026-11-28", "10:00")
	got := w.record(t, 1, line("L1", "F1", 1_234_567, soldAt))
	want := []domain.Change{
		{Kind: domain.KindSalesReported, Event: &brandevents.SalesReported{
			ReportId: "hema-2026-11", Revision: 1, Channel: "hema", LineCount: 1,
			RuleSets: []*brandevents.RuleSetVersion{{BrandId: "xunwu", Version: w.rules.Version()}},
		}},
		{Kind: domain.KindPremiumEarned, Event: &brandevents.PremiumEarned{
			SaleId: "hema-2026-11/L1", BrandId: "xunwu", FarmerId: "F1", Channel: "hema", Grams: 1_234_567,
			RuleId: "season", RuleVersion: 1, FenPerKg: 100, PremiumFen: 123_457, SoldAt: timestamppb.New(soldAt),
			ReportId: "hema-2026-11", ReportRevision: 1, LineId: "L1",
		}},
	}
	if diff := cmp.Diff(want, got, cmpProto); diff != "" {
		t.Fatalf("events (-want +got):\n%s", diff)
	}
	if w.report.PremiumFen() != 123_457 || w.report.Revision() != 1 || w.report.Channel() != "hema" {
		t.Fatalf("report after apply: %d fen, revision %d", w.report.PremiumFen(), w.report.Revision())
	}
}

// TestSaleDayIsChinaStandardTime: 2026-10-31 17:00 UTC is 2026-11-01 01:00
// in Shanghai, inside the rule; 15:59 UTC is still October, outside.
func TestSaleDayIsChinaStandardTime(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	got := w.record(t, 1,
		line("in", "F6", 1000, time.Date(2026, 10, 31, 17, 0, 0, 0, time.UTC)),
		line("out", "F6", 1000, time.Date(2026, 10, 31, 15, 59, 0, 0, time.UTC)))
	if diff := cmp.Diff([]string{domain.KindSalesReported, domain.KindPremiumEarned, domain.KindPremiumWithheld}, kinds(got)); diff != "" {
		t.Fatalf("kinds (-want +got):\n%s", diff)
	}
	if r := got[2].Event.(*brandevents.PremiumWithheld).GetReason(); r != domain.WithheldNoRule {
		t.Fatalf("reason %d", r)
	}
}

func TestReportRecordsWhyASaleEarnedNothing(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	retired := registeredBrand(t, &w.s, "old")
	ev, err := retired.ChangeStage(domain.StageRetired, "2026-11-15", "", d("2026-11-15"))
	if err != nil {
		t.Fatal(err)
	}
	w.s.apply(t, retired, domain.Change{Event: ev})
	w.facts.Brands["old"] = retired
	w.facts.RuleSets["old"] = ruleSet(t, &w.s, registeredBrand(t, &w.s, "old"), "hema",
		domain.NewRule{RuleID: "r", FenPerKg: 50, EffectiveFrom: "2026-01-01"})
	w.facts.Enrolments[domain.EnrolmentID("old", "F1")] = enrolled(t, &w.s, registeredBrand(t, &w.s, "old"), "F1", "2026-01-01")

	got := w.record(t, 1,
		line("never", "F3", 1000, cst("2026-11-20", "09:00")),
		line("suspended", "F5", 1000, cst("2026-11-12", "09:00")),
		line("no-rule", "F6", 1000, cst("2026-10-20", "09:00")),
		domain.SaleLine{LineID: "retired", BrandID: "old", FarmerID: "F1", Grams: 1000, SoldAt: cst("2026-11-20", "09:00")},
		domain.SaleLine{LineID: "before-retiring", BrandID: "old", FarmerID: "F1", Grams: 1000, SoldAt: cst("2026-11-14", "23:59")},
	)
	var reasons []int32
	for _, c := range got[1:] {
		if w, ok := c.Event.(*brandevents.PremiumWithheld); ok {
			reasons = append(reasons, w.GetReason())
			if w.GetDetail() == "" {
				t.Errorf("withheld %s has no detail", w.GetSaleId())
			}
		} else {
			reasons = append(reasons, 0)
		}
	}
	want := []int32{domain.WithheldNotEnrolled, domain.WithheldSuspended, domain.WithheldNoRule, domain.WithheldBrandRetired, 0}
	if diff := cmp.Diff(want, reasons); diff != "" {
		t.Fatalf("withheld reasons (-want +got):\n%s", diff)
	}
	if w.report.PremiumFen() != 50 {
		t.Fatalf("only the sale before retirement earns: %d fen", w.report.PremiumFen())
	}
}

func TestReportRefusesBadInput(t *testing.T) {
	t.Parallel()
	sold := cst("2026-11-25", "10:00")
	ok := func() domain.SalesReport {
		return domain.SalesReport{ReportID: "r1", Revision: 1, Channel: "hema", Lines: []domain.SaleLine{
			line("L0", "F1", 1000, sold), line("L1", "F2", 2000, sold),
		}}
	}
	for _, tc := range []struct {
		name  string
		edit  func(*domain.SalesReport, *domain.SaleFacts)
		kind  failure.Kind
		field string
	}{
		{"zero grams", func(r *domain.SalesReport, _ *domain.SaleFacts) { r.Lines[1].Grams = 0 }, failure.KindInvalid, "lines[1].grams"},
		{"negative grams", func(r *domain.SalesReport, _ *domain.SaleFacts) { r.Lines[0].Grams = -1 }, failure.KindInvalid, "lines[0].grams"},
		{"absurd grams", func(r *domain.SalesReport, _ *domain.SaleFacts) { r.Lines[0].Grams = domain.MaxGramsPerLine + 1 }, failure.KindInvalid, "lines[0].grams"},
		{"sale before enrolment", func(r *domain.SalesReport, _ *domain.SaleFacts) {
			r.Lines[1] = line("L1", "F4", 1000, cst("2026-11-19", "23:00"))
		}, failure.KindFailedPrecondition, "lines[1].sold_at"},
		{"unknown farmer", func(r *domain.SalesReport, _ *domain.SaleFacts) { r.Lines[1].FarmerID = "GHOST" }, failure.KindNotFound, "lines[1].farmer_id"},
		{"unknown brand", func(r *domain.SalesReport, _ *domain.SaleFacts) { r.Lines[0].BrandID = "nope" }, failure.KindNotFound, "lines[0].brand_id"},
		{"unknown channel", func(_ *domain.SalesReport, f *domain.SaleFacts) { f.ChannelRegistered = false }, failure.KindNotFound, "channel"},
		{"unknown delivery", func(r *domain.SalesReport, _ *domain.SaleFacts) { r.Lines[0].DeliveryID = "D9" }, failure.KindNotFound, "lines[0].delivery_id"},
		{"delivery of another farmer", func(r *domain.SalesReport, _ *domain.SaleFacts) {
			r.Lines[1].DeliveryID = "D1"
		}, failure.KindInvalid, "lines[1].farmer_id"},
		{"neither farmer nor delivery", func(r *domain.SalesReport, _ *domain.SaleFacts) { r.Lines[0].FarmerID = "" }, failure.KindInvalid, "lines[0].farmer_id"},
		{"repeated line id", func(r *domain.SalesReport, _ *domain.SaleFacts) { r.Lines[1].LineID = "L0" }, failure.KindInvalid, "lines[1].line_id"},
		{"bad line id", func(r *domain.SalesReport, _ *domain.SaleFacts) { r.Lines[1].LineID = "" }, failure.KindInvalid, "lines[1].line_id"},
		{"no sold_at", func(r *domain.SalesReport, _ *domain.SaleFacts) { r.Lines[0].SoldAt = time.Time{} }, failure.KindInvalid, "lines[0].sold_at"},
		{"sold in the future", func(r *domain.SalesReport, _ *domain.SaleFacts) { r.Lines[0].SoldAt = now.Add(time.Hour) }, failure.KindInvalid, "lines[0].sold_at"},
		{"no revision", func(r *domain.SalesReport, _ *domain.SaleFacts) { r.Revision = 0 }, failure.KindInvalid, "revision"},
		{"no lines", func(r *domain.SalesReport, _ *domain.SaleFacts) { r.Lines = nil }, failure.KindInvalid, "lines"},
		{"too many lines", func(r *domain.SalesReport, _ *domain.SaleFacts) {
			r.Lines = nil
			for i := range domain.MaxReportLines + 1 {
				r.Lines = append(r.Lines, line(fmt.Sprint("L", i), "F1", 1, sold))
			}
		}, failure.KindInvalid, "lines"},
		{"bad report id", func(r *domain.SalesReport, _ *domain.SaleFacts) { r.ReportID = "a b" }, failure.KindInvalid, "report_id"},
		{"bad channel", func(r *domain.SalesReport, _ *domain.SaleFacts) { r.Channel = "" }, failure.KindInvalid, "channel"},
	} {
		w := newWorld(t)
		in := ok()
		tc.edit(&in, &w.facts)
		rep := domain.NewReport(in.ReportID)
		_, err := rep.Record(in, w.facts)
		if err == nil {
			t.Errorf("%s: accepted", tc.name)
			continue
		}
		wantFailure(t, err, tc.kind, tc.field)
	}
	// A delivery names its farmer: a line may give the delivery alone.
	w := newWorld(t)
	got, err := domain.NewReport("r2").Record(domain.SalesReport{ReportID: "r2", Revision: 1, Channel: "hema", Lines: []domain.SaleLine{
		{LineID: "L0", BrandID: "xunwu", DeliveryID: "D1", Grams: 1000, SoldAt: sold},
	}}, w.facts)
	if err != nil {
		t.Fatal(err)
	}
	if e := got[2].Event.(*brandevents.PremiumEarned); e.GetFarmerId() != "F1" || e.GetDeliveryId() != "D1" {
		t.Fatalf("delivery line: %v", e)
	}
}

func TestRestatementEmitsOnlyDifferences(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	sold := cst("2026-11-25", "10:00")
	w.record(t, 1,
		line("L1", "F1", 10_000, sold),
		line("L2", "F2", 20_000, sold),
		line("L3", "F3", 5_000, sold), // never enrolled
		line("L4", "F1", 1_000, sold),
	)
	if w.report.PremiumFen() != 3_100 {
		t.Fatalf("revision 1 premium %d", w.report.PremiumFen())
	}

	got := w.record(t, 2,
		line("L1", "F1", 10_000, sold),                      // unchanged
		line("L2", "F2", 25_000, sold),                      // more grams
		line("L3", "F3", 6_000, sold),                       // still earns nothing
		line("L5", "F2", 2_000, cst("2026-11-27", "08:00")), // new
		// L4 left out: withdrawn
	)
	at := timestamppb.New(sold)
	want := []domain.Change{
		{Kind: domain.KindSalesReported, Event: &brandevents.SalesReported{
			ReportId: "hema-2026-11", Revision: 2, Channel: "hema", LineCount: 4, WithdrawnLines: 1,
			RuleSets: []*brandevents.RuleSetVersion{{BrandId: "xunwu", Version: w.rules.Version()}},
		}},
		{Kind: domain.KindPremiumAdjusted, Event: &brandevents.PremiumAdjusted{
			SaleId: "hema-2026-11/L2", BrandId: "xunwu", FarmerId: "F2", Channel: "hema",
			DeltaFen: 500, PremiumFen: 2_500, PreviousPremiumFen: 2_000, RuleId: "season", RuleVersion: 1, FenPerKg: 100,
			Reason: "restated in revision 2", ReportId: "hema-2026-11", ReportRevision: 2, LineId: "L2",
			Grams: 25_000, SoldAt: at, Cause: domain.CauseReportRestated,
		}},
		{Kind: domain.KindPremiumWithheld, Event: &brandevents.PremiumWithheld{
			SaleId: "hema-2026-11/L3", BrandId: "xunwu", FarmerId: "F3", Channel: "hema", Grams: 6_000, SoldAt: at,
			ReportId: "hema-2026-11", ReportRevision: 2, LineId: "L3", Reason: domain.WithheldNotEnrolled,
			Detail: "farmer F3 is not enrolled in brand xunwu",
		}},
		{Kind: domain.KindPremiumEarned, Event: &brandevents.PremiumEarned{
			SaleId: "hema-2026-11/L5", BrandId: "xunwu", FarmerId: "F2", Channel: "hema", Grams: 2_000,
			RuleId: "season", RuleVersion: 1, FenPerKg: 100, PremiumFen: 200, SoldAt: timestamppb.New(cst("2026-11-27", "08:00")),
			ReportId: "hema-2026-11", ReportRevision: 2, LineId: "L5",
		}},
		{Kind: domain.KindPremiumAdjusted, Event: &brandevents.PremiumAdjusted{
			SaleId: "hema-2026-11/L4", BrandId: "xunwu", FarmerId: "F1", Channel: "hema",
			DeltaFen: -100, PremiumFen: 0, PreviousPremiumFen: 100,
			Reason: "left out of revision 2", ReportId: "hema-2026-11", ReportRevision: 2, LineId: "L4",
			Grams: 0, SoldAt: at, Cause: domain.CauseReportRestated, WithheldReason: domain.WithheldWithdrawn,
		}},
	}
	if diff := cmp.Diff(want, got, cmpProto); diff != "" {
		t.Fatalf("restatement (-want +got):\n%s", diff)
	}
	if w.report.PremiumFen() != 3_700 {
		t.Fatalf("revision 2 premium %d, want 1000+2500+200", w.report.PremiumFen())
	}

	// The same content again under a new revision: only the header.
	again := w.record(t, 3,
		line("L1", "F1", 10_000, sold), line("L2", "F2", 25_000, sold),
		line("L3", "F3", 6_000, sold), line("L5", "F2", 2_000, cst("2026-11-27", "08:00")))
	if diff := cmp.Diff([]string{domain.KindSalesReported}, kinds(again)); diff != "" {
		t.Fatalf("identical restatement (-want +got):\n%s", diff)
	}
	// A withdrawn line may come back; it earns again by adjustment.
	back := w.record(t, 4,
		line("L1", "F1", 10_000, sold), line("L2", "F2", 25_000, sold),
		line("L3", "F3", 6_000, sold), line("L5", "F2", 2_000, cst("2026-11-27", "08:00")),
		line("L4", "F1", 1_000, sold))
	if diff := cmp.Diff([]string{domain.KindSalesReported, domain.KindPremiumAdjusted}, kinds(back)); diff != "" {
		t.Fatalf("returning line (-want +got):\n%s", diff)
	}
	if adj := back[1].Event.(*brandevents.PremiumAdjusted); adj.GetDeltaFen() != 100 || adj.GetWithheldReason() != 0 {
		t.Fatalf("returning line: %v", adj)
	}

	for _, tc := range []struct {
		name  string
		in    domain.SalesReport
		kind  failure.Kind
		field string
	}{
		{"stale revision", domain.SalesReport{ReportID: "hema-2026-11", Revision: 4, Channel: "hema", Lines: []domain.SaleLine{line("L1", "F1", 1, sold)}},
			failure.KindFailedPrecondition, "revision"},
		{"other channel", domain.SalesReport{ReportID: "hema-2026-11", Revision: 5, Channel: "jd", Lines: []domain.SaleLine{line("L1", "F1", 1, sold)}},
			failure.KindInvalid, "channel"},
		{"line changes farmer", domain.SalesReport{ReportID: "hema-2026-11", Revision: 5, Channel: "hema", Lines: []domain.SaleLine{line("L1", "F2", 1, sold)}},
			failure.KindInvalid, "lines[0].farmer_id"},
	} {
		_, err := w.report.Record(tc.in, w.facts)
		wantFailure(t, err, tc.kind, tc.field)
	}
}

func TestRerateIsExactAndIdempotent(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.record(t, 1,
		line("early", "F1", 1_234_567, cst("2026-11-10", "10:00")),
		line("late", "F1", 500, cst("2026-11-20", "10:00")),
		line("odd", "F2", 333, cst("2026-11-25", "10:00")),
		line("never", "F3", 9_999, cst("2026-11-25", "10:00")),
	)
	before := w.report.PremiumFen() // 123,457 + 50 + 33

	revise(t, &w.s, w.rules, domain.Revision{RuleID: "season", FenPerKg: 120, RevisedFrom: "2026-11-15", Reason: "hema raised the shelf price"})
	adj, err := w.report.Rerate(map[string]*domain.RuleSet{"xunwu": w.rules})
	if err != nil {
		t.Fatal(err)
	}
	type delta struct {
		Line        string
		Delta, Fen  int64
		Version     int32
		Rate, Cause int64
	}
	var got []delta
	for _, c := range adj {
		e := c.Event.(*brandevents.PremiumAdjusted)
		got = append(got, delta{e.GetLineId(), e.GetDeltaFen(), e.GetPremiumFen(), e.GetRuleVersion(), e.GetFenPerKg(), int64(e.GetCause())})
		if e.GetReason() != "hema raised the shelf price" || e.GetReportRevision() != 1 {
			t.Errorf("adjustment %s: reason %q revision %d", e.GetLineId(), e.GetReason(), e.GetReportRevision())
		}
	}
	// 500 g: 50 → 60 fen; 333 g: 33.3 → 33 fen, then 39.96 → 40 fen.
	want := []delta{{"late", 10, 60, 2, 120, int64(domain.CauseRuleRevised)}, {"odd", 7, 40, 2, 120, int64(domain.CauseRuleRevised)}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("adjustments (-want +got):\n%s", diff)
	}
	w.s.apply(t, w.report, adj...)
	if w.report.PremiumFen() != before+17 {
		t.Fatalf("premium %d, want %d", w.report.PremiumFen(), before+17)
	}
	if eff := w.report.RevisionEffect("xunwu", "season", 2); eff.Sales != 2 || eff.DeltaFen != 17 || eff.Last != w.report.Version() {
		t.Fatalf("effect of version 2: %+v (report at %d)", eff, w.report.Version())
	}
	if eff := w.report.RevisionEffect("other-brand", "season", 2); eff != (domain.RevisionEffect{}) {
		t.Fatalf("another brand's rule of the same id: %+v", eff)
	}
	if again, err := w.report.Rerate(map[string]*domain.RuleSet{"xunwu": w.rules}); err != nil || len(again) != 0 {
		t.Fatalf("second re-rating: %v, %v", kinds(again), err)
	}
	// Revising to the same rate again is no revision at all.
	if _, changed, err := w.rules.Revise(domain.Revision{RuleID: "season", FenPerKg: 120, RevisedFrom: "2026-11-15", Reason: "again"}, false); err != nil || changed {
		t.Fatalf("same revision again: changed %v, %v", changed, err)
	}
	// Back to 100 from the start: exactly the opposite deltas.
	revise(t, &w.s, w.rules, domain.Revision{RuleID: "season", FenPerKg: 100, Reason: "revert"})
	back, err := w.report.Rerate(map[string]*domain.RuleSet{"xunwu": w.rules})
	if err != nil {
		t.Fatal(err)
	}
	w.s.apply(t, w.report, back...)
	if len(back) != 2 || w.report.PremiumFen() != before {
		t.Fatalf("revert: %d adjustments, premium %d, want 2 and %d", len(back), w.report.PremiumFen(), before)
	}
}

// TestPreviewEqualsRerate checks, on random reports and revisions, that
// the per-farmer preview computed from read-model rows equals the sum of
// the adjustments re-rating then applies.
func TestPreviewEqualsRerate(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(4, 2026))
	farmers := []string{"F1", "F2", "F5", "F6"}
	compared := 0
	for round := range 50 {
		w := newWorld(t)
		var lines []domain.SaleLine
		for i := range 1 + rng.IntN(40) {
			day := d("2026-11-01") + domain.Date(rng.IntN(27))
			at := day.Start().Add(time.Duration(rng.IntN(24*60)) * time.Minute)
			lines = append(lines, line(fmt.Sprint("L", i), farmers[rng.IntN(len(farmers))], 1+rng.Int64N(2_000_000), at))
		}
		w.record(t, 1, lines...)
		if rng.IntN(2) == 0 { // sometimes an earlier revision first
			revise(t, &w.s, w.rules, domain.Revision{RuleID: "season", FenPerKg: rng.Int64N(300), RevisedFrom: (d("2026-11-01") + domain.Date(rng.IntN(20))).String(), Reason: "r"})
			pre, err := w.report.Rerate(map[string]*domain.RuleSet{"xunwu": w.rules})
			if err != nil {
				t.Fatal(err)
			}
			w.s.apply(t, w.report, pre...)
		}

		rv := domain.Revision{RuleID: "season", FenPerKg: rng.Int64N(300), RevisedFrom: (d("2026-11-01") + domain.Date(rng.IntN(27))).String(), Reason: "r"}
		ev, changed, err := w.rules.Revise(rv, true)
		if err != nil {
			t.Fatal(err)
		}
		if !changed {
			continue
		}
		var views []domain.SaleView
		for _, s := range w.report.Sales() {
			if s.Earning() {
				views = append(views, domain.SaleView{SaleID: s.SaleID, FarmerID: s.FarmerID, SoldOn: domain.DateOf(s.SoldAt), Grams: s.Grams, PremiumFen: s.PremiumFen, Rate: s.Rate})
			}
		}
		preview, err := domain.PreviewDeltas(w.rules.With(ev), views)
		if err != nil {
			t.Fatal(err)
		}

		w.s.apply(t, w.rules, domain.Change{Event: ev})
		adj, err := w.report.Rerate(map[string]*domain.RuleSet{"xunwu": w.rules})
		if err != nil {
			t.Fatal(err)
		}
		applied := map[string]*domain.FarmerDelta{}
		for _, c := range adj {
			e := c.Event.(*brandevents.PremiumAdjusted)
			fd := applied[e.GetFarmerId()]
			if fd == nil {
				fd = &domain.FarmerDelta{FarmerID: e.GetFarmerId()}
				applied[e.GetFarmerId()] = fd
			}
			fd.Sales++
			fd.Grams += e.GetGrams()
			fd.BeforeFen += e.GetPreviousPremiumFen()
			fd.AfterFen += e.GetPremiumFen()
			fd.DeltaFen += e.GetDeltaFen()
		}
		var got []domain.FarmerDelta
		for _, fd := range applied {
			got = append(got, *fd)
		}
		slices.SortFunc(got, func(a, b domain.FarmerDelta) int { return cmpString(a.FarmerID, b.FarmerID) })
		if len(got) == 0 {
			got = []domain.FarmerDelta{}
		}
		if diff := cmp.Diff(preview, got); diff != "" {
			t.Fatalf("round %d, revision %+v: preview vs applied (-preview +applied):\n%s", round, rv, diff)
		}
		if len(got) > 0 {
			compared++
		}
	}
	if compared < 25 {
		t.Fatalf("only %d of 50 rounds re-rated anything", compared)
	}
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
