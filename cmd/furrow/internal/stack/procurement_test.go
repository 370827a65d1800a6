package stack_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"
	procurementv1 "github.com/furrow/furrow/proto/furrow/procurement/v1"
	typesv1 "github.com/furrow/furrow/proto/furrow/types/v1"

	"github.com/furrow/furrow/cmd/furrow/internal/stack"
)

// The procurement tests use a programme over 2025 with orders delivering in
// November; weigh-ins carry explicit times, so nothing depends on today.
var (
	novStart = time.Date(2025, 11, 1, 0, 0, 0, 0, time.UTC)
	decStart = time.Date(2025, 12, 1, 0, 0, 0, 0, time.UTC)
	nov15    = timestamppb.New(time.Date(2025, 11, 15, 8, 0, 0, 0, time.UTC))
)

func registerIn(t testing.TB, c clients, farmerID, county string) *ledgerv1.RegisterFarmerResponse {
	t.Helper()
	res, err := c.ledger.RegisterFarmer(testCtx(t), &ledgerv1.RegisterFarmerRequest{
		RequestId: "reg-" + farmerID, FarmerId: farmerID, Name: "Farmer " + farmerID, County: county,
		Cooperative: county + " Co-op", PayoutAccount: "6222-" + farmerID,
	})
	if err != nil {
		t.Fatalf("RegisterFarmer(%s): %v", farmerID, err)
	}
	return res
}

func openRequest(budget int64) *procurementv1.OpenProgramRequest {
	return &procurementv1.OpenProgramRequest{
		RequestId: "open-baba-2025", ProgramId: "baba-2025", Name: "Baba Farm 2025 direct purchase", BudgetFen: budget,
		PeriodStart: timestamppb.New(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)),
		PeriodEnd:   timestamppb.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)),
		Products:    []string{"qinglong-chestnut", "xunwu-navel-orange", "yongshun-berry-tea"},
		Counties:    []string{"Qinglong", "Xunwu", "Yongshun"},
	}
}

func openBaba(t testing.TB, c clients, budget int64) *procurementv1.OpenProgramResponse {
	t.Helper()
	res, err := c.procurement.OpenProgram(testCtx(t), openRequest(budget))
	if err != nil {
		t.Fatalf("OpenProgram: %v", err)
	}
	return res
}

// chestnutOrder orders 100 kg of chestnuts (A 12 yuan/kg, B 9 yuan/kg, 5 %
// tolerance), reserving 105 kg × 1,200 fen = 126,000 fen.
func chestnutOrder(requestID, farmerID string) *procurementv1.PlaceOrderRequest {
	return &procurementv1.PlaceOrderRequest{
		RequestId: requestID, ProgramId: "baba-2025", FarmerId: farmerID, Product: "qinglong-chestnut",
		Prices:       []*procurementv1.GradePrice{{Grade: "A", PriceFenPerKg: 1200}, {Grade: "B", PriceFenPerKg: 900}},
		OrderedGrams: 100_000, ToleranceBp: 500,
		WindowStart: timestamppb.New(novStart), WindowEnd: timestamppb.New(decStart), OriginWarehouse: "WH-QL-1",
	}
}

func place(t testing.TB, c clients, req *procurementv1.PlaceOrderRequest) *procurementv1.PlaceOrderResponse {
	t.Helper()
	res, err := c.procurement.PlaceOrder(testCtx(t), req)
	if err != nil {
		t.Fatalf("PlaceOrder(%s): %v", req.GetRequestId(), err)
	}
	return res
}

func weighIn(requestID, orderID, grade string, grams int64) *procurementv1.RecordDeliveryRequest {
	return &procurementv1.RecordDeliveryRequest{RequestId: requestID, OrderId: orderID, Grade: grade, NetGrams: grams, WeighedAt: nov15}
}

func deliver(t testing.TB, c clients, req *procurementv1.RecordDeliveryRequest) *procurementv1.RecordDeliveryResponse {
	t.Helper()
	res, err := c.procurement.RecordDelivery(testCtx(t), req)
	if err != nil {
		t.Fatalf("RecordDelivery(%s): %v", req.GetRequestId(), err)
	}
	return res
}

func wantCode(t testing.TB, err error, code codes.Code, mention string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(status.Convert(err).Message(), mention) {
		t.Fatalf("err = %v, want %s mentioning %q", err, code, mention)
	}
}

// payable returns a farmer's purchases payable once the ledger reflects pos
// and shows want, or what it shows after a bounded wait. The ledger's wait
// for a PROCUREMENT position can return a moment early under load
// (pkg/consistency trusts the handler consumer's NumPending, which
// nats-server updates asynchronously after acknowledging a publish), so a
// first read that is not yet want is read again: these tests check what
// procurement makes the ledger owe, which a wrong amount still fails.
func payable(t testing.TB, c clients, farmerID string, pos *typesv1.Position, want int64) int64 {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := c.ledger.GetFarmerBalance(testCtx(t), &ledgerv1.GetFarmerBalanceRequest{FarmerId: farmerID, MinPosition: pos})
		if err != nil {
			t.Fatalf("GetFarmerBalance(%s): %v", farmerID, err)
		}
		if got := b.GetPurchasesFen(); got == want || time.Now().After(deadline) {
			return got
		}
		t.Logf("ledger shows %d fen for %s at %v, not yet %d: reading again", b.GetPurchasesFen(), farmerID, pos, want)
		time.Sleep(20 * time.Millisecond)
	}
}

