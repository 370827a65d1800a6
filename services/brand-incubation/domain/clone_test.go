package domain_test

import (
	"testing"

	brandevents "github.com/furrow/furrow/proto/furrow/brand/events/v1"

	"github.com/furrow/furrow/services/brand-incubation/domain"
)

// TestClonesAreDeep: folding events into a clone never changes the
// aggregate it was cloned from (the cache hands out clones).
func TestClonesAreDeep(t *testing.T) {
	t.Parallel()
	rs := domain.NewRuleSet("b", "hema")
	rs.Apply(1, &brandevents.PremiumRuleSet{BrandId: "b", Channel: "hema", RuleId: "r", RuleVersion: 1, FenPerKg: 100, EffectiveFrom: "2026-11-01"})
	c := rs.Clone()
	c.Apply(2, &brandevents.PremiumRuleRevised{BrandId: "b", Channel: "hema", RuleId: "r", RuleVersion: 2, FenPerKg: 120, RevisedFrom: "2026-11-01", Reason: "x"})
	c.Apply(3, &brandevents.PremiumRuleEnded{BrandId: "b", Channel: "hema", RuleId: "r", RuleVersion: 3, EffectiveTo: "2026-11-30", Reason: "y"})
	if r := rs.Rule("r"); r.Version != 1 || !r.OpenEnded || len(r.Schedule) != 1 || rs.VersionWrittenAt(2) != 0 {
		t.Fatalf("original rule set changed by its clone: %+v", r)
	}

	rep := domain.NewReport("r1")
	rep.Apply(1, &brandevents.PremiumEarned{SaleId: "r1/1", LineId: "1", BrandId: "b", FarmerId: "F1", Grams: 1000, PremiumFen: 100, RuleId: "r", RuleVersion: 1, FenPerKg: 100})
	rc := rep.Clone()
	rc.Apply(2, &brandevents.PremiumAdjusted{SaleId: "r1/1", LineId: "1", BrandId: "b", FarmerId: "F1", Grams: 1000, PremiumFen: 120, DeltaFen: 20,
		RuleId: "r", RuleVersion: 2, FenPerKg: 120, Cause: domain.CauseRuleRevised})
	if s := rep.Sales()[0]; s.PremiumFen != 100 || rep.PremiumFen() != 100 || rep.RevisionEffect("b", "r", 2).Sales != 0 {
		t.Fatalf("original report changed by its clone: %+v", s)
	}

	lot := domain.NewLot("D1")
	lot.Apply(1, &brandevents.LotClaimed{DeliveryId: "D1", ReportId: "r1", ClaimedGrams: 600})
	lc := lot.Clone()
	lc.Apply(2, &brandevents.LotClaimed{DeliveryId: "D1", ReportId: "r2", ClaimedGrams: 400})
	if lot.Claimed() != 600 || lc.Claimed() != 1000 {
		t.Fatalf("lot claims: original %d, clone %d; want 600 and 1000", lot.Claimed(), lc.Claimed())
	}
}
