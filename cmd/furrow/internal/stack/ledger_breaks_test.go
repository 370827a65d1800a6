package stack_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"
)

// TestResolvingABreakNoReconciliationReportedIsNotFound: a decision can
// only be recorded about a break a reconciliation reported. A well-formed
// id nobody reported is NOT_FOUND and records nothing; the id of a break
// just reported resolves.
func TestResolvingABreakNoReconciliationReportedIsNotFound(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c := startStack(t, dir)
	ctx := testCtx(t)
	finRegister(t, c, "K1", "Xunwu", "Xunwu Navel Orange Co-op", "6222020000000020")
	balanceAt(t, c, "K1", finDeliver(t, c, "K1", "DK1", 10_000, 1_000, 10_000))
	finRequestPayout(t, c, "K1", "k1-0", 10_000)
	finWaitPayout(t, c, "PO-K1-1", ledgerv1.PayoutStatus_PAYOUT_STATUS_SETTLED)

	before := streamMsgs(t, c, "LEDGER")
	_, err := c.ledger.ResolvePayoutBreak(ctx, &ledgerv1.ResolvePayoutBreakRequest{RequestId: "fin-x", BreakId: "Bdeadbeefdeadbeef",
		Decision: ledgerv1.BreakDecision_BREAK_DECISION_ACCEPTED, Note: "no such break"})
	finWantCode(t, "resolving a break never reported", err, codes.NotFound)
	if msg := status.Convert(err).Message(); !strings.Contains(msg, "Bdeadbeefdeadbeef") {
		t.Errorf("NOT_FOUND message %q does not name the break", msg)
	}
	if after := streamMsgs(t, c, "LEDGER"); after != before {
		t.Fatalf("an unknown break's resolution appended %d events", after-before)
	}

	// The provider's file says 100.01 yuan for a payout of 100.00.
	clean, err := os.ReadFile(filepath.Join(dir, "provider", "settlement.csv"))
	if err != nil {
		t.Fatal(err)
	}
	off := strings.Replace(string(clean), ",10000,CNY,", ",10001,CNY,", 1)
	rec, err := c.ledger.ReconcilePayouts(ctx, &ledgerv1.ReconcilePayoutsRequest{SettlementCsv: []byte(off), MinPosition: finLedgerHead(t, c)})
	if err != nil {
		t.Fatal(err)
	}
	var brk *ledgerv1.ReconciliationItem
	for _, it := range rec.GetItems() {
		if it.GetResult() == ledgerv1.ReconciliationResult_RECONCILIATION_RESULT_AMOUNT_MISMATCH {
			brk = it
		}
	}
	if brk == nil {
		t.Fatalf("no amount mismatch reported: %v", rec)
	}
	if want := "the file says 100.01 CNY, the ledger 100.00 CNY (difference +0.01 CNY)"; brk.GetDetail() != want {
		t.Errorf("detail %q, want %q", brk.GetDetail(), want)
	}
	res, err := c.ledger.ResolvePayoutBreak(ctx, &ledgerv1.ResolvePayoutBreakRequest{RequestId: "fin-1", BreakId: brk.GetBreakId(),
		Decision: ledgerv1.BreakDecision_BREAK_DECISION_PROVIDER_TO_CORRECT, Note: "provider ticket 4712"})
	if err != nil {
		t.Fatalf("resolving the break just reported: %v", err)
	}
	// Reconciling again records nothing new and shows it resolved.
	n := streamMsgs(t, c, "LEDGER")
	again, err := c.ledger.ReconcilePayouts(ctx, &ledgerv1.ReconcilePayoutsRequest{SettlementCsv: []byte(off), MinPosition: res.GetPosition()})
	if err != nil {
		t.Fatal(err)
	}
	if got := again.GetTotals(); got.GetOpenBreaks() != 0 || got.GetResolvedBreaks() != 1 {
		t.Errorf("second run: totals %v", got)
	}
	if after := streamMsgs(t, c, "LEDGER"); after != n {
		t.Errorf("reconciling the same breaks again appended %d events", after-n)
	}
}