func TestProgramLifecycle(t *testing.T) {
	t.Parallel()
	c := startStack(t, t.TempDir())
	ctx := testCtx(t)
	opened := openBaba(t, c, 100_000_000_000) // 1,000,000,000 yuan

	// A retry is the same programme; the same request id with other
	// content, or another request for the same id, is ALREADY_EXISTS.
	again := openBaba(t, c, 100_000_000_000)
	if again.GetPosition().GetSequence() != opened.GetPosition().GetSequence() {
		t.Fatalf("retry at %v, first at %v", again.GetPosition(), opened.GetPosition())
	}
	_, err := c.procurement.OpenProgram(ctx, openRequest(1))
	wantCode(t, err, codes.AlreadyExists, "request_id")
	other := openRequest(100_000_000_000)
	other.RequestId = "another-request"
	_, err = c.procurement.OpenProgram(ctx, other)
	wantCode(t, err, codes.AlreadyExists, "program_id")

	got, err := c.procurement.GetProgram(ctx, &procurementv1.GetProgramRequest{ProgramId: "baba-2025"})
	if err != nil {
		t.Fatal(err)
	}
	want := &procurementv1.Program{
		ProgramId: "baba-2025", Name: "Baba Farm 2025 direct purchase", BudgetFen: 100_000_000_000,
		AvailableFen: 100_000_000_000, PeriodStart: openRequest(0).GetPeriodStart(), PeriodEnd: openRequest(0).GetPeriodEnd(),
		Products: []string{"qinglong-chestnut", "xunwu-navel-orange", "yongshun-berry-tea"},
		Counties: []string{"Qinglong", "Xunwu", "Yongshun"}, Status: procurementv1.ProgramStatus_PROGRAM_STATUS_OPEN,
		Version: opened.GetPosition().GetSequence(),
	}
	if diff := cmp.Diff(want, got.GetProgram(), protocmp.Transform()); diff != "" {
		t.Fatalf("GetProgram (-want +got):\n%s", diff)
	}

	closeReq := &procurementv1.CloseProgramRequest{RequestId: "close-1", ProgramId: "baba-2025", Reason: "season over"}
	closed, err := c.procurement.CloseProgram(ctx, closeReq)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := c.procurement.CloseProgram(ctx, closeReq); err != nil || again.GetPosition().GetSequence() != closed.GetPosition().GetSequence() {
		t.Fatalf("retried CloseProgram = %v, %v", again, err)
	}
	_, err = c.procurement.CloseProgram(ctx, &procurementv1.CloseProgramRequest{RequestId: "close-2", ProgramId: "baba-2025"})
	wantCode(t, err, codes.FailedPrecondition, "already closed")
	_, err = c.procurement.GetProgram(ctx, &procurementv1.GetProgramRequest{ProgramId: "nope"})
	wantCode(t, err, codes.NotFound, "program_id")

	progress, err := c.procurement.GetProgramProgress(ctx, &procurementv1.GetProgramProgressRequest{ProgramId: "baba-2025", MinPosition: closed.GetPosition()})
	if err != nil {
		t.Fatal(err)
	}
	if progress.GetStatus() != procurementv1.ProgramStatus_PROGRAM_STATUS_CLOSED || len(progress.GetByProduct()) != 3 || len(progress.GetByCounty()) != 3 {
		t.Fatalf("progress of a closed programme = %v", progress)
	}
	if n := streamMsgs(t, c, "PROCUREMENT"); n != 2 {
		t.Fatalf("PROCUREMENT holds %d events, want 2 (opened, closed)", n)
	}
}

