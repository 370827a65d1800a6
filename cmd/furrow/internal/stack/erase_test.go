package stack_test

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/testing/protocmp"

	adminv1 "github.com/furrow/furrow/proto/furrow/admin/v1"
	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"
	typesv1 "github.com/furrow/furrow/proto/furrow/types/v1"

	"github.com/furrow/furrow/pkg/grpcx"

	"github.com/furrow/furrow/cmd/furrow/internal/demo"
	"github.com/furrow/furrow/cmd/furrow/internal/stack"
)

// demoPII is what the demo registers for each farmer that is personal:
// the name, phone and payout account numbers (demo/farmers.go).
var demoPII = map[string][]string{
	"QL-001":  {"Li Wei", "13800000101", "6222020000000101"},
	"QL-002":  {"Zhang Min", "13800000102", "6222020000000102"},
	"XW-001":  {"Wang Fang", "13800000201", "6222020000000201"},
	"XW-002":  {"Liu Yang", "13800000202", "6222020000000202"},
	"YS-001":  {"Peng Hua", "13800000301", "6222020000000301"},
	"YS-COOP": {"07430000000", "6222020000000399"}, // its name is its cooperative's
}

// startDemo starts a stack over dir, loads the demo into it and waits
// until the ledger has posted every delivery.
func startDemo(t *testing.T, dir string) (*stack.Stack, *grpc.ClientConn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := stack.Start(ctx, stack.Config{DataDir: dir, GRPCAddr: "127.0.0.1:0"})
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
	if err := demo.Load(ctx, conn); err != nil {
		t.Fatal(err)
	}
	head := func(name string) uint64 {
		s, err := st.JetStream().Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.LastSeq
	}
	if _, err := ledgerv1.NewLedgerServiceClient(conn).GetFarmerBalance(ctx, &ledgerv1.GetFarmerBalanceRequest{FarmerId: "QL-001",
		MinPosition: &typesv1.Position{Stream: "PROCUREMENT", Sequence: head("PROCUREMENT")}}); err != nil {
		t.Fatal(err)
	}
	// The ledger's wait can return a moment early (see payable): wait
	// until its stream holds still.
	last := head("LEDGER")
	for still := 0; still < 5; still++ {
		time.Sleep(50 * time.Millisecond)
		if n := head("LEDGER"); n != last {
			last, still = n, -1
		}
	}
	return st, conn
}

// asFinance is ctx with the finance role, as furrow dev takes it from the
// client (production takes it from the client certificate).
func asFinance(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, grpcx.MDRoles, "finance")
}

