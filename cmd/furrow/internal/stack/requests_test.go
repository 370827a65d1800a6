package stack_test

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"
	procurementv1 "github.com/furrow/furrow/proto/furrow/procurement/v1"
)

// TestRequestIDReusedOnAnotherAggregateAfterTheWindow: a request id used
// for one farmer and, once the stream's de-duplication window has passed,
// for another farmer is ALREADY_EXISTS (the second farmer's aggregate has
// never seen it: only the request registry remembers it), and nothing is
// written. A retry of the first request still returns its first outcome,
// and a refused command leaves its id free.
func TestRequestIDReusedOnAnotherAggregateAfterTheWindow(t *testing.T) {
	t.Parallel()
	c := startStack(t, t.TempDir())
	ctx := testCtx(t)
	// Shrink the windows, so that "after the window" is a moment away.
	for _, name := range []string{"LEDGER", "PROCUREMENT"} {
		s, err := c.st.JetStream().Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		cfg := s.CachedInfo().Config
		cfg.Duplicates = 100 * time.Millisecond
		if _, err := c.st.JetStream().UpdateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
	reg := func(farmer string) (*ledgerv1.RegisterFarmerResponse, error) {
		return c.ledger.RegisterFarmer(ctx, &ledgerv1.RegisterFarmerRequest{RequestId: "req-7", FarmerId: farmer, Name: "Farmer " + farmer,
			County: "Xunwu", PayoutAccount: "6222-" + farmer})
	}
	first, err := reg("F1")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	before := streamLast(t, c.st, "LEDGER")
	_, err = reg("F2")
	finWantCode(t, "request id req-7 reused for farmer F2 after the window", err, codes.AlreadyExists)
	if after := streamLast(t, c.st, "LEDGER"); after != before {
		t.Fatalf("the refused registration appended: LEDGER %d → %d", before, after)
	}
	again, err := reg("F1")
	if err != nil || again.GetPosition().GetSequence() != first.GetPosition().GetSequence() {
		t.Fatalf("retry of the first request: %v, %v; want its first outcome %v", again, err, first)
	}

	// A command refused for its content records nothing: the id may be
	// used again with other content.
	bad := &procurementv1.RecordDeliveryRequest{RequestId: "wh-1", FarmerId: "F1", Product: "x", NetGrams: 0, PriceFenPerKg: 680}
	_, err = c.procurement.RecordDelivery(ctx, bad)
	finWantCode(t, "zero grams", err, codes.InvalidArgument)
	bad.NetGrams = 1_000
	if _, err := c.procurement.RecordDelivery(ctx, bad); err != nil {
		t.Fatalf("the id of a refused command, used again: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	bad.FarmerId, bad.NetGrams = "F1", 2_000
	_, err = c.procurement.RecordDelivery(ctx, bad)
	finWantCode(t, "request id wh-1 reused with other content after the window", err, codes.AlreadyExists)

	// A line of RecordDeliveries is a RecordDelivery: an id used for a
	// delivery against one order (aggregate), used again after the window
	// on a line against another order, is refused on its own line; the
	// other line is recorded.
	registerIn(t, c, "QL-1", "Qinglong")
	openBaba(t, c, 1_000_000_000)
	a := place(t, c, chestnutOrder("po-a", "QL-1")).GetOrderId()
	b := place(t, c, chestnutOrder("po-b", "QL-1")).GetOrderId()
	deliver(t, c, weighIn("wh-ql-9", a, "A", 10_000))
	time.Sleep(300 * time.Millisecond)
	batch, err := c.procurement.RecordDeliveries(ctx, &procurementv1.RecordDeliveriesRequest{Lines: []*procurementv1.RecordDeliveryRequest{
		weighIn("wh-ql-9", b, "A", 10_000),
		weighIn("wh-ql-10", b, "B", 20_000),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if r := batch.GetResults(); len(r) != 2 || r[0].GetError().GetCode() != "ALREADY_EXISTS" || r[1].GetRecorded() == nil {
		t.Fatalf("RecordDeliveries with an id used on another order: %v", batch)
	}
	// The recorded line's id is remembered as a single command's is.
	time.Sleep(300 * time.Millisecond)
	_, err = c.procurement.RecordDelivery(ctx, weighIn("wh-ql-10", a, "B", 20_000))
	finWantCode(t, "a bulk line's id used again on another order", err, codes.AlreadyExists)
}