// TestOrderToLedger follows one order: reservation, weigh-ins (priced from
// the table, refused beyond the tolerance), the payable in the ledger, and
// a cancellation that releases what was not delivered.
func TestOrderToLedger(t *testing.T) {
	t.Parallel()
	c := startStack(t, t.TempDir())
	ctx := testCtx(t)
	registerIn(t, c, "F1", "Qinglong")
	openBaba(t, c, 1_000_000)

	placed := place(t, c, chestnutOrder("po-1", "F1"))
	if placed.GetReservedFen() != 126_000 || placed.GetMaxGrams() != 105_000 {
		t.Fatalf("PlaceOrder = %v", placed)
	}
	if again := place(t, c, chestnutOrder("po-1", "F1")); again.GetOrderId() != placed.GetOrderId() ||
		again.GetPosition().GetSequence() != placed.GetPosition().GetSequence() {
		t.Fatalf("retried PlaceOrder = %v, first %v", again, placed)
	}
	order := placed.GetOrderId()

	d1 := deliver(t, c, weighIn("wh-1", order, "B", 60_000)) // 60 kg × 9 yuan
	if d1.GetAmountFen() != 54_000 || d1.GetPriceFenPerKg() != 900 || !strings.HasPrefix(d1.GetDeliveryId(), order+"-") {
		t.Fatalf("RecordDelivery = %v", d1)
	}
	if got := payable(t, c, "F1", d1.GetPosition(), 54_000); got != 54_000 {
		t.Fatalf("ledger payable %d fen, want 54000", got)
	}
	_, err := c.procurement.RecordDelivery(ctx, weighIn("wh-2", order, "A", 45_001))
	wantCode(t, err, codes.FailedPrecondition, "beyond the ordered quantity")
	d2 := deliver(t, c, weighIn("wh-3", order, "A", 45_000)) // exactly the 5 % tolerance
	rej := deliver(t, c, weighIn("wh-4", order, "REJECTED", 3_000))
	if rej.GetAmountFen() != 0 {
		t.Fatalf("rejected delivery payable %d", rej.GetAmountFen())
	}

	got, err := c.procurement.GetOrder(ctx, &procurementv1.GetOrderRequest{OrderId: order})
	if err != nil {
		t.Fatal(err)
	}
	o := got.GetOrder()
	if o.GetStatus() != procurementv1.OrderStatus_ORDER_STATUS_FULFILLED || o.GetDeliveredGrams() != 105_000 ||
		o.GetDeliveredFen() != 108_000 || o.GetRejectedGrams() != 3_000 || o.GetDeliveries() != 3 || o.GetCounty() != "Qinglong" {
		t.Fatalf("GetOrder = %v", o)
	}

	cancelled, err := c.procurement.CancelOrder(ctx, &procurementv1.CancelOrderRequest{RequestId: "cancel-1", OrderId: order, Reason: "season over"})
	if err != nil {
		t.Fatal(err)
	}
	if cancelled.GetReleasedFen() != 126_000-108_000 {
		t.Fatalf("released %d fen, want %d", cancelled.GetReleasedFen(), 126_000-108_000)
	}
	again, err := c.procurement.CancelOrder(ctx, &procurementv1.CancelOrderRequest{RequestId: "cancel-1", OrderId: order, Reason: "season over"})
	if err != nil || again.GetPosition().GetSequence() != cancelled.GetPosition().GetSequence() || again.GetReleasedFen() != cancelled.GetReleasedFen() {
		t.Fatalf("retried CancelOrder = %v, %v; first %v", again, err, cancelled)
	}
	prog, err := c.procurement.GetProgram(ctx, &procurementv1.GetProgramRequest{ProgramId: "baba-2025"})
	if err != nil {
		t.Fatal(err)
	}
	if prog.GetProgram().GetReservedFen() != 108_000 || prog.GetProgram().GetOrders() != 1 {
		t.Fatalf("programme after cancel = %v", prog.GetProgram())
	}

	progress, err := c.procurement.GetProgramProgress(ctx, &procurementv1.GetProgramProgressRequest{ProgramId: "baba-2025", MinPosition: cancelled.GetPosition()})
	if err != nil {
		t.Fatal(err)
	}
	wantTotal := &procurementv1.Progress{Orders: 1, OrderedGrams: 0, Deliveries: 3, DeliveredGrams: 105_000, DeliveredFen: 108_000, RejectedGrams: 3_000}
	if diff := cmp.Diff(wantTotal, progress.GetTotal(), protocmp.Transform()); diff != "" {
		t.Errorf("progress total (-want +got):\n%s", diff)
	}
	if progress.GetReservedFen() != 108_000 {
		t.Errorf("progress reserved %d, want 108000", progress.GetReservedFen())
	}
	byCounty := map[string]int64{}
	for _, p := range progress.GetByCounty() {
		byCounty[p.GetKey()] = p.GetDeliveredFen()
	}
	if diff := cmp.Diff(map[string]int64{"Qinglong": 108_000, "Xunwu": 0, "Yongshun": 0}, byCounty); diff != "" {
		t.Errorf("delivered fen by county (-want +got):\n%s", diff)
	}
	if got := payable(t, c, "F1", d2.GetPosition(), 108_000); got != 108_000 {
		t.Fatalf("ledger payable %d fen, want 108000", got)
	}
}

