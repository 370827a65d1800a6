package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"
	procurementevents "github.com/furrow/furrow/proto/furrow/procurement/events/v1"

	"github.com/furrow/furrow/cmd/furrow/internal/stack"
)

// TestTraceCommands: `furrow trace lot` shows a delivered lot with its
// payout, and `furrow trace farmer` the farmer's month in kilograms.
func TestTraceCommands(t *testing.T) {
	t.Parallel()
	st, err := stack.Start(context.Background(), stack.Config{DataDir: t.TempDir(), GRPCAddr: "127.0.0.1:0"})
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
	ledger := ledgerv1.NewLedgerServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	if _, err := ledger.RegisterFarmer(ctx, &ledgerv1.RegisterFarmerRequest{RequestId: "r", FarmerId: "F1", Name: "Wang Fang",
		County: "Xunwu", Cooperative: "Navel Co-op", PayoutAccount: "6222"}); err != nil {
		t.Fatal(err)
	}
	weighed := time.Date(2026, 11, 3, 1, 0, 0, 0, time.UTC)
	pos := appendEvent(t, st, "PROCUREMENT", "procurement.delivery.D1.delivery_recorded", "d1",
		&procurementevents.DeliveryRecorded{DeliveryId: "D1", FarmerId: "F1", Product: "navel-orange", Grade: "A",
			NetGrams: 12_345, PriceFenPerKg: 680, AmountFen: 8_395, WeighedAt: timestamppb.New(weighed), Warehouse: "Xunwu DC", County: "Xunwu"})
	if _, err := ledger.GetFarmerBalance(ctx, &ledgerv1.GetFarmerBalanceRequest{FarmerId: "F1", MinPosition: pos}); err != nil {
		t.Fatal(err)
	}
	if _, err := ledger.RequestPayout(ctx, &ledgerv1.RequestPayoutRequest{RequestId: "p1", FarmerId: "F1",
		Amount: &ledgerv1.RequestPayoutRequest_AmountFen{AmountFen: 3_000}}); err != nil {
		t.Fatal(err)
	}
	for {
		p, err := ledger.GetPayout(ctx, &ledgerv1.GetPayoutRequest{PayoutId: "PO-F1-1"})
		if err == nil && p.GetPayout().GetStatus() == ledgerv1.PayoutStatus_PAYOUT_STATUS_SETTLED {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("payout never settled: %v %v", p, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	addr := "--addr=" + st.GRPCAddr()
	out := mustCLI(t, "trace", "lot", "D1", addr)
	for _, want := range []string{
		"Lot D1: farmer F1, navel-orange grade A",
		"recorded  12.345 kg at 6.80 yuan/kg = 83.95 yuan payable",
		"PO-F1-1 30.00",
		"Payable 83.95, premium 0.00, paid 30.00, unpaid 53.95, owed back 0.00 (yuan).",
		"Allocation: first-in first-out",
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("trace lot lacks %q:\n%s", want, out)
		}
	}
	out = mustCLI(t, "trace", "farmer", "F1", addr)
	if !strings.Contains(out, "2026-11") || !strings.Contains(out, "12.345") {
		t.Fatalf("trace farmer:\n%s", out)
	}
	if _, err := cli(t, "trace", "lot", "NOPE", addr); err == nil || !strings.Contains(err.Error(), "NotFound") {
		t.Fatalf("trace of an unknown lot: %v", err)
	}
}
