package demo_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"
	procurementv1 "github.com/furrow/furrow/proto/furrow/procurement/v1"
	typesv1 "github.com/furrow/furrow/proto/furrow/types/v1"

	"github.com/furrow/furrow/cmd/furrow/internal/demo"
	"github.com/furrow/furrow/cmd/furrow/internal/stack"
)

// TestLoadTwiceChangesNothing loads the demo, checks a few of its figures,
// loads it again and checks that no stream gained an event.
func TestLoadTwiceChangesNothing(t *testing.T) {
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
	proc, led := procurementv1.NewProcurementServiceClient(conn), ledgerv1.NewLedgerServiceClient(conn)

	// counts counts each stream's events once the ledger has posted every
	// delivery: it waits for the PROCUREMENT head on the ledger, then until
	// the LEDGER count holds still for a while (the ledger's wait can
	// return a moment early under load; see payable in the stack tests).
	count := func(name string) (msgs, last uint64) {
		t.Helper()
		s, err := st.JetStream().Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs, info.State.LastSeq
	}
	counts := func() map[string]uint64 {
		t.Helper()
		procurement, head := count("PROCUREMENT")
		if _, err := led.GetFarmerBalance(ctx, &ledgerv1.GetFarmerBalanceRequest{FarmerId: "QL-001",
			MinPosition: &typesv1.Position{Stream: "PROCUREMENT", Sequence: head}}); err != nil {
			t.Fatal(err)
		}
		ledger, _ := count("LEDGER")
		for still := 0; still < 5; still++ {
			time.Sleep(50 * time.Millisecond)
			if n, _ := count("LEDGER"); n != ledger {
				ledger, still = n, -1
			}
		}
		return map[string]uint64{"PROCUREMENT": procurement, "LEDGER": ledger}
	}

	if err := demo.Load(ctx, conn); err != nil {
		t.Fatal(err)
	}
	first := counts()
	if first["PROCUREMENT"] == 0 || first["LEDGER"] == 0 {
		t.Fatalf("demo wrote nothing: %v", first)
	}
	if err := demo.Load(ctx, conn); err != nil {
		t.Fatalf("second load: %v", err)
	}
	if diff := cmp.Diff(first, counts()); diff != "" {
		t.Fatalf("events per stream after loading twice (-once +twice):\n%s", diff)
	}

	progress, err := proc.GetProgramProgress(ctx, &procurementv1.GetProgramProgressRequest{ProgramId: demo.ProgramID,
		MinPosition: &typesv1.Position{Stream: "PROCUREMENT", Sequence: first["PROCUREMENT"]}})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, p := range progress.GetByProduct() {
		got[p.GetKey()] = p.GetDeliveredGrams()
	}
	want := map[string]int64{
		"qinglong-chestnut":  612_400 + 380_150 + 705_900 + 498_000 + 520_750, // one lot rejected, one corrected
		"xunwu-navel-orange": 1_250_500 + 1_180_250 + 640_000 + 980_300,
		"yongshun-berry-tea": 210_400 + 195_800 + 240_000 + 62_500,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("delivered grams by product (-want +got):\n%s", diff)
	}
	// QL-002's second lot was corrected to B and back to A: 520.75 kg at 14 yuan.
	bal, err := led.GetFarmerBalance(ctx, &ledgerv1.GetFarmerBalanceRequest{FarmerId: "QL-002"})
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(498_000*1_400/1000 + 520_750*1_400/1000); bal.GetPurchasesFen() != want {
		t.Errorf("QL-002 payable %d fen, want %d", bal.GetPurchasesFen(), want)
	}
}
