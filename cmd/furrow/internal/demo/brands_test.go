package demo_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	brandv1 "github.com/furrow/furrow/proto/furrow/brand/v1"
	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"
	typesv1 "github.com/furrow/furrow/proto/furrow/types/v1"

	"github.com/furrow/furrow/cmd/furrow/internal/demo"
	"github.com/furrow/furrow/cmd/furrow/internal/stack"
)

// TestBrandStepTellsTheXunwuStory: after the demo, XW-001's premiums are
// one yuan per kilogram sold at Hema, and loading again adds no brand
// event.
func TestBrandStepTellsTheXunwuStory(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := stack.Start(ctx, stack.Config{DataDir: t.TempDir(), GRPCAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Shutdown(context.Background())
	conn, err := grpc.NewClient(st.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := demo.Load(ctx, conn); err != nil {
		t.Fatal(err)
	}
	brandEvents := func() uint64 {
		t.Helper()
		s, err := st.JetStream().Stream(ctx, "BRAND")
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs
	}
	first := brandEvents()
	rep, err := brandv1.NewBrandServiceClient(conn).GetSalesReport(ctx, &brandv1.GetSalesReportRequest{ReportId: "hema-2025-11"})
	if err != nil {
		t.Fatal(err)
	}
	// 1,234,567 g, 402,350 g and 87,000 g at 100 fen/kg.
	if rep.GetPremiumFen() != 123_457+40_235+8_700 {
		t.Fatalf("report premium %d fen", rep.GetPremiumFen())
	}
	// The ledger credits the premiums: wait for it to reach the report.
	bal, err := ledgerv1.NewLedgerServiceClient(conn).GetFarmerBalance(ctx, &ledgerv1.GetFarmerBalanceRequest{FarmerId: "XW-001",
		MinPosition: &typesv1.Position{Stream: "BRAND", Sequence: rep.GetVersion()}})
	if err != nil {
		t.Fatal(err)
	}
	if bal.GetPremiumsFen() != 123_457+8_700 {
		t.Fatalf("XW-001's premiums %d fen, want %d", bal.GetPremiumsFen(), 123_457+8_700)
	}
	if err := demo.Load(ctx, conn); err != nil {
		t.Fatalf("second load: %v", err)
	}
	if n := brandEvents(); n != first {
		t.Fatalf("loading twice added %d brand events", n-first)
	}
}
