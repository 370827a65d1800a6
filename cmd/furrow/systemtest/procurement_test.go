package systemtest

import (
	"bufio"
	"context"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"
	procurementv1 "github.com/furrow/furrow/proto/furrow/procurement/v1"
	typesv1 "github.com/furrow/furrow/proto/furrow/types/v1"
)

// startDevWith starts the binary like startDev, with extra flags.
func startDevWith(t testing.TB, dataDir string, extra ...string) *proc {
	t.Helper()
	p := &proc{addr: freeAddr(t), out: &strings.Builder{}, done: make(chan error, 1)}
	args := append([]string{"dev", "--data-dir", dataDir, "--grpc-addr", p.addr, "--nats-addr", "", "--http-addr", "", "--ops-addr", ""}, extra...)
	p.cmd = exec.Command(furrowBin, args...)
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stderr = p.cmd.Stdout
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.out.WriteString(sc.Text() + "\n")
		}
		p.done <- p.cmd.Wait()
	}()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
		}
	})
	if p.conn, err = grpc.NewClient(p.addr, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.conn.Close() })
	deadline := time.Now().Add(90 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := healthpb.NewHealthClient(p.conn).Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil {
			return p
		}
		select {
		case err := <-p.done:
			t.Fatalf("furrow dev %v exited: %v", extra, err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("furrow dev %v not healthy after 90s: %v", extra, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestProcurementOverTheBinary runs `furrow dev --demo`, corrects a
// delivery twice, restarts the binary with --demo again, and checks that
// the demo wrote nothing the second time and the farmer is owed exactly the
// last correction.
func TestProcurementOverTheBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("system test")
	}
	t.Parallel()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	p := startDevWith(t, dir, "--demo")
	procurement, ledger := p.procurement(), p.ledger()
	program := func() *procurementv1.Program {
		t.Helper()
		res, err := procurement.GetProgram(ctx, &procurementv1.GetProgramRequest{ProgramId: "baba-2025"})
		if err != nil {
			t.Fatalf("GetProgram after --demo: %v\n%s", err, p.out.String())
		}
		return res.GetProgram()
	}
	progress := func(at uint64) *procurementv1.GetProgramProgressResponse {
		t.Helper()
		res, err := procurement.GetProgramProgress(ctx, &procurementv1.GetProgramProgressRequest{ProgramId: "baba-2025",
			MinPosition: &typesv1.Position{Stream: "PROCUREMENT", Sequence: at}})
		if err != nil {
			t.Fatal(err)
		}
		res.AsOf = nil
		return res
	}
	demoProgram := program()
	if demoProgram.GetOrders() != 6 || demoProgram.GetReservedFen() == 0 {
		t.Fatalf("demo programme = %v", demoProgram)
	}
	// A correction chain through the binary.
	if _, err := ledger.RegisterFarmer(ctx, &ledgerv1.RegisterFarmerRequest{RequestId: "reg-XW-9", FarmerId: "XW-9", Name: "Chen Jie", County: "Xunwu"}); err != nil {
		t.Fatal(err)
	}
	placed, err := procurement.PlaceOrder(ctx, &procurementv1.PlaceOrderRequest{
		RequestId: "sys-po-1", ProgramId: "baba-2025", FarmerId: "XW-9", Product: "xunwu-navel-orange",
		Prices:       []*procurementv1.GradePrice{{Grade: "A", PriceFenPerKg: 680}, {Grade: "B", PriceFenPerKg: 480}},
		OrderedGrams: 500_000, WindowStart: timestamppb.New(time.Date(2025, 11, 1, 0, 0, 0, 0, time.UTC)),
		WindowEnd: timestamppb.New(time.Date(2025, 12, 1, 0, 0, 0, 0, time.UTC)), OriginWarehouse: "WH-XUNWU",
	})
	if err != nil {
		t.Fatal(err)
	}
	// The order was placed after every demo event: its position covers them.
	if total := progress(placed.GetPosition().GetSequence()).GetTotal(); total.GetDeliveries() != 14 || total.GetOrders() != 7 {
		t.Fatalf("demo progress = %v, want 14 deliveries under 6+1 orders", total)
	}
	rec, err := procurement.RecordDelivery(ctx, &procurementv1.RecordDeliveryRequest{RequestId: "sys-wh-1", OrderId: placed.GetOrderId(),
		Grade: "A", NetGrams: 12_345, WeighedAt: timestamppb.New(time.Date(2025, 11, 20, 9, 0, 0, 0, time.UTC))})
	if err != nil || rec.GetAmountFen() != 8_395 { // 8,394.6 → 8,395
		t.Fatalf("RecordDelivery = %v, %v", rec, err)
	}
	var last *procurementv1.CorrectDeliveryResponse
	for i, fix := range []struct {
		grams int64
		grade string
	}{{12_000, "A"}, {12_000, "B"}} {
		last, err = procurement.CorrectDelivery(ctx, &procurementv1.CorrectDeliveryRequest{RequestId: "sys-fix-" + string(rune('1'+i)),
			DeliveryId: rec.GetDeliveryId(), NetGrams: fix.grams, Grade: fix.grade, Reason: "re-weighed"})
		if err != nil {
			t.Fatal(err)
		}
	}
	const want = 12_000 * 480 / 1000 // 5,760 fen
	owed := func(pos *typesv1.Position) int64 {
		t.Helper()
		var got int64
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			b, err := ledger.GetFarmerBalance(ctx, &ledgerv1.GetFarmerBalanceRequest{FarmerId: "XW-9", MinPosition: pos})
			if err != nil {
				t.Fatal(err)
			}
			// Read again while short of want: see payable in the stack tests.
			if got = b.GetPurchasesFen(); got == want || time.Now().After(deadline) {
				return got
			}
		}
	}
	if got := owed(last.GetPosition()); got != want {
		t.Fatalf("XW-9 is owed %d fen, want the last correction's %d", got, want)
	}
	head := progress(last.GetPosition().GetSequence())

	// Restart with --demo again: the demo is recognised, nothing is added.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(t); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, p.out.String())
	}
	p = startDevWith(t, dir, "--demo")
	procurement, ledger = p.procurement(), p.ledger()
	again := program()
	if diff := cmp.Diff(demoProgram.GetReservedFen()+placed.GetReservedFen(), again.GetReservedFen()); diff != "" {
		t.Errorf("reserved after the second --demo (-want +got):\n%s", diff)
	}
	if again.GetOrders() != 7 {
		t.Errorf("programme has %d orders after the second --demo, want 7", again.GetOrders())
	}
	if diff := cmp.Diff(head, progress(last.GetPosition().GetSequence()), protocmp.Transform()); diff != "" {
		t.Errorf("progress after restart with --demo (-before +after):\n%s", diff)
	}
	if got := owed(last.GetPosition()); got != want {
		t.Fatalf("after restart XW-9 is owed %d fen, want %d", got, want)
	}
}