// TestEraseFarmerFromTheDemo is issue 11's acceptance test of erasure: on
// the demo data, a farmer with a settled payout is erased; afterwards no
// copy of its personal data can be read (the API, the events operators
// list, the stream's raw bytes, the SQLite read models, every file of the
// data directory), the other farmers are untouched, and the trial balance
// and the farmer's balance are what they were.
func TestEraseFarmerFromTheDemo(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	st, conn := startDemo(t, dir)
	ctx := testCtx(t)
	led, adm := ledgerv1.NewLedgerServiceClient(conn), adminv1.NewAdminServiceClient(conn)
	const farmer = "XW-001"
	name, account := demoPII[farmer][0], demoPII[farmer][2]

	// Before: answers are masked, except the payout account for finance.
	got, err := led.GetFarmer(ctx, &ledgerv1.GetFarmerRequest{FarmerId: farmer})
	if err != nil {
		t.Fatal(err)
	}
	if f := got.GetFarmer(); f.GetName() != name || f.GetPhone() != "••••0201" || f.GetPayoutAccount() != "••••0201" || f.GetErased() {
		t.Fatalf("GetFarmer without a role = %v, want the name, masked numbers", f)
	}
	if got, err = led.GetFarmer(asFinance(ctx), &ledgerv1.GetFarmerRequest{FarmerId: farmer}); err != nil {
		t.Fatal(err)
	}
	if f := got.GetFarmer(); f.GetPayoutAccount() != account || f.GetPhone() != "••••0201" {
		t.Fatalf("GetFarmer for finance = %v, want the account in full, the phone masked", f)
	}

	// A payout, settled, so that the farmer's payouts hold its account.
	po, err := led.RequestPayout(ctx, &ledgerv1.RequestPayoutRequest{RequestId: "erase-demo-payout", FarmerId: farmer,
		Amount: &ledgerv1.RequestPayoutRequest_AmountFen{AmountFen: 100_000}})
	if err != nil {
		t.Fatal(err)
	}
	if po.GetPayout().GetPayoutAccount() != "••••0201" {
		t.Fatalf("RequestPayout answered account %q, want it masked", po.GetPayout().GetPayoutAccount())
	}
	waitPayout(t, led, po.GetPayout().GetPayoutId(), ledgerv1.PayoutStatus_PAYOUT_STATUS_SETTLED)

	ledgerHead := func() *typesv1.Position {
		s, err := st.JetStream().Stream(ctx, "LEDGER")
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return &typesv1.Position{Stream: "LEDGER", Sequence: info.State.LastSeq}
	}
	before := ledgerHead()
	trialBefore, err := led.GetTrialBalance(ctx, &ledgerv1.GetTrialBalanceRequest{ByFarmer: true, MinPosition: before})
	if err != nil {
		t.Fatal(err)
	}
	balanceBefore, err := led.GetFarmerBalance(ctx, &ledgerv1.GetFarmerBalanceRequest{FarmerId: farmer, MinPosition: before})
	if err != nil {
		t.Fatal(err)
	}

	erased, err := led.EraseFarmer(ctx, &ledgerv1.EraseFarmerRequest{RequestId: "erase-" + farmer, FarmerId: farmer})
	if err != nil {
		t.Fatal(err)
	}
	again, err := led.EraseFarmer(ctx, &ledgerv1.EraseFarmerRequest{RequestId: "erase-" + farmer, FarmerId: farmer})
	if err != nil || again.GetPosition().GetSequence() != erased.GetPosition().GetSequence() {
		t.Fatalf("retried erasure = %v, %v; want the first one's position %v", again, err, erased.GetPosition())
	}
	_, err = led.EraseFarmer(ctx, &ledgerv1.EraseFarmerRequest{RequestId: "erase-again", FarmerId: farmer})
	wantCode(t, err, codes.FailedPrecondition, "already erased")
	at := erased.GetPosition()

	// The API: "[erased]" for every caller, the journal whole.
	for _, c := range []context.Context{ctx, asFinance(ctx)} {
		got, err := led.GetFarmer(c, &ledgerv1.GetFarmerRequest{FarmerId: farmer})
		if err != nil {
			t.Fatal(err)
		}
		want := &ledgerv1.Farmer{FarmerId: farmer, Name: "[erased]", County: "Xunwu", Cooperative: "Xunwu Navel Orange Cooperative",
			Phone: "[erased]", PayoutAccount: "[erased]", Version: erased.GetVersion(), Erased: true}
		if diff := cmp.Diff(want, got.GetFarmer(), protocmp.Transform()); diff != "" {
			t.Errorf("GetFarmer after erasure (-want +got):\n%s", diff)
		}
		payouts, err := led.ListPayouts(c, &ledgerv1.ListPayoutsRequest{FarmerId: farmer, MinPosition: at})
		if err != nil {
			t.Fatal(err)
		}
		if len(payouts.GetPayouts()) != 1 || payouts.GetPayouts()[0].GetPayoutAccount() != "[erased]" ||
			payouts.GetPayouts()[0].GetStatus() != ledgerv1.PayoutStatus_PAYOUT_STATUS_SETTLED {
			t.Errorf("ListPayouts after erasure = %v, want the settled payout, its account erased", payouts.GetPayouts())
		}
		list, err := led.ListFarmers(c, &ledgerv1.ListFarmersRequest{County: "Xunwu", MinPosition: at})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, f := range list.GetFarmers() {
			names = append(names, f.GetFarmerId()+"="+f.GetName()+"/"+f.GetPhone())
		}
		if diff := cmp.Diff([]string{"XW-001=[erased]/[erased]", "XW-002=Liu Yang/••••0202"}, names); diff != "" {
			t.Errorf("ListFarmers after erasure (-want +got):\n%s", diff)
		}
	}
	trialAfter, err := led.GetTrialBalance(ctx, &ledgerv1.GetTrialBalanceRequest{ByFarmer: true, MinPosition: at})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(trialBefore, trialAfter, protocmp.Transform(), protocmp.IgnoreFields(&ledgerv1.GetTrialBalanceResponse{}, "as_of")); diff != "" {
		t.Errorf("trial balance changed by the erasure (-before +after):\n%s", diff)
	}
	balanceAfter, err := led.GetFarmerBalance(ctx, &ledgerv1.GetFarmerBalanceRequest{FarmerId: farmer, MinPosition: at})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(balanceBefore, balanceAfter, protocmp.Transform(), protocmp.IgnoreFields(&ledgerv1.GetFarmerBalanceResponse{}, "as_of")); diff != "" {
		t.Errorf("farmer's balance changed by the erasure (-before +after):\n%s", diff)
	}

	// An erased farmer takes no new account and no payout.
	_, err = led.UpdatePayoutAccount(ctx, &ledgerv1.UpdatePayoutAccountRequest{RequestId: "acct-after-erasure", FarmerId: farmer, PayoutAccount: "6222020000000999"})
	wantCode(t, err, codes.FailedPrecondition, "erased")
	_, err = led.RequestPayout(ctx, &ledgerv1.RequestPayoutRequest{RequestId: "payout-after-erasure", FarmerId: farmer,
		Amount: &ledgerv1.RequestPayoutRequest_AllAvailable{AllAvailable: true}})
	wantCode(t, err, codes.FailedPrecondition, "erased")

	// What operators list (furrow events): ciphertext, never a number.
	events, err := adm.ListEvents(ctx, &adminv1.ListEventsRequest{Stream: "LEDGER", Limit: 10_000})
	if err != nil {
		t.Fatal(err)
	}
	var listed bytes.Buffer
	for _, ev := range events.GetEvents() {
		listed.WriteString(ev.GetPayloadJson())
		listed.Write(ev.GetPayload())
		for k, v := range ev.GetHeaders() {
			listed.WriteString(k + ":" + v + "\n")
		}
	}
	if !strings.Contains(listed.String(), "sealedPayoutAccount") && !strings.Contains(listed.String(), "sealed_payout_account") {
		t.Errorf("the events list shows no sealed payout account: %.300s", listed.String())
	}
	for id, pii := range demoPII {
		for _, v := range pii {
			if strings.Contains(listed.String(), v) {
				t.Errorf("the LEDGER events operators list hold %s's %q in clear", id, v)
			}
		}
	}

	// The stream's raw bytes, message by message (headers and payload).
	stream, err := st.JetStream().Stream(ctx, "LEDGER")
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= ledgerHead().GetSequence(); seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		raw := string(m.Data) + m.Subject
		for k, vs := range m.Header {
			raw += k + ":" + strings.Join(vs, ",")
		}
		for id, pii := range demoPII {
			for _, v := range pii {
				if strings.Contains(raw, v) {
					t.Errorf("LEDGER message %d holds %s's %q in clear", seq, id, v)
				}
			}
		}
	}

	// Every file in the data directory after a clean shutdown: the
	// JetStream store (streams, the key bucket), the SQLite read models
	// and their write-ahead log, the simulated provider's files.
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st.Shutdown(sctx)
	scanned := 0
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		scanned++
		for id, pii := range demoPII {
			for _, v := range pii {
				if bytes.Contains(data, []byte(v)) {
					t.Errorf("%s holds %s's %q in clear", strings.TrimPrefix(path, dir), id, v)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if scanned < 5 {
		t.Fatalf("scanned %d files in the data directory: the scan missed the stores", scanned)
	}
}

// waitPayout waits until a payout reaches status.
func waitPayout(t testing.TB, led ledgerv1.LedgerServiceClient, payoutID string, want ledgerv1.PayoutStatus) *ledgerv1.Payout {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := led.GetPayout(testCtx(t), &ledgerv1.GetPayoutRequest{PayoutId: payoutID})
		if err != nil {
			t.Fatal(err)
		}
		if got.GetPayout().GetStatus() == want {
			return got.GetPayout()
		}
		if time.Now().After(deadline) {
			t.Fatalf("payout %s is %v, want %v", payoutID, got.GetPayout().GetStatus(), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
