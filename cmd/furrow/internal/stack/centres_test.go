package stack_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"
	procurementv1 "github.com/furrow/furrow/proto/furrow/procurement/v1"
)

// TestDistributionCentreIntake: deliveries name the county distribution
// centre that weighed them in (one names none: "unknown"); a correction
// moves a delivery to its new grade; the intake by day, product and grade
// and each centre's share of its county's purchases are worked out by hand:
//
//	Xunwu, 2026-11-20   dc-north  F1 A 100 kg × 6.00 = 600.00
//	                    dc-north  F2 B  50 kg × 4.00 = 200.00, corrected to A at 6.00 = 300.00
//	                    dc-south  F1 A 200 kg × 6.00 = 1,200.00
//	                    (none)    F2 A  25 kg × 6.00 = 150.00
//	Qinglong            dc-ql     F3 A  10 kg × 10.00 = 100.00
//
// Xunwu bought 375 kg for 2,250.00 yuan: dc-north 150 kg, 900.00 (40.00 %),
// dc-south 200 kg, 1,200.00 (53.33 %), unknown 25 kg, 150.00 (6.67 %).
func TestDistributionCentreIntake(t *testing.T) {
	t.Parallel()
	c := startStack(t, t.TempDir())
	ctx := testCtx(t)
	for _, f := range []struct{ id, county string }{{"F1", "Xunwu"}, {"F2", "Xunwu"}, {"F3", "Qinglong"}} {
		if _, err := c.ledger.RegisterFarmer(ctx, &ledgerv1.RegisterFarmerRequest{RequestId: "reg-" + f.id, FarmerId: f.id,
			Name: "Farmer " + f.id, County: f.county, PayoutAccount: "6222-" + f.id}); err != nil {
			t.Fatal(err)
		}
	}
	at := timestamppb.New(time.Date(2026, 11, 20, 2, 0, 0, 0, time.UTC)) // 10:00 CST
	record := func(id, farmer, centre, grade string, grams, price int64) string {
		t.Helper()
		res, err := c.procurement.RecordDelivery(ctx, &procurementv1.RecordDeliveryRequest{RequestId: id, FarmerId: farmer,
			Product: "xunwu-navel-orange", Grade: grade, NetGrams: grams, PriceFenPerKg: price, WeighedAt: at, DistributionCentre: centre})
		if err != nil {
			t.Fatalf("RecordDelivery(%s): %v", id, err)
		}
		return res.GetDeliveryId()
	}
	record("n1", "F1", "dc-north", "A", 100_000, 600)
	toCorrect := record("n2", "F2", "dc-north", "B", 50_000, 400)
	record("s1", "F1", "dc-south", "A", 200_000, 600)
	record("u1", "F2", "", "A", 25_000, 600)
	record("q1", "F3", "dc-ql", "A", 10_000, 1000)
	price := int64(600)
	corrected, err := c.procurement.CorrectDelivery(ctx, &procurementv1.CorrectDeliveryRequest{RequestId: "c1", DeliveryId: toCorrect,
		NetGrams: 50_000, Grade: "A", PriceFenPerKg: &price, Reason: "re-graded at the centre"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.procurement.ListCentreIntake(ctx, &procurementv1.ListCentreIntakeRequest{County: "Xunwu", MinPosition: corrected.GetPosition()})
	if err != nil {
		t.Fatal(err)
	}
	row := func(centre string, n int32, grams, fen int64) *procurementv1.CentreIntake {
		return &procurementv1.CentreIntake{DistributionCentre: centre, County: "Xunwu", Day: "2026-11-20", Product: "xunwu-navel-orange",
			Grade: "A", Deliveries: n, NetGrams: grams, AmountFen: fen}
	}
	wantIntake := []*procurementv1.CentreIntake{row("dc-north", 2, 150_000, 90_000), row("dc-south", 1, 200_000, 120_000), row("unknown", 1, 25_000, 15_000)}
	if diff := cmp.Diff(wantIntake, got.GetIntake(), protocmp.Transform()); diff != "" {
		t.Errorf("intake (-want +got):\n%s", diff)
	}
	share := func(centre string, n int32, grams, fen, bp int64) *procurementv1.CentreShare {
		return &procurementv1.CentreShare{DistributionCentre: centre, County: "Xunwu", Deliveries: n, NetGrams: grams, AmountFen: fen,
			CountyNetGrams: 375_000, CountyAmountFen: 225_000, AmountShareBp: bp, GramsShareBp: bp}
	}
	wantShares := []*procurementv1.CentreShare{share("dc-north", 2, 150_000, 90_000, 4_000), share("dc-south", 1, 200_000, 120_000, 5_333),
		share("unknown", 1, 25_000, 15_000, 667)}
	if diff := cmp.Diff(wantShares, got.GetCentres(), protocmp.Transform()); diff != "" {
		t.Errorf("shares (-want +got):\n%s", diff)
	}
	// One centre alone still gets its share of the whole county.
	one, err := c.procurement.ListCentreIntake(ctx, &procurementv1.ListCentreIntakeRequest{DistributionCentre: "dc-south", DayFrom: "2026-11-20", DayTo: "2026-11-20"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]*procurementv1.CentreShare{share("dc-south", 1, 200_000, 120_000, 5_333)}, one.GetCentres(), protocmp.Transform()); diff != "" {
		t.Errorf("dc-south alone (-want +got):\n%s", diff)
	}
}