// TestConcurrentPlaceOrderNeverOverReserves places 32 orders at once on a
// programme with room for 5: exactly 5 are placed, the others are refused
// as over budget, and the reservations never exceed the budget.
func TestConcurrentPlaceOrderNeverOverReserves(t *testing.T) {
	t.Parallel()
	c := startStack(t, t.TempDir())
	ctx := testCtx(t)
	registerIn(t, c, "F1", "Qinglong")
	const each, room = 126_000, 5
	budget := int64(room*each + each/2)
	openBaba(t, c, budget)

	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		codeN = map[codes.Code]int{}
	)
	for i := range 32 {
		wg.Go(func() {
			_, err := c.procurement.PlaceOrder(ctx, chestnutOrder(fmt.Sprintf("po-%02d", i), "F1"))
			mu.Lock()
			defer mu.Unlock()
			codeN[status.Code(err)]++
			if err != nil && status.Code(err) != codes.FailedPrecondition {
				t.Errorf("PlaceOrder %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if diff := cmp.Diff(map[codes.Code]int{codes.OK: room, codes.FailedPrecondition: 32 - room}, codeN); diff != "" {
		t.Fatalf("outcomes by code (-want +got):\n%s", diff)
	}
	prog, err := c.procurement.GetProgram(ctx, &procurementv1.GetProgramRequest{ProgramId: "baba-2025"})
	if err != nil {
		t.Fatal(err)
	}
	if p := prog.GetProgram(); p.GetReservedFen() != room*each || p.GetReservedFen() > budget || p.GetOrders() != room {
		t.Fatalf("programme reserved %d of %d fen for %d orders", p.GetReservedFen(), budget, p.GetOrders())
	}
	if n := streamMsgs(t, c, "PROCUREMENT"); n != 1+2*room {
		t.Fatalf("PROCUREMENT holds %d events, want %d: a refused order appended something", n, 1+2*room)
	}
}

// TestConcurrentDeliveriesNeverExceedTheOrder weighs in 16 lots of 10 kg at
// once against a 100 kg order without tolerance: exactly 10 are accepted.
func TestConcurrentDeliveriesNeverExceedTheOrder(t *testing.T) {
	t.Parallel()
	c := startStack(t, t.TempDir())
	ctx := testCtx(t)
	registerIn(t, c, "F1", "Qinglong")
	openBaba(t, c, 1_000_000)
	req := chestnutOrder("po-1", "F1")
	req.ToleranceBp = 0
	order := place(t, c, req).GetOrderId()
	var (
		wg sync.WaitGroup
		mu sync.Mutex
		ok int
	)
	for i := range 16 {
		wg.Go(func() {
			_, err := c.procurement.RecordDelivery(ctx, weighIn(fmt.Sprintf("wh-%02d", i), order, "A", 10_000))
			mu.Lock()
			defer mu.Unlock()
			switch status.Code(err) {
			case codes.OK:
				ok++
			case codes.FailedPrecondition:
			default:
				t.Errorf("RecordDelivery %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	got, err := c.procurement.GetOrder(ctx, &procurementv1.GetOrderRequest{OrderId: order})
	if err != nil {
		t.Fatal(err)
	}
	if ok != 10 || got.GetOrder().GetDeliveredGrams() != 100_000 || got.GetOrder().GetDeliveries() != 10 {
		t.Fatalf("%d accepted; order has %d g in %d deliveries", ok, got.GetOrder().GetDeliveredGrams(), got.GetOrder().GetDeliveries())
	}
}

// startAt starts a stack on dir and returns its clients and a stop func,
// for tests that restart on the same data directory.
func startAt(t testing.TB, dir string) (clients, func()) {
	t.Helper()
	st, err := stack.Start(context.Background(), stack.Config{DataDir: dir, GRPCAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(st.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	stop := func() {
		conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st.Shutdown(ctx)
	}
	return clients{st: st, ledger: ledgerv1.NewLedgerServiceClient(conn), procurement: procurementv1.NewProcurementServiceClient(conn)}, stop
}

// TestCorrectionChainLeavesLastAmount records a delivery, corrects it, and
// corrects it again: the farmer's payable in the ledger, the delivery and
// the programme's progress all show the last correction — also after every
// read model is rebuilt from zero.
func TestCorrectionChainLeavesLastAmount(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c, stop := startAt(t, dir)
	ctx := testCtx(t)
	registerIn(t, c, "F1", "Qinglong")
	openBaba(t, c, 1_000_000)
	order := place(t, c, chestnutOrder("po-1", "F1")).GetOrderId()
	rec := deliver(t, c, weighIn("wh-1", order, "A", 10_000)) // 12,000 fen
	if got := payable(t, c, "F1", rec.GetPosition(), 12_000); got != 12_000 {
		t.Fatalf("payable after recording %d, want 12000", got)
	}

	correct := func(rid string, grams int64, grade string) *procurementv1.CorrectDeliveryResponse {
		t.Helper()
		res, err := c.procurement.CorrectDelivery(ctx, &procurementv1.CorrectDeliveryRequest{
			RequestId: rid, DeliveryId: rec.GetDeliveryId(), NetGrams: grams, Grade: grade, Reason: "re-weighed"})
		if err != nil {
			t.Fatalf("CorrectDelivery(%s): %v", rid, err)
		}
		return res
	}
	c1 := correct("fix-1", 9_500, "A") // 11,400
	c2 := correct("fix-2", 9_500, "B") // 8,550
	if again := correct("fix-2", 9_500, "B"); again.GetPosition().GetSequence() != c2.GetPosition().GetSequence() || again.GetCorrectionNumber() != 2 {
		t.Fatalf("retried correction = %v, first %v", again, c2)
	}
	got := []int64{int64(c1.GetCorrectionNumber()), c1.GetReversedAmountFen(), c1.GetAmountFen(),
		int64(c2.GetCorrectionNumber()), c2.GetReversedAmountFen(), c2.GetAmountFen()}
	if diff := cmp.Diff([]int64{1, 12_000, 11_400, 2, 11_400, 8_550}, got); diff != "" {
		t.Fatalf("corrections (number, reversed, amount) (-want +got):\n%s", diff)
	}
	_, err := c.procurement.CorrectDelivery(ctx, &procurementv1.CorrectDeliveryRequest{
		RequestId: "fix-2", DeliveryId: rec.GetDeliveryId(), NetGrams: 1, Grade: "B", Reason: "other"})
	wantCode(t, err, codes.AlreadyExists, "request_id")

	check := func(c clients, when string) {
		t.Helper()
		if got := payable(t, c, "F1", c2.GetPosition(), 8_550); got != 8_550 {
			t.Errorf("%s: ledger payable %d fen, want the last correction's 8550", when, got)
		}
		d, err := c.procurement.GetDelivery(ctx, &procurementv1.GetDeliveryRequest{DeliveryId: rec.GetDeliveryId()})
		if err != nil {
			t.Fatal(err)
		}
		if dv := d.GetDelivery(); dv.GetAmountFen() != 8_550 || dv.GetGrade() != "B" || dv.GetCorrections() != 2 || dv.GetOrderId() != order {
			t.Errorf("%s: GetDelivery = %v", when, dv)
		}
		list, err := c.procurement.ListFarmerDeliveries(ctx, &procurementv1.ListFarmerDeliveriesRequest{FarmerId: "F1", MinPosition: c2.GetPosition()})
		if err != nil {
			t.Fatal(err)
		}
		if len(list.GetDeliveries()) != 1 || list.GetDeliveries()[0].GetAmountFen() != 8_550 || list.GetDeliveries()[0].GetNetGrams() != 9_500 {
			t.Errorf("%s: ListFarmerDeliveries = %v", when, list.GetDeliveries())
		}
		pr, err := c.procurement.GetProgramProgress(ctx, &procurementv1.GetProgramProgressRequest{ProgramId: "baba-2025", MinPosition: c2.GetPosition()})
		if err != nil {
			t.Fatal(err)
		}
		if tot := pr.GetTotal(); tot.GetDeliveredFen() != 8_550 || tot.GetDeliveredGrams() != 9_500 || tot.GetDeliveries() != 1 {
			t.Errorf("%s: progress total = %v", when, tot)
		}
	}
	check(c, "live")

	// Rebuild every read model from zero: stop, drop the SQL database,
	// start again; the projections replay the streams.
	stop()
	for _, f := range []string{"projections.db", "projections.db-wal", "projections.db-shm"} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	c, stop = startAt(t, dir)
	defer stop()
	check(c, "after rebuild")
}

// TestProcurementBadInputAppendsNothing sends every kind of bad command and
// checks its code, that it names the problem, and that nothing was appended.
func TestProcurementBadInputAppendsNothing(t *testing.T) {
	t.Parallel()
	c := startStack(t, t.TempDir())
	ctx := testCtx(t)
	registerIn(t, c, "F1", "Qinglong")
	registerIn(t, c, "F2", "Xunwu")
	openBaba(t, c, 300_000)
	order := place(t, c, chestnutOrder("po-1", "F1")).GetOrderId()
	rec := deliver(t, c, weighIn("wh-1", order, "A", 1_000))
	cancelled := place(t, c, chestnutOrder("po-2", "F2")).GetOrderId()
	if _, err := c.procurement.CancelOrder(ctx, &procurementv1.CancelOrderRequest{RequestId: "c-2", OrderId: cancelled}); err != nil {
		t.Fatal(err)
	}
	other := openRequest(1_000)
	other.RequestId, other.ProgramId = "open-closed", "closed-2025"
	if _, err := c.procurement.OpenProgram(ctx, other); err != nil {
		t.Fatal(err)
	}
	if _, err := c.procurement.CloseProgram(ctx, &procurementv1.CloseProgramRequest{RequestId: "close", ProgramId: "closed-2025"}); err != nil {
		t.Fatal(err)
	}
	before := streamMsgs(t, c, "PROCUREMENT")

	orderWith := func(edit func(*procurementv1.PlaceOrderRequest)) func() error {
		return func() error {
			r := chestnutOrder("po-bad", "F1")
			edit(r)
			_, err := c.procurement.PlaceOrder(ctx, r)
			return err
		}
	}
	deliveryWith := func(edit func(*procurementv1.RecordDeliveryRequest)) func() error {
		return func() error {
			r := weighIn("wh-bad", order, "A", 1_000)
			edit(r)
			_, err := c.procurement.RecordDelivery(ctx, r)
			return err
		}
	}
	for _, tc := range []struct {
		name    string
		call    func() error
		code    codes.Code
		mention string
	}{
		{"unknown programme", orderWith(func(r *procurementv1.PlaceOrderRequest) { r.ProgramId = "nope" }), codes.NotFound, "program_id"},
		{"unknown farmer", orderWith(func(r *procurementv1.PlaceOrderRequest) { r.FarmerId = "NOBODY" }), codes.NotFound, "farmer_id"},
		{"closed programme", orderWith(func(r *procurementv1.PlaceOrderRequest) { r.ProgramId = "closed-2025" }), codes.FailedPrecondition, "closed"},
		{"over budget", orderWith(func(r *procurementv1.PlaceOrderRequest) { r.OrderedGrams = 1_000_000 }), codes.FailedPrecondition, "over budget"},
		{"price overflow", orderWith(func(r *procurementv1.PlaceOrderRequest) { r.Prices[0].PriceFenPerKg = 1 << 62 }), codes.InvalidArgument, "prices"},
		{"zero ordered grams", orderWith(func(r *procurementv1.PlaceOrderRequest) { r.OrderedGrams = 0 }), codes.InvalidArgument, "ordered_grams"},
		{"product not bought", orderWith(func(r *procurementv1.PlaceOrderRequest) { r.Product = "apples" }), codes.InvalidArgument, "product"},
		{"window outside period", orderWith(func(r *procurementv1.PlaceOrderRequest) {
			r.WindowEnd = timestamppb.New(time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC))
		}), codes.InvalidArgument, "window"},
		{"order request id reused", orderWith(func(r *procurementv1.PlaceOrderRequest) { r.RequestId, r.OrderedGrams = "po-1", 1 }), codes.AlreadyExists, "request_id"},
		{"unknown order", deliveryWith(func(r *procurementv1.RecordDeliveryRequest) { r.OrderId = "O0000" }), codes.NotFound, "order_id"},
		{"cancelled order", deliveryWith(func(r *procurementv1.RecordDeliveryRequest) { r.OrderId = cancelled }), codes.FailedPrecondition, "cancelled"},
		{"grade not in the table", deliveryWith(func(r *procurementv1.RecordDeliveryRequest) { r.Grade = "C" }), codes.InvalidArgument, "grade"},
		{"zero grams", deliveryWith(func(r *procurementv1.RecordDeliveryRequest) { r.NetGrams = 0 }), codes.InvalidArgument, "net_grams"},
		{"negative grams", deliveryWith(func(r *procurementv1.RecordDeliveryRequest) { r.NetGrams = -1 }), codes.InvalidArgument, "net_grams"},
		{"weighed before the window", deliveryWith(func(r *procurementv1.RecordDeliveryRequest) {
			r.WeighedAt = timestamppb.New(novStart.Add(-time.Second))
		}), codes.InvalidArgument, "weighed_at"},
		{"weighed after the window", deliveryWith(func(r *procurementv1.RecordDeliveryRequest) { r.WeighedAt = timestamppb.New(decStart) }), codes.InvalidArgument, "weighed_at"},
		{"beyond the quantity", deliveryWith(func(r *procurementv1.RecordDeliveryRequest) { r.NetGrams = 104_001 }), codes.FailedPrecondition, "ordered quantity"},
		{"price with an order", deliveryWith(func(r *procurementv1.RecordDeliveryRequest) { r.PriceFenPerKg = 1200 }), codes.InvalidArgument, "price_fen_per_kg"},
		{"delivery request id reused", deliveryWith(func(r *procurementv1.RecordDeliveryRequest) { r.RequestId, r.NetGrams = "wh-1", 2_000 }), codes.AlreadyExists, "request_id"},
		{"cancel unknown order", func() error {
			_, err := c.procurement.CancelOrder(ctx, &procurementv1.CancelOrderRequest{RequestId: "c-x", OrderId: "O0000"})
			return err
		}, codes.NotFound, "order_id"},
		{"cancel cancelled order", func() error {
			_, err := c.procurement.CancelOrder(ctx, &procurementv1.CancelOrderRequest{RequestId: "c-y", OrderId: cancelled})
			return err
		}, codes.FailedPrecondition, "already cancelled"},
		{"correct unknown delivery", func() error {
			_, err := c.procurement.CorrectDelivery(ctx, &procurementv1.CorrectDeliveryRequest{RequestId: "f-x", DeliveryId: order + "-D00", NetGrams: 1, Grade: "A", Reason: "x"})
			return err
		}, codes.NotFound, "delivery_id"},
		{"correct to zero grams", func() error {
			_, err := c.procurement.CorrectDelivery(ctx, &procurementv1.CorrectDeliveryRequest{RequestId: "f-y", DeliveryId: rec.GetDeliveryId(), Grade: "A", Reason: "x"})
			return err
		}, codes.InvalidArgument, "net_grams"},
		{"correct to a grade not in the table", func() error {
			_, err := c.procurement.CorrectDelivery(ctx, &procurementv1.CorrectDeliveryRequest{RequestId: "f-z", DeliveryId: rec.GetDeliveryId(), NetGrams: 1, Grade: "C", Reason: "x"})
			return err
		}, codes.InvalidArgument, "grade"},
		{"progress of unknown programme", func() error {
			_, err := c.procurement.GetProgramProgress(ctx, &procurementv1.GetProgramProgressRequest{ProgramId: "nope"})
			return err
		}, codes.NotFound, "program_id"},
		{"min_position in a stream queries do not follow", func() error {
			_, err := c.procurement.ListOrders(ctx, &procurementv1.ListOrdersRequest{MinPosition: &typesv1.Position{Stream: "BRAND", Sequence: 1}})
			return err
		}, codes.InvalidArgument, "min_position"},
		{"bad page token", func() error {
			_, err := c.procurement.ListOrders(ctx, &procurementv1.ListOrdersRequest{PageToken: "garbage"})
			return err
		}, codes.InvalidArgument, "page_token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantCode(t, tc.call(), tc.code, tc.mention)
		})
	}
	if n := streamMsgs(t, c, "PROCUREMENT"); n != before {
		t.Fatalf("bad commands appended %d events", n-before)
	}
}

// TestRecordDeliveriesBulk sends a warehouse's day in one call: each line
// gets its own result, lines of one order apply in the order given, and
// resending the whole day changes nothing.
func TestRecordDeliveriesBulk(t *testing.T) {
	t.Parallel()
	c := startStack(t, t.TempDir())
	ctx := testCtx(t)
	registerIn(t, c, "F1", "Qinglong")
	registerIn(t, c, "F2", "Qinglong")
	openBaba(t, c, 1_000_000)
	o1 := place(t, c, chestnutOrder("po-1", "F1")).GetOrderId()
	o2 := place(t, c, chestnutOrder("po-2", "F2")).GetOrderId()
	day := &procurementv1.RecordDeliveriesRequest{Lines: []*procurementv1.RecordDeliveryRequest{
		weighIn("d-01", o1, "A", 50_000),
		weighIn("d-02", o2, "B", 20_000),
		weighIn("d-03", o1, "C", 1_000),    // grade not in the table
		weighIn("d-04", o1, "B", 50_000),   // 100 kg so far
		weighIn("d-05", o1, "A", 6_000),    // 106 kg: beyond 105
		weighIn("d-06", o1, "A", 5_000),    // 105 kg: fits
		weighIn("d-07", "O-nope", "A", 10), // unknown order
		{RequestId: "d-08", FarmerId: "F2", Product: "yongshun-berry-tea", NetGrams: 2_500, PriceFenPerKg: 3_000, WeighedAt: nov15},
	}}
	res, err := c.procurement.RecordDeliveries(ctx, day)
	if err != nil {
		t.Fatal(err)
	}
	// One line per result: request id, then the amount and the position
	// written, or the error code.
	outcomes := func(res *procurementv1.RecordDeliveriesResponse) []string {
		var out []string
		for _, r := range res.GetResults() {
			if r.GetError() != nil {
				out = append(out, r.GetRequestId()+" "+r.GetError().GetCode())
			} else {
				out = append(out, fmt.Sprintf("%s %d @%d", r.GetRequestId(), r.GetRecorded().GetAmountFen(), r.GetRecorded().GetPosition().GetSequence()))
			}
		}
		return out
	}
	var got []string
	for _, o := range outcomes(res) {
		got = append(got, strings.Split(o, " @")[0])
	}
	want := []string{"d-01 60000", "d-02 18000", "d-03 INVALID_ARGUMENT", "d-04 45000", "d-05 FAILED_PRECONDITION",
		"d-06 6000", "d-07 NOT_FOUND", "d-08 7500"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("line results (-want +got):\n%s", diff)
	}
	if res.GetRecorded() != 5 || res.GetRefused() != 3 {
		t.Fatalf("recorded %d, refused %d", res.GetRecorded(), res.GetRefused())
	}
	if msg := res.GetResults()[2].GetError().GetMessage(); !strings.Contains(msg, "grade") {
		t.Errorf("line error %q does not name the field", msg)
	}
	events := streamMsgs(t, c, "PROCUREMENT")

	again, err := c.procurement.RecordDeliveries(ctx, day)
	if err != nil {
		t.Fatal(err)
	}
	// Recorded lines answer as before; refused ones wrote nothing and are
	// decided again (d-05 still does not fit).
	if diff := cmp.Diff(outcomes(res), outcomes(again)); diff != "" {
		t.Fatalf("resent day differs (-first +again):\n%s", diff)
	}
	if n := streamMsgs(t, c, "PROCUREMENT"); n != events {
		t.Fatalf("resending the day appended %d events", n-events)
	}
	if got := payable(t, c, "F1", res.GetPosition(), 60_000+45_000+6_000); got != 60_000+45_000+6_000 {
		t.Fatalf("F1 payable %d", got)
	}
	_, err = c.procurement.RecordDeliveries(ctx, &procurementv1.RecordDeliveriesRequest{})
	wantCode(t, err, codes.InvalidArgument, "lines")
}

// TestProcurementQueries covers the listing queries: filters, paging and
// read-your-writes from either stream.
func TestProcurementQueries(t *testing.T) {
	t.Parallel()
	c := startStack(t, t.TempDir())
	ctx := testCtx(t)
	registerIn(t, c, "QL1", "Qinglong")
	registerIn(t, c, "QL2", "Qinglong")
	registerIn(t, c, "XW1", "Xunwu")
	openBaba(t, c, 10_000_000)
	var orders []string
	for i, f := range []string{"QL1", "QL1", "QL2", "XW1", "XW1"} {
		orders = append(orders, place(t, c, chestnutOrder(fmt.Sprintf("po-%d", i), f)).GetOrderId())
	}
	var last *typesv1.Position
	for i := range 3 {
		last = deliver(t, c, weighIn(fmt.Sprintf("wh-%d", i), orders[0], "A", int64(1_000*(i+1)))).GetPosition()
	}
	cancel, err := c.procurement.CancelOrder(ctx, &procurementv1.CancelOrderRequest{RequestId: "c", OrderId: orders[4]})
	if err != nil {
		t.Fatal(err)
	}
	list := func(req *procurementv1.ListOrdersRequest) []string {
		t.Helper()
		req.MinPosition = cancel.GetPosition()
		res, err := c.procurement.ListOrders(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, o := range res.GetOrders() {
			ids = append(ids, o.GetOrderId())
		}
		return ids
	}
	for _, tc := range []struct {
		name string
		req  *procurementv1.ListOrdersRequest
		want []string
	}{
		{"programme", &procurementv1.ListOrdersRequest{ProgramId: "baba-2025"}, orders},
		{"farmer", &procurementv1.ListOrdersRequest{FarmerId: "QL1"}, orders[:2]},
		{"county", &procurementv1.ListOrdersRequest{County: "Xunwu"}, orders[3:]},
		{"status", &procurementv1.ListOrdersRequest{Status: procurementv1.OrderStatus_ORDER_STATUS_CANCELLED}, orders[4:]},
		{"county and status", &procurementv1.ListOrdersRequest{County: "Xunwu", Status: procurementv1.OrderStatus_ORDER_STATUS_OPEN}, orders[3:4]},
		{"other programme", &procurementv1.ListOrdersRequest{ProgramId: "other"}, nil},
	} {
		if diff := cmp.Diff(tc.want, list(tc.req)); diff != "" {
			t.Errorf("ListOrders by %s (-want +got):\n%s", tc.name, diff)
		}
	}

	// Paging: 5 orders, 2 a page.
	var paged []string
	token := ""
	for pages := 0; ; pages++ {
		res, err := c.procurement.ListOrders(ctx, &procurementv1.ListOrdersRequest{PageSize: 2, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range res.GetOrders() {
			paged = append(paged, o.GetOrderId())
		}
		if token = res.GetNextPageToken(); token == "" {
			break
		}
		if pages > 3 {
			t.Fatal("paging does not end")
		}
	}
	if diff := cmp.Diff(orders, paged); diff != "" {
		t.Errorf("orders paged 2 at a time (-want +got):\n%s", diff)
	}

	// A farmer's deliveries, newest first, 2 a page.
	first, err := c.procurement.ListFarmerDeliveries(ctx, &procurementv1.ListFarmerDeliveriesRequest{FarmerId: "QL1", PageSize: 2, MinPosition: last})
	if err != nil {
		t.Fatal(err)
	}
	second, err := c.procurement.ListFarmerDeliveries(ctx, &procurementv1.ListFarmerDeliveriesRequest{FarmerId: "QL1", PageSize: 2, PageToken: first.GetNextPageToken()})
	if err != nil {
		t.Fatal(err)
	}
	var grams []int64
	for _, d := range append(first.GetDeliveries(), second.GetDeliveries()...) {
		grams = append(grams, d.GetNetGrams())
	}
	if diff := cmp.Diff([]int64{3_000, 2_000, 1_000}, grams); diff != "" || second.GetNextPageToken() != "" {
		t.Errorf("deliveries of QL1, newest first (-want +got):\n%s (next %q)", diff, second.GetNextPageToken())
	}

	// County totals; a farmer registered just now counts once its LEDGER
	// position is reached.
	reg := registerIn(t, c, "YS1", "Yongshun")
	totals, err := c.procurement.ListCountyTotals(ctx, &procurementv1.ListCountyTotalsRequest{MinPosition: reg.GetPosition()})
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		County          string
		Farmers, Orders int64
		Ordered, Deliv  int64
		DeliveredFen    int64
	}
	var gotRows []row
	for _, ct := range totals.GetCounties() {
		p := ct.GetProgress()
		gotRows = append(gotRows, row{ct.GetCounty(), ct.GetFarmers(), p.GetOrders(), p.GetOrderedGrams(), p.GetDeliveredGrams(), p.GetDeliveredFen()})
	}
	wantRows := []row{
		{"Qinglong", 2, 3, 300_000, 6_000, 7_200},
		{"Xunwu", 1, 2, 100_000, 0, 0},
		{"Yongshun", 1, 0, 0, 0, 0},
	}
	if diff := cmp.Diff(wantRows, gotRows); diff != "" {
		t.Errorf("county totals (-want +got):\n%s", diff)
	}
}
