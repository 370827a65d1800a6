package stack_test

import (
	"testing"

	"google.golang.org/protobuf/proto"

	brandevents "github.com/furrow/furrow/proto/furrow/brand/events/v1"
	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"
	procurementevents "github.com/furrow/furrow/proto/furrow/procurement/events/v1"
	typesv1 "github.com/furrow/furrow/proto/furrow/types/v1"

	"github.com/furrow/furrow/pkg/eventstore"
)

// appendUpstream writes an event to an upstream stream the way the owning
// service would, and returns its position.
func appendUpstream(t testing.TB, c clients, stream, subject, key string, msg proto.Message) *typesv1.Position {
	t.Helper()
	ev, err := eventstore.NewEvent(subject, msg, eventstore.Metadata{CorrelationID: key, Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := eventstore.New(c.st.JetStream()).Append(testCtx(t), eventstore.AppendRequest{
		Stream: stream, Aggregate: subject, IdempotencyKey: key, Events: []eventstore.Event{ev}})
	if err != nil {
		t.Fatal(err)
	}
	return &typesv1.Position{Stream: res.Stream, Sequence: res.Last}
}

func balanceAt(t testing.TB, c clients, farmerID string, pos *typesv1.Position) *ledgerv1.GetFarmerBalanceResponse {
	t.Helper()
	b, err := c.ledger.GetFarmerBalance(testCtx(t), &ledgerv1.GetFarmerBalanceRequest{FarmerId: farmerID, MinPosition: pos})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestLedgerPostsCorrectionsAndPremiums feeds the ledger the upstream events
// it accounts for — a delivery, two corrections, a premium and two
// adjustments — and checks the farmer's balance to the fen after each.
func TestLedgerPostsCorrectionsAndPremiums(t *testing.T) {
	t.Parallel()
	c := startStack(t, t.TempDir())
	register(t, c, "F1")

	pos := appendUpstream(t, c, "PROCUREMENT", "procurement.delivery.D1.delivery_recorded", "d1",
		&procurementevents.DeliveryRecorded{DeliveryId: "D1", FarmerId: "F1", NetGrams: 12_345, PriceFenPerKg: 680, AmountFen: 8395})
	if got := balanceAt(t, c, "F1", pos).GetPurchasesFen(); got != 8395 {
		t.Fatalf("after delivery: %d", got)
	}
	pos = appendUpstream(t, c, "PROCUREMENT", "procurement.delivery.D1.delivery_corrected", "d1-c1",
		&procurementevents.DeliveryCorrected{DeliveryId: "D1", FarmerId: "F1", CorrectionNumber: 1, ReversedAmountFen: 8395, NetGrams: 10_000, PriceFenPerKg: 680, AmountFen: 6800})
	pos = appendUpstream(t, c, "PROCUREMENT", "procurement.delivery.D1.delivery_corrected", "d1-c2",
		&procurementevents.DeliveryCorrected{DeliveryId: "D1", FarmerId: "F1", CorrectionNumber: 2, ReversedAmountFen: 6800, NetGrams: 10_100, PriceFenPerKg: 680, AmountFen: 6868})
	if got := balanceAt(t, c, "F1", pos).GetPurchasesFen(); got != 6868 {
		t.Fatalf("after corrections: %d, want 6868", got)
	}

	pos = appendUpstream(t, c, "BRAND", "brand.sales.R1.premium_earned", "p1",
		&brandevents.PremiumEarned{SaleId: "R1-1", BrandId: "xunwu-navel", FarmerId: "F1", Channel: "hema", Grams: 1_234_567, FenPerKg: 100, PremiumFen: 123_457})
	pos = appendUpstream(t, c, "BRAND", "brand.sales.R1.premium_adjusted", "p1-up",
		&brandevents.PremiumAdjusted{SaleId: "R1-1", FarmerId: "F1", DeltaFen: 24_691, PremiumFen: 148_148})
	pos = appendUpstream(t, c, "BRAND", "brand.sales.R1.premium_adjusted", "p1-down",
		&brandevents.PremiumAdjusted{SaleId: "R1-1", FarmerId: "F1", DeltaFen: -148, PremiumFen: 148_000})
	b := balanceAt(t, c, "F1", pos)
	if b.GetPremiumsFen() != 148_000 || b.GetPurchasesFen() != 6868 || b.GetAvailableFen() != 148_000+6868 {
		t.Fatalf("after premiums: %v", b)
	}
}
