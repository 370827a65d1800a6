package domain_test

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/timestamppb"

	brandevents "github.com/furrow/furrow/proto/furrow/brand/events/v1"

	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/money"

	"github.com/furrow/furrow/services/brand-incubation/domain"
)

// earned is a PremiumEarned of premium fen for line id of report rep.
func earned(rep, id string, grams, premium int64) *brandevents.PremiumEarned {
	return &brandevents.PremiumEarned{SaleId: domain.SaleID(rep, id), BrandId: "xunwu", FarmerId: "F1", Channel: "hema",
		Grams: grams, RuleId: "season", RuleVersion: 1, FenPerKg: domain.MaxFenPerKg, PremiumFen: premium,
		SoldAt: timestamppb.New(cst("2026-11-10", "10:00")), ReportId: rep, ReportRevision: 1, LineId: id}
}

// A report is bounded (MaxReportLines lines of at most MaxGramsPerLine at
// most MaxFenPerKg), so its totals at the maxima are exact: the largest
// report earns 5,000,000,000,000,000 fen, far inside int64, and a
// re-rating of all of it sums exactly too.
func TestReportTotalsAtTheMaximaAreExact(t *testing.T) {
	t.Parallel()
	top, err := domain.Premium("grams", domain.MaxGramsPerLine, domain.MaxFenPerKg)
	if err != nil || top != 10_000_000_000_000 {
		t.Fatalf("largest premium of a line = %d, %v", top, err)
	}
	var s seq
	rep := domain.NewReport("hema-max")
	for i := range domain.MaxReportLines {
		s.apply(t, rep, domain.Change{Event: earned(rep.ID(), fmt.Sprintf("L%03d", i), domain.MaxGramsPerLine, top)})
	}
	if got, want := rep.PremiumFen(), int64(domain.MaxReportLines)*top; got != want || rep.Overflow() != nil {
		t.Fatalf("premium of the largest report = %d (%v), want %d", got, rep.Overflow(), want)
	}
	sum := domain.RevisionEffect{}
	for range domain.MaxReportLines {
		if sum, err = sum.Plus(domain.RevisionEffect{Sales: 1, DeltaFen: -top}); err != nil {
			t.Fatal(err)
		}
	}
	if sum != (domain.RevisionEffect{Sales: domain.MaxReportLines, DeltaFen: -int64(domain.MaxReportLines) * top}) {
		t.Fatalf("re-rating the largest report = %+v", sum)
	}
	// Summed over reports (ReviseRule's reply), the effect is checked.
	if _, err := (domain.RevisionEffect{DeltaFen: math.MaxInt64}).Plus(domain.RevisionEffect{DeltaFen: 1}); !errors.Is(err, money.ErrOverflow) {
		t.Fatalf("effects beyond int64: %v", err)
	}
}

// A report rebuilt from events beyond the domain's limits (a stream
// written before they held, or written by hand) must not wrap: it keeps
// the totals before the event that overflowed, reports the overflow, and
// refuses restatements and re-ratings instead of deciding on a wrapped
// premium.
func TestReportRebuiltFromOverflowingPremiumsRefusesChanges(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.s.apply(t, w.report,
		domain.Change{Event: earned(w.report.ID(), "a", 1_000, math.MaxInt64)},
		domain.Change{Event: earned(w.report.ID(), "b", 1_000, math.MaxInt64)})
	if got := w.report.PremiumFen(); got != math.MaxInt64 {
		t.Fatalf("premium = %d, want the total before the overflowing sale", got)
	}
	wantOverflow := func(what string, err error) {
		t.Helper()
		if failure.KindOf(err) != failure.KindFailedPrecondition || !errors.Is(err, money.ErrOverflow) || !strings.Contains(err.Error(), "overflow") {
			t.Fatalf("%s: %v; want a failed precondition naming the overflow", what, err)
		}
	}
	wantOverflow("the report", w.report.Overflow())
	_, err := w.report.Record(domain.SalesReport{ReportID: w.report.ID(), Revision: 2, Channel: "hema",
		Lines: []domain.SaleLine{line("a", "F1", 1_000, cst("2026-11-10", "10:00"))}}, w.facts)
	wantOverflow("a restatement", err)
	_, err = w.report.Rerate(map[string]*domain.RuleSet{"xunwu": w.rules})
	wantOverflow("a re-rating", err)
}
