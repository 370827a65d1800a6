package stack_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"

	"github.com/furrow/furrow/pkg/grpcx"

	"github.com/furrow/furrow/cmd/furrow/internal/stack"

	ledgerdomain "github.com/furrow/furrow/services/farmer-ledger/domain"
)

// startControlledStack starts the stack with payout controls, its logs
// captured as JSON.
func startControlledStack(t testing.TB, controls ledgerdomain.PayoutControls) (clients, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	st, err := stack.Start(context.Background(), stack.Config{DataDir: t.TempDir(), GRPCAddr: "127.0.0.1:0", Log: log, PayoutControls: controls})
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
	return clients{st: st, ledger: ledgerv1.NewLedgerServiceClient(conn)}, logs
}

// as is ctx acting as actor (furrow dev takes the actor from the
// x-furrow-actor header; production from the client certificate).
func as(ctx context.Context, actor string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, grpcx.MDActor, actor)
}

// TestPayoutControls is issue 11's payout-controls flow through the API:
// a change of payout account holds payouts for the cooling-off period
// (refused, naming its end) and notifies the farmer's phone and
// cooperative (the log notifier, recorded as FarmerNotified, numbers
// masked); afterwards small payouts go straight to the provider, while one
// above the four-eyes threshold waits, cannot be approved by its
// requester, is sent once another identity approves it, and a rejected one
// releases its hold.
func TestPayoutControls(t *testing.T) {
	t.Parallel()
	const coolingOff = 2 * time.Second
	c, logs := startControlledStack(t, ledgerdomain.PayoutControls{CoolingOff: coolingOff, ApprovalAboveFen: 5_000})
	ctx := testCtx(t)
	finRegister(t, c, "F1", "Xunwu", "Xunwu Navel Orange Co-op", "6222020000000001")
	balanceAt(t, c, "F1", finDeliver(t, c, "F1", "D1", 147_059, 680, 100_000))

	// The registration's account is paid at once.
	first := finRequestPayout(t, c, "F1", "pay-1", 1_000)
	finWaitPayout(t, c, first.GetPayout().GetPayoutId(), ledgerv1.PayoutStatus_PAYOUT_STATUS_SETTLED)

	// A change of account: payouts are refused until the cooling-off ends.
	changed := time.Now()
	if _, err := c.ledger.UpdatePayoutAccount(ctx, &ledgerv1.UpdatePayoutAccountRequest{RequestId: "acct-1", FarmerId: "F1", PayoutAccount: "6222020000000777"}); err != nil {
		t.Fatal(err)
	}
	_, err := c.ledger.RequestPayout(ctx, &ledgerv1.RequestPayoutRequest{RequestId: "pay-2", FarmerId: "F1",
		Amount: &ledgerv1.RequestPayoutRequest_AmountFen{AmountFen: 1_000}})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(status.Convert(err).Message(), "held until") {
		t.Fatalf("payout during the cooling-off: %v, want FailedPrecondition naming its end", err)
	}

	// The farmer and its cooperative are told, once, with masked numbers.
	deadline := time.Now().Add(10 * time.Second)
	for finSubjectCount(t, c, "ledger.notice.F1.farmer_notified") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no FarmerNotified after the change of payout account")
		}
		time.Sleep(20 * time.Millisecond)
	}
	var notices []map[string]any
	for _, r := range logs.records(t) {
		text, _ := json.Marshal(r)
		for _, clear := range []string{"13800000000", "6222020000000777", "6222020000000001"} {
			if strings.Contains(string(text), clear) {
				t.Errorf("a log record holds %s in clear: %s", clear, text)
			}
		}
		if r["reason"] == ledgerdomain.NoticePayoutAccountChanged {
			notices = append(notices, r)
		}
	}
	if len(notices) != 1 || notices[0]["phone"] != "••••0000" || notices[0]["cooperative"] != "Xunwu Navel Orange Co-op" ||
		!strings.Contains(notices[0]["text"].(string), "••••0777") || !strings.Contains(notices[0]["text"].(string), "No payout goes to it before") {
		t.Errorf("notices = %v, want one to ••••0000 and the cooperative naming ••••0777 and the end of the cooling-off", notices)
	}

	// After the cooling-off, a payout at the threshold goes straight on.
	time.Sleep(time.Until(changed.Add(coolingOff)))
	var second *ledgerv1.RequestPayoutResponse
	for second == nil {
		second, err = c.ledger.RequestPayout(ctx, &ledgerv1.RequestPayoutRequest{RequestId: "pay-2", FarmerId: "F1",
			Amount: &ledgerv1.RequestPayoutRequest_AmountFen{AmountFen: 5_000}})
		if err != nil && (status.Code(err) != codes.FailedPrecondition || time.Since(changed) > coolingOff+5*time.Second) {
			t.Fatalf("payout after the cooling-off: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	finWaitPayout(t, c, second.GetPayout().GetPayoutId(), ledgerv1.PayoutStatus_PAYOUT_STATUS_SETTLED)

	// Four-eyes: above the threshold, held until someone else approves.
	big, err := c.ledger.RequestPayout(as(ctx, "platform-a"), &ledgerv1.RequestPayoutRequest{RequestId: "pay-3", FarmerId: "F1",
		Amount: &ledgerv1.RequestPayoutRequest_AmountFen{AmountFen: 20_000}})
	if err != nil {
		t.Fatal(err)
	}
	bigID := big.GetPayout().GetPayoutId()
	if big.GetPayout().GetStatus() != ledgerv1.PayoutStatus_PAYOUT_STATUS_PENDING_APPROVAL {
		t.Fatalf("payout of 20,000 fen is %v, want pending approval", big.GetPayout().GetStatus())
	}
	if b := balanceAt(t, c, "F1", big.GetPosition()); b.GetHeldFen() != 20_000 {
		t.Errorf("held %d fen while the payout waits, want 20000", b.GetHeldFen())
	}
	_, err = c.ledger.ApprovePayout(as(ctx, "platform-a"), &ledgerv1.ApprovePayoutRequest{RequestId: "approve-own", PayoutId: bigID})
	wantCode(t, err, codes.FailedPrecondition, "four-eyes")
	if p := finWaitPayout(t, c, bigID, ledgerv1.PayoutStatus_PAYOUT_STATUS_PENDING_APPROVAL); p.GetProviderReference() != "" {
		t.Fatalf("the payout reached the provider unapproved: %v", p)
	}
	approved, err := c.ledger.ApprovePayout(as(ctx, "finance-b"), &ledgerv1.ApprovePayoutRequest{RequestId: "approve-1", PayoutId: bigID})
	if err != nil {
		t.Fatal(err)
	}
	if approved.GetPayout().GetStatus() != ledgerv1.PayoutStatus_PAYOUT_STATUS_REQUESTED {
		t.Errorf("approved payout is %v, want requested", approved.GetPayout().GetStatus())
	}
	again, err := c.ledger.ApprovePayout(as(ctx, "finance-b"), &ledgerv1.ApprovePayoutRequest{RequestId: "approve-1", PayoutId: bigID})
	if err != nil || again.GetPosition().GetSequence() != approved.GetPosition().GetSequence() {
		t.Errorf("retried approval = %v, %v; want the first one's position", again, err)
	}
	finWaitPayout(t, c, bigID, ledgerv1.PayoutStatus_PAYOUT_STATUS_SETTLED)

	// A rejected payout is never sent and releases its hold.
	other, err := c.ledger.RequestPayout(as(ctx, "platform-a"), &ledgerv1.RequestPayoutRequest{RequestId: "pay-4", FarmerId: "F1",
		Amount: &ledgerv1.RequestPayoutRequest_AmountFen{AmountFen: 10_000}})
	if err != nil {
		t.Fatal(err)
	}
	rejected, err := c.ledger.RejectPayout(as(ctx, "finance-b"), &ledgerv1.RejectPayoutRequest{RequestId: "reject-1",
		PayoutId: other.GetPayout().GetPayoutId(), Reason: "the farmer did not ask for it"})
	if err != nil {
		t.Fatal(err)
	}
	if rejected.GetPayout().GetStatus() != ledgerv1.PayoutStatus_PAYOUT_STATUS_REJECTED {
		t.Errorf("rejected payout is %v", rejected.GetPayout().GetStatus())
	}
	b := balanceAt(t, c, "F1", rejected.GetPosition())
	if want := [5]int64{100_000, 0, 0, 26_000, 74_000}; finBalance(&ledgerv1.FarmerBalance{PurchasesFen: b.GetPurchasesFen(),
		HeldFen: b.GetHeldFen(), PaidFen: b.GetPaidFen(), AvailableFen: b.GetAvailableFen()}) != want {
		t.Errorf("balance = %v, want purchases 100000, paid 26000, nothing held", b)
	}
	list, err := c.ledger.ListPayouts(ctx, &ledgerv1.ListPayoutsRequest{FarmerId: "F1", Status: ledgerv1.PayoutStatus_PAYOUT_STATUS_REJECTED,
		MinPosition: rejected.GetPosition()})
	if err != nil || len(list.GetPayouts()) != 1 || list.GetPayouts()[0].GetFailureReason() != "the farmer did not ask for it" {
		t.Errorf("rejected payouts = %v, %v", list.GetPayouts(), err)
	}
	for filter, want := range map[string]uint64{
		"ledger.farmer.F1.payout_approved": 1, "ledger.farmer.F1.payout_rejected": 1, "ledger.notice.F1.farmer_notified": 1,
	} {
		if got := finSubjectCount(t, c, filter); got != want {
			t.Errorf("%d events on %s, want %d", got, filter, want)
		}
	}
	tb, err := c.ledger.GetTrialBalance(ctx, &ledgerv1.GetTrialBalanceRequest{MinPosition: rejected.GetPosition()})
	if err != nil || !tb.GetBalanced() {
		t.Errorf("trial balance = %v, %v; want balanced", tb, err)
	}
}
