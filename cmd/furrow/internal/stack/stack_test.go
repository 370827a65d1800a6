package stack_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"
	procurementv1 "github.com/furrow/furrow/proto/furrow/procurement/v1"

	"github.com/furrow/furrow/cmd/furrow/internal/stack"
)

type clients struct {
	st          *stack.Stack
	ledger      ledgerv1.LedgerServiceClient
	procurement procurementv1.ProcurementServiceClient
	health      healthpb.HealthClient
}

func startStack(t testing.TB, dir string) clients {
	t.Helper()
	st, err := stack.Start(context.Background(), stack.Config{DataDir: dir, GRPCAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st.Shutdown(ctx)
	})
	conn, err := grpc.NewClient(st.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return clients{st: st, ledger: ledgerv1.NewLedgerServiceClient(conn),
		procurement: procurementv1.NewProcurementServiceClient(conn), health: healthpb.NewHealthClient(conn)}
}

func testCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func register(t testing.TB, c clients, farmerID string) *ledgerv1.RegisterFarmerResponse {
	t.Helper()
	res, err := c.ledger.RegisterFarmer(testCtx(t), &ledgerv1.RegisterFarmerRequest{
		RequestId: "reg-" + farmerID, FarmerId: farmerID, Name: "Wang Fang", County: "Xunwu",
		Cooperative: "Xunwu Navel Orange Co-op", Phone: "13800000000", PayoutAccount: "6222020000000001",
	})
	if err != nil {
		t.Fatalf("RegisterFarmer(%s): %v", farmerID, err)
	}
	return res
}

func streamMsgs(t testing.TB, c clients, stream string) uint64 {
	t.Helper()
	s, err := c.st.JetStream().Stream(testCtx(t), stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// TestSlice is the first slice end to end: a farmer is registered, a
// delivery is recorded, the ledger posts the payable, and the balance shows
// it — read-your-writes via the delivery's position.
func TestSlice(t *testing.T) {
	t.Parallel()
	c := startStack(t, t.TempDir())
	ctx := testCtx(t)
	if _, err := c.health.Check(ctx, &healthpb.HealthCheckRequest{Service: "furrow.ledger.v1.LedgerService"}); err != nil {
		t.Fatalf("health: %v", err)
	}
	register(t, c, "F1")
	rec := &procurementv1.RecordDeliveryRequest{
		RequestId: "wh-7/2026-11-28/001", FarmerId: "F1", Product: "xunwu-navel-orange",
		NetGrams: 12_345, PriceFenPerKg: 680, Grade: "A",
	}
	res, err := c.procurement.RecordDelivery(ctx, rec)
	if err != nil {
		t.Fatal(err)
	}
	// 12,345 g × 680 fen/kg / 1000 = 8,394.6 fen → 8,395.
	if res.GetAmountFen() != 8395 || res.GetPosition().GetStream() != "PROCUREMENT" || res.GetPosition().GetSequence() == 0 {
		t.Fatalf("RecordDelivery = %v", res)
	}
	bal, err := c.ledger.GetFarmerBalance(ctx, &ledgerv1.GetFarmerBalanceRequest{FarmerId: "F1", MinPosition: res.GetPosition()})
	if err != nil {
		t.Fatal(err)
	}
	if bal.GetPurchasesFen() != 8395 || bal.GetAvailableFen() != 8395 {
		t.Fatalf("balance = %v, want 8395 fen payable", bal)
	}

	// A retry with the same request id is the same delivery: one event, one payable.
	again, err := c.procurement.RecordDelivery(ctx, rec)
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	if again.GetDeliveryId() != res.GetDeliveryId() || again.GetPosition().GetSequence() != res.GetPosition().GetSequence() {
		t.Fatalf("retry = %v, first = %v", again, res)
	}
	second, err := c.procurement.RecordDelivery(ctx, &procurementv1.RecordDeliveryRequest{
		RequestId: "wh-7/2026-11-28/002", FarmerId: "F1", Product: "xunwu-navel-orange", NetGrams: 1000, PriceFenPerKg: 680,
	})
	if err != nil {
		t.Fatal(err)
	}
	bal, err = c.ledger.GetFarmerBalance(ctx, &ledgerv1.GetFarmerBalanceRequest{FarmerId: "F1", MinPosition: second.GetPosition()})
	if err != nil {
		t.Fatal(err)
	}
	if bal.GetPurchasesFen() != 8395+680 {
		t.Fatalf("balance after retry and a second delivery = %d, want %d", bal.GetPurchasesFen(), 8395+680)
	}
	if n := streamMsgs(t, c, "PROCUREMENT"); n != 2 {
		t.Fatalf("PROCUREMENT holds %d events, want 2", n)
	}

	got, err := c.procurement.GetDelivery(ctx, &procurementv1.GetDeliveryRequest{DeliveryId: res.GetDeliveryId()})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetDelivery().GetNetGrams() != 12_345 || got.GetDelivery().GetFarmerId() != "F1" {
		t.Fatalf("GetDelivery = %v", got)
	}
}

func TestRequestIDReusedWithOtherContent(t *testing.T) {
	t.Parallel()
	c := startStack(t, t.TempDir())
	ctx := testCtx(t)
	register(t, c, "F1")
	req := &procurementv1.RecordDeliveryRequest{RequestId: "r1", FarmerId: "F1", Product: "chestnut", NetGrams: 5000, PriceFenPerKg: 1200}
	if _, err := c.procurement.RecordDelivery(ctx, req); err != nil {
		t.Fatal(err)
	}
	req.NetGrams = 6000
	_, err := c.procurement.RecordDelivery(ctx, req)
	if status.Code(err) != codes.AlreadyExists {
		t.Fatalf("reused request id: %v, want AlreadyExists", err)
	}
	// Registering again under the same request id is a no-op; under another, AlreadyExists.
	register(t, c, "F1")
	_, err = c.ledger.RegisterFarmer(ctx, &ledgerv1.RegisterFarmerRequest{RequestId: "other", FarmerId: "F1", Name: "X", County: "Y"})
	if status.Code(err) != codes.AlreadyExists {
		t.Fatalf("second registration: %v, want AlreadyExists", err)
	}
}

func TestConcurrencyConflictIsAborted(t *testing.T) {
	t.Parallel()
	c := startStack(t, t.TempDir())
	ctx := testCtx(t)
	reg := register(t, c, "F1")
	v := reg.GetVersion()
	upd, err := c.ledger.UpdatePayoutAccount(ctx, &ledgerv1.UpdatePayoutAccountRequest{
		RequestId: "u1", FarmerId: "F1", PayoutAccount: "acct-2", ExpectedVersion: &v})
	if err != nil {
		t.Fatal(err)
	}
	// A second writer that read the same version loses.
	_, err = c.ledger.UpdatePayoutAccount(ctx, &ledgerv1.UpdatePayoutAccountRequest{
		RequestId: "u2", FarmerId: "F1", PayoutAccount: "acct-3", ExpectedVersion: &v})
	if status.Code(err) != codes.Aborted {
		t.Fatalf("stale expected_version: %v, want Aborted", err)
	}
	f, err := c.ledger.GetFarmer(asFinance(ctx), &ledgerv1.GetFarmerRequest{FarmerId: "F1"})
	if err != nil {
		t.Fatal(err)
	}
	if f.GetFarmer().GetPayoutAccount() != "acct-2" || f.GetFarmer().GetVersion() != upd.GetVersion() {
		t.Fatalf("farmer = %v", f.GetFarmer())
	}
}

func TestBadInputIsInvalidArgumentAndAppendsNothing(t *testing.T) {
	t.Parallel()
	c := startStack(t, t.TempDir())
	ctx := testCtx(t)
	register(t, c, "F1")
	ok := func() *procurementv1.RecordDeliveryRequest {
		return &procurementv1.RecordDeliveryRequest{RequestId: "r", FarmerId: "F1", Product: "berry-tea", NetGrams: 1000, PriceFenPerKg: 100}
	}
	for _, tc := range []struct {
		name  string
		edit  func(*procurementv1.RecordDeliveryRequest)
		field string
	}{
		{"zero grams", func(r *procurementv1.RecordDeliveryRequest) { r.NetGrams = 0 }, "net_grams"},
		{"negative grams", func(r *procurementv1.RecordDeliveryRequest) { r.NetGrams = -5 }, "net_grams"},
		{"missing farmer id", func(r *procurementv1.RecordDeliveryRequest) { r.FarmerId = "" }, "farmer_id"},
		{"malformed farmer id", func(r *procurementv1.RecordDeliveryRequest) { r.FarmerId = "F1.>" }, "farmer_id"},
		{"grams and price far over their limits", func(r *procurementv1.RecordDeliveryRequest) { r.NetGrams, r.PriceFenPerKg = 1<<40, 1<<40 }, "net_grams"},
		{"price over its limit", func(r *procurementv1.RecordDeliveryRequest) { r.PriceFenPerKg = 1 << 40 }, "price_fen_per_kg"},
		{"negative price", func(r *procurementv1.RecordDeliveryRequest) { r.PriceFenPerKg = -1 }, "price_fen_per_kg"},
		{"empty request id", func(r *procurementv1.RecordDeliveryRequest) { r.RequestId = "" }, "request_id"},
		{"missing product", func(r *procurementv1.RecordDeliveryRequest) { r.Product = "" }, "product"},
	} {
		req := ok()
		req.RequestId = "bad-" + strings.ReplaceAll(tc.name, " ", "-")
		tc.edit(req)
		_, err := c.procurement.RecordDelivery(ctx, req)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tc.field) {
			t.Errorf("%s: %v, want InvalidArgument naming %s", tc.name, err, tc.field)
		}
	}
	// A farmer that was never registered is a missing referent: NOT_FOUND,
	// as PlaceOrder answers for the same farmer.
	unknown := ok()
	unknown.RequestId, unknown.FarmerId = "bad-unknown-farmer", "NOBODY"
	_, err := c.procurement.RecordDelivery(ctx, unknown)
	if status.Code(err) != codes.NotFound || !strings.Contains(status.Convert(err).Message(), "farmer_id") {
		t.Errorf("unknown farmer: %v, want NotFound naming farmer_id", err)
	}
	if n := streamMsgs(t, c, "PROCUREMENT"); n != 0 {
		t.Fatalf("bad requests appended %d events", n)
	}
	_, err = c.ledger.RegisterFarmer(ctx, &ledgerv1.RegisterFarmerRequest{RequestId: "x", FarmerId: "", Name: "n", County: "c"})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "farmer_id") {
		t.Fatalf("register without id: %v", err)
	}
	_, err = c.ledger.GetFarmerBalance(ctx, &ledgerv1.GetFarmerBalanceRequest{FarmerId: "NOBODY"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("balance of unknown farmer: %v, want NotFound", err)
	}
}

// TestRestartKeepsBalances stops and restarts the stack on the same data
// directory: the projection resumes after its checkpoint, nothing is
// counted twice.
func TestRestartKeepsBalances(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := testCtx(t)
	var want int64
	for round := range 3 {
		st, err := stack.Start(ctx, stack.Config{DataDir: dir, GRPCAddr: "127.0.0.1:0"})
		if err != nil {
			t.Fatal(err)
		}
		conn, err := grpc.NewClient(st.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		led, proc := ledgerv1.NewLedgerServiceClient(conn), procurementv1.NewProcurementServiceClient(conn)
		if round == 0 {
			if _, err := led.RegisterFarmer(ctx, &ledgerv1.RegisterFarmerRequest{RequestId: "reg", FarmerId: "F1", Name: "n", County: "c"}); err != nil {
				t.Fatal(err)
			}
		}
		var last *procurementv1.RecordDeliveryResponse
		for i := range 5 {
			last, err = proc.RecordDelivery(ctx, &procurementv1.RecordDeliveryRequest{
				RequestId: "r" + string(rune('a'+round)) + string(rune('0'+i)), FarmerId: "F1", Product: "chestnut", NetGrams: 1000 + int64(i), PriceFenPerKg: 1000})
			if err != nil {
				t.Fatal(err)
			}
			want += 1000 + int64(i)
		}
		bal, err := led.GetFarmerBalance(ctx, &ledgerv1.GetFarmerBalanceRequest{FarmerId: "F1", MinPosition: last.GetPosition()})
		if err != nil {
			t.Fatal(err)
		}
		if bal.GetPurchasesFen() != want {
			t.Fatalf("round %d: balance %d, want %d", round, bal.GetPurchasesFen(), want)
		}
		conn.Close()
		st.Shutdown(ctx)
	}
}
