package stack_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"

	brandevents "github.com/furrow/furrow/proto/furrow/brand/events/v1"
	ledgerevents "github.com/furrow/furrow/proto/furrow/ledger/events/v1"
	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"
	procurementevents "github.com/furrow/furrow/proto/furrow/procurement/events/v1"
	typesv1 "github.com/furrow/furrow/proto/furrow/types/v1"

	"github.com/furrow/furrow/pkg/eventstore"
)

func finRegister(t testing.TB, c clients, farmerID, county, coop, account string) {
	t.Helper()
	if _, err := c.ledger.RegisterFarmer(testCtx(t), &ledgerv1.RegisterFarmerRequest{
		RequestId: "reg-" + farmerID, FarmerId: farmerID, Name: "Farmer " + farmerID, County: county,
		Cooperative: coop, Phone: "13800000000", PayoutAccount: account,
	}); err != nil {
		t.Fatalf("RegisterFarmer(%s): %v", farmerID, err)
	}
}

// deliver records a delivery the way procurement publishes it.
func finDeliver(t testing.TB, c clients, farmerID, deliveryID string, grams, fenPerKg, amountFen int64) *typesv1.Position {
	t.Helper()
	return appendUpstream(t, c, "PROCUREMENT", "procurement.delivery."+deliveryID+".delivery_recorded", "delivery-"+deliveryID,
		&procurementevents.DeliveryRecorded{DeliveryId: deliveryID, FarmerId: farmerID, Product: "xunwu-navel-orange",
			NetGrams: grams, PriceFenPerKg: fenPerKg, AmountFen: amountFen})
}

func finRequestPayout(t testing.TB, c clients, farmerID, requestID string, amountFen int64) *ledgerv1.RequestPayoutResponse {
	t.Helper()
	res, err := c.ledger.RequestPayout(testCtx(t), &ledgerv1.RequestPayoutRequest{
		RequestId: requestID, FarmerId: farmerID, Amount: &ledgerv1.RequestPayoutRequest_AmountFen{AmountFen: amountFen}})
	if err != nil {
		t.Fatalf("RequestPayout(%s, %d): %v", farmerID, amountFen, err)
	}
	return res
}

// waitPayout polls until the payout reaches want: the saga and the
// settlement poll run asynchronously.
func finWaitPayout(t testing.TB, c clients, payoutID string, want ledgerv1.PayoutStatus) *ledgerv1.Payout {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		res, err := c.ledger.GetPayout(testCtx(t), &ledgerv1.GetPayoutRequest{PayoutId: payoutID})
		if err == nil && res.GetPayout().GetStatus() == want {
			return res.GetPayout()
		}
		if time.Now().After(deadline) {
			t.Fatalf("payout %s: %v, %v; want %s", payoutID, res.GetPayout(), err, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ledgerHead is the LEDGER stream's last sequence, for min_position.
func finLedgerHead(t testing.TB, c clients) *typesv1.Position {
	t.Helper()
	s, err := c.st.JetStream().Stream(testCtx(t), "LEDGER")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	return &typesv1.Position{Stream: "LEDGER", Sequence: info.State.LastSeq}
}

// subjectCount counts the LEDGER messages on subjects matching filter.
func finSubjectCount(t testing.TB, c clients, filter string) uint64 {
	t.Helper()
	s, err := c.st.JetStream().Stream(testCtx(t), "LEDGER")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(testCtx(t), jetstream.WithSubjectFilter(filter))
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, k := range info.State.Subjects {
		n += k
	}
	return n
}

func finWantCode(t testing.TB, what string, err error, code codes.Code) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("%s: %v, want %s", what, err, code)
	}
}

func finBalance(b *ledgerv1.FarmerBalance) [5]int64 {
	return [5]int64{b.GetPurchasesFen(), b.GetPremiumsFen(), b.GetHeldFen(), b.GetPaidFen(), b.GetAvailableFen()}
}

func finPlus(a [5]int64, b *ledgerv1.FarmerBalance) [5]int64 {
	d := finBalance(b)
	for i := range a {
		a[i] += d[i]
	}
	return a
}

// TestFarmerLifeToTheFen: a farmer is registered, delivers twice, earns a
// premium that is adjusted, has a delivery corrected, and is paid out
// twice, the second payout failing at the provider. Every figure below is
// worked out by hand.
func TestFarmerLifeToTheFen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c := startStack(t, dir)
	ctx := testCtx(t)
	finRegister(t, c, "F1", "Xunwu", "Xunwu Navel Orange Co-op", "6222020000000001")

	// Each upstream event is waited for (read-your-writes across streams),
	// so the entries are posted in this order.
	balanceAt(t, c, "F1", finDeliver(t, c, "F1", "D1", 12_345, 680, 8_395)) // 12,345 g × 6.80 yuan/kg = 83.946 yuan → 8,395 fen
	balanceAt(t, c, "F1", finDeliver(t, c, "F1", "D2", 20_000, 520, 10_400))
	balanceAt(t, c, "F1", appendUpstream(t, c, "PROCUREMENT", "procurement.delivery.D2.delivery_corrected", "d2-c1",
		&procurementevents.DeliveryCorrected{DeliveryId: "D2", FarmerId: "F1", CorrectionNumber: 1, ReversedAmountFen: 10_400,
			NetGrams: 18_500, PriceFenPerKg: 520, AmountFen: 9_620, Reason: "re-weighed"}))
	balanceAt(t, c, "F1", appendUpstream(t, c, "BRAND", "brand.sales.S1.premium_earned", "s1",
		&brandevents.PremiumEarned{SaleId: "S1", BrandId: "xunwu-navel", FarmerId: "F1", Channel: "hema", Grams: 8_000, FenPerKg: 100, PremiumFen: 800}))
	pos := appendUpstream(t, c, "BRAND", "brand.sales.S1.premium_adjusted", "s1-adj",
		&brandevents.PremiumAdjusted{SaleId: "S1", FarmerId: "F1", DeltaFen: -50, PremiumFen: 750, Reason: "returns"})
	// Purchases 8,395 + 9,620 = 18,015; premiums 800 − 50 = 750; accrued 18,765.
	if got := balanceAt(t, c, "F1", pos); got.GetAvailableFen() != 18_765 {
		t.Fatalf("accrued: %v, want 18,765 available", got)
	}

	first := finRequestPayout(t, c, "F1", "payout-1", 10_000)
	if first.GetPayout().GetPayoutId() != "PO-F1-1" || first.GetPayout().GetStatus() != ledgerv1.PayoutStatus_PAYOUT_STATUS_REQUESTED {
		t.Fatalf("first payout: %v", first)
	}
	// The read model reflects at least the request; the saga may already
	// have settled it, so the 10,000 is held or paid, never available.
	if got := balanceAt(t, c, "F1", first.GetPosition()); got.GetHeldFen()+got.GetPaidFen() != 10_000 || got.GetAvailableFen() != 8_765 {
		t.Fatalf("once the first payout is requested: %v", got)
	}
	finWaitPayout(t, c, "PO-F1-1", ledgerv1.PayoutStatus_PAYOUT_STATUS_SETTLED)
	// The farmer's next payout goes to an account the provider rejects.
	if _, err := c.ledger.UpdatePayoutAccount(ctx, &ledgerv1.UpdatePayoutAccountRequest{
		RequestId: "acct-2", FarmerId: "F1", PayoutAccount: "SIM-FAIL-6222020000000002"}); err != nil {
		t.Fatal(err)
	}
	finRequestPayout(t, c, "F1", "payout-2", 5_000)
	failed := finWaitPayout(t, c, "PO-F1-2", ledgerv1.PayoutStatus_PAYOUT_STATUS_FAILED)
	if failed.GetFailureReason() == "" || failed.GetProviderReference() == "" {
		t.Fatalf("failed payout: %v", failed)
	}

	head := finLedgerHead(t, c)
	want := [5]int64{18_015, 750, 0, 10_000, 8_765}
	b, err := c.ledger.GetFarmerBalance(ctx, &ledgerv1.GetFarmerBalanceRequest{FarmerId: "F1", MinPosition: head})
	if err != nil {
		t.Fatal(err)
	}
	if got := [5]int64{b.GetPurchasesFen(), b.GetPremiumsFen(), b.GetHeldFen(), b.GetPaidFen(), b.GetAvailableFen()}; got != want {
		t.Fatalf("GetFarmerBalance = %v, want %v", got, want)
	}

	st, err := c.ledger.GetFarmerStatement(ctx, &ledgerv1.GetFarmerStatementRequest{FarmerId: "F1", MinPosition: head})
	if err != nil {
		t.Fatal(err)
	}
	if got := finBalance(st.GetOpening()); got != [5]int64{} {
		t.Fatalf("opening of the whole history = %v", got)
	}
	wantSources := []string{
		"procurement.events.v1.DeliveryRecorded", "procurement.events.v1.DeliveryRecorded", "procurement.events.v1.DeliveryCorrected",
		"brand.events.v1.PremiumEarned", "brand.events.v1.PremiumAdjusted",
		"ledger.events.v1.PayoutRequested", "ledger.events.v1.PayoutSettled",
		"ledger.events.v1.PayoutRequested", "ledger.events.v1.PayoutFailed",
	}
	var sources []string
	sum := finBalance(st.GetOpening())
	for _, e := range st.GetEntries() {
		sources = append(sources, strings.TrimPrefix(e.GetSource().GetEventType(), "furrow."))
		if e.GetSource().GetSequence() == 0 || e.GetSource().GetEventId() == "" {
			t.Errorf("entry %s does not point to its source: %v", e.GetEntryId(), e.GetSource())
		}
		var dr, cr int64
		for _, l := range e.GetLines() {
			dr, cr = dr+l.GetDebitFen(), cr+l.GetCreditFen()
		}
		if dr != cr || dr == 0 {
			t.Errorf("entry %s: debits %d, credits %d", e.GetEntryId(), dr, cr)
		}
		sum = finPlus(sum, e.GetChange())
		if e.GetAvailableAfterFen() != sum[4] {
			t.Errorf("entry %s: available after %d, running sum %d", e.GetEntryId(), e.GetAvailableAfterFen(), sum[4])
		}
	}
	if diff := cmp.Diff(wantSources, sources); diff != "" {
		t.Fatalf("entries' sources (-want +got):\n%s", diff)
	}
	if got := finBalance(st.GetClosing()); got != want || sum != want {
		t.Fatalf("closing %v, opening + entries %v, want %v", got, sum, want)
	}
	// A payout's own events are their entries' sources, in the ledger.
	settle := st.GetEntries()[6]
	if settle.GetSource().GetStream() != "LEDGER" || settle.GetPayoutId() != "PO-F1-1" {
		t.Fatalf("settlement entry: %v", settle)
	}

	// A statement from the first payout on opens with what was accrued.
	from := st.GetEntries()[5].GetPostedAt()
	part, err := c.ledger.GetFarmerStatement(ctx, &ledgerv1.GetFarmerStatementRequest{FarmerId: "F1", From: from, MinPosition: head})
	if err != nil {
		t.Fatal(err)
	}
	sum = finBalance(part.GetOpening())
	for _, e := range part.GetEntries() {
		sum = finPlus(sum, e.GetChange())
	}
	if got := finBalance(part.GetOpening()); got[4] > 18_765 || sum != want || finBalance(part.GetClosing()) != want {
		t.Fatalf("statement from %v: opening %v, opening + entries %v, closing %v", from.AsTime(), got, sum, finBalance(part.GetClosing()))
	}

	// As of the correction's entry: both deliveries, corrected, no premium.
	at, err := c.ledger.GetFarmerBalanceAt(ctx, &ledgerv1.GetFarmerBalanceAtRequest{FarmerId: "F1",
		At: &ledgerv1.GetFarmerBalanceAtRequest_LedgerSequence{LedgerSequence: st.GetEntries()[2].GetSequence()}})
	if err != nil {
		t.Fatal(err)
	}
	if got := finBalance(at.GetBalance()); got != [5]int64{18_015, 0, 0, 0, 18_015} {
		t.Fatalf("balance at the correction = %v", got)
	}
	at, err = c.ledger.GetFarmerBalanceAt(ctx, &ledgerv1.GetFarmerBalanceAtRequest{FarmerId: "F1",
		At: &ledgerv1.GetFarmerBalanceAtRequest_Time{Time: st.GetEntries()[3].GetPostedAt()}})
	if err != nil {
		t.Fatal(err)
	}
	if got := finBalance(at.GetBalance()); got[0] != 18_015 || got[1] != 800 {
		t.Fatalf("balance at the premium = %v", got)
	}

	// The journal balances; Σ debits worked out by hand:
	// 8,395 + 10,400 + (10,400 + 9,620) + 800 + 50 + 10,000 + (10,000 + 10,000) + 5,000 + 5,000.
	tb, err := c.ledger.GetTrialBalance(ctx, &ledgerv1.GetTrialBalanceRequest{MinPosition: head})
	if err != nil {
		t.Fatal(err)
	}
	if !tb.GetBalanced() || tb.GetTotalDebitFen() != 79_665 || tb.GetTotalCreditFen() != 79_665 || tb.GetEntries() != 9 {
		t.Fatalf("trial balance: %v", tb)
	}
	wantAccounts := []*ledgerv1.AccountTotal{
		{Account: "farmer:*:held", DebitFen: 15_000, CreditFen: 15_000, BalanceFen: 0},
		{Account: "farmer:*:paid", DebitFen: 10_000, BalanceFen: 10_000},
		{Account: "farmer:*:payable", DebitFen: 10_400, CreditFen: 28_415, BalanceFen: -18_015},
		{Account: "farmer:*:premium", DebitFen: 50, CreditFen: 800, BalanceFen: -750},
		{Account: "platform:payout_clearing", DebitFen: 15_000, CreditFen: 15_000},
		{Account: "platform:premium_expense", DebitFen: 800, CreditFen: 50, BalanceFen: 750},
		{Account: "platform:procurement_expense", DebitFen: 28_415, CreditFen: 10_400, BalanceFen: 18_015},
		{Account: "provider:settlement", CreditFen: 10_000, BalanceFen: -10_000},
	}
	if diff := cmp.Diff(wantAccounts, tb.GetAccounts(), protocmp.Transform()); diff != "" {
		t.Fatalf("trial balance accounts (-want +got):\n%s", diff)
	}

	// The provider's settlement file lists both payouts, and matches.
	data, err := os.ReadFile(filepath.Join(dir, "provider", "settlement.csv"))
	if err != nil {
		t.Fatal(err)
	}
	rec, err := c.ledger.ReconcilePayouts(ctx, &ledgerv1.ReconcilePayoutsRequest{SettlementCsv: data, MinPosition: head})
	if err != nil {
		t.Fatal(err)
	}
	if got := rec.GetTotals(); got.GetSettlementLines() != 2 || got.GetSettlementFen() != 15_000 || got.GetOpenBreaks() != 0 || len(rec.GetItems()) != 2 {
		t.Fatalf("reconciliation: %v", rec)
	}
}

// TestConcurrentPayoutsNeverOverdraw: 64 clients ask at once to pay out
// 300 fen from a farmer with 10,000 available. Exactly 33 can be paid
// (9,900 fen); the other 31 must be refused, and nothing may overdraw.
func TestConcurrentPayoutsNeverOverdraw(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c := startStack(t, dir)
	finRegister(t, c, "F2", "Qinglong", "Qinglong Chestnut Co-op", "6222020000000002")
	pos := finDeliver(t, c, "F2", "D9", 25_000, 400, 10_000)
	balanceAt(t, c, "F2", pos) // the payable is posted before anyone asks
	before := finSubjectCount(t, c, "ledger.farmer.F2.>")

	const clients, amount = 64, 300
	codesSeen := make([]codes.Code, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			req := &ledgerv1.RequestPayoutRequest{RequestId: fmt.Sprintf("conc-%d", i), FarmerId: "F2",
				Amount: &ledgerv1.RequestPayoutRequest_AmountFen{AmountFen: amount}}
			for {
				_, err := c.ledger.RequestPayout(testCtx(t), req)
				if status.Code(err) == codes.Aborted {
					continue // lost too many races: retry, as a client would
				}
				codesSeen[i] = status.Code(err)
				return
			}
		})
	}
	wg.Wait()
	count := map[codes.Code]int{}
	for _, code := range codesSeen {
		count[code]++
	}
	if count[codes.OK] != 33 || count[codes.FailedPrecondition] != 31 {
		t.Fatalf("outcomes: %v, want 33 OK and 31 FailedPrecondition", count)
	}
	// Exactly two events (PayoutRequested and its hold) per accepted payout.
	if n := finSubjectCount(t, c, "ledger.farmer.F2.payout_requested"); n != 33 {
		t.Fatalf("%d PayoutRequested events, want 33", n)
	}
	if n := finSubjectCount(t, c, "ledger.farmer.F2.entry_posted") - 1; n < 33 {
		t.Fatalf("%d hold entries, want at least 33", n)
	}
	for i := 1; i <= 33; i++ {
		finWaitPayout(t, c, fmt.Sprintf("PO-F2-%d", i), ledgerv1.PayoutStatus_PAYOUT_STATUS_SETTLED)
	}
	b, err := c.ledger.GetFarmerBalance(testCtx(t), &ledgerv1.GetFarmerBalanceRequest{FarmerId: "F2", MinPosition: finLedgerHead(t, c)})
	if err != nil {
		t.Fatal(err)
	}
	if b.GetPurchasesFen() != 10_000 || b.GetHeldFen() != 0 || b.GetPaidFen() != 9_900 || b.GetAvailableFen() != 100 {
		t.Fatalf("balance: %v, want 9,900 paid and 100 available", b)
	}
	// 33 × (request, hold, sent, settled, settlement entry).
	if n := finSubjectCount(t, c, "ledger.farmer.F2.>") - before; n != 33*5 {
		t.Fatalf("%d events appended, want %d", n, 33*5)
	}
	data, err := os.ReadFile(filepath.Join(dir, "provider", "settlement.csv"))
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(string(data), "\n") - 1; lines != 33 {
		t.Fatalf("settlement file has %d lines, want 33 (one payment per payout)", lines)
	}
}

// TestProviderTimeoutLateAndReturned: a provider that times out after
// paying is asked again with the same payout id and pays once; one that
// settles late is polled until it does; one that returns a payment late
// releases the hold.
func TestProviderTimeoutLateAndReturned(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c := startStack(t, dir)
	for _, f := range []struct{ id, account string }{
		{"FT", "SIM-TIMEOUT-6222"}, {"FL", "SIM-LATE-6222"}, {"FR", "SIM-LATE-FAIL-6222"},
	} {
		finRegister(t, c, f.id, "Yongshun", "Yongshun Berry Tea Co-op", f.account)
		balanceAt(t, c, f.id, finDeliver(t, c, f.id, "D-"+f.id, 2_000, 500, 1_000))
		finRequestPayout(t, c, f.id, "pay-"+f.id, 600)
	}
	timedOut := finWaitPayout(t, c, "PO-FT-1", ledgerv1.PayoutStatus_PAYOUT_STATUS_SETTLED)
	finWaitPayout(t, c, "PO-FL-1", ledgerv1.PayoutStatus_PAYOUT_STATUS_SETTLED)
	finWaitPayout(t, c, "PO-FR-1", ledgerv1.PayoutStatus_PAYOUT_STATUS_FAILED)

	// The timed-out payout was sent twice and paid once.
	journal, err := os.ReadFile(filepath.Join(dir, "provider", "payments.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var sends []int
	for _, line := range strings.Split(strings.TrimSpace(string(journal)), "\n") {
		var p struct {
			Instruction struct{ PayoutID string }
			Sends       int
		}
		if err := json.Unmarshal([]byte(line), &p); err != nil {
			t.Fatal(err)
		}
		if p.Instruction.PayoutID == "PO-FT-1" {
			sends = append(sends, p.Sends)
		}
	}
	if diff := cmp.Diff([]int{1, 2}, sends); diff != "" {
		t.Fatalf("the provider's record of PO-FT-1's sends (-want +got):\n%s", diff)
	}
	data, err := os.ReadFile(filepath.Join(dir, "provider", "settlement.csv"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(data), ",PO-FT-1,"); n != 1 {
		t.Fatalf("PO-FT-1 is on %d settlement lines, want 1:\n%s", n, data)
	}
	if timedOut.GetProviderReference() == "" {
		t.Fatalf("timed-out payout has no provider reference: %v", timedOut)
	}
	// The late payouts were sent, then completed by a later append.
	for _, subj := range []string{"ledger.farmer.FL.payout_sent", "ledger.farmer.FL.payout_settled", "ledger.farmer.FR.payout_sent", "ledger.farmer.FR.payout_failed"} {
		if n := finSubjectCount(t, c, subj); n != 1 {
			t.Errorf("%s: %d events, want 1", subj, n)
		}
	}

	head := finLedgerHead(t, c)
	for farmer, want := range map[string][5]int64{
		"FT": {1_000, 0, 0, 600, 400}, "FL": {1_000, 0, 0, 600, 400}, "FR": {1_000, 0, 0, 0, 1_000},
	} {
		b, err := c.ledger.GetFarmerBalance(testCtx(t), &ledgerv1.GetFarmerBalanceRequest{FarmerId: farmer, MinPosition: head})
		if err != nil {
			t.Fatal(err)
		}
		if got := [5]int64{b.GetPurchasesFen(), b.GetPremiumsFen(), b.GetHeldFen(), b.GetPaidFen(), b.GetAvailableFen()}; got != want {
			t.Errorf("%s: balance %v, want %v", farmer, got, want)
		}
	}
}

// TestPayoutBadInputAppendsNothing: each bad request gets its code and
// leaves the LEDGER stream as it was.
func TestPayoutBadInputAppendsNothing(t *testing.T) {
	t.Parallel()
	c := startStack(t, t.TempDir())
	finRegister(t, c, "F3", "Xunwu", "Xunwu Navel Orange Co-op", "6222020000000003")
	finRegister(t, c, "F4", "Xunwu", "Xunwu Navel Orange Co-op", "")
	finRegister(t, c, "F5", "Xunwu", "Xunwu Navel Orange Co-op", "6222020000000005")
	balanceAt(t, c, "F5", finDeliver(t, c, "F5", "D5", 1_000, 1_000, 1_000))
	balanceAt(t, c, "F3", finDeliver(t, c, "F3", "D3", 1_000, 1_000, 1_000))
	balanceAt(t, c, "F4", finDeliver(t, c, "F4", "D4", 1_000, 1_000, 1_000))
	ok := finRequestPayout(t, c, "F3", "ok-1", 400)
	finWaitPayout(t, c, ok.GetPayout().GetPayoutId(), ledgerv1.PayoutStatus_PAYOUT_STATUS_SETTLED)

	before := streamMsgs(t, c, "LEDGER")
	amount := func(n int64) *ledgerv1.RequestPayoutRequest_AmountFen {
		return &ledgerv1.RequestPayoutRequest_AmountFen{AmountFen: n}
	}
	for _, tc := range []struct {
		name string
		req  *ledgerv1.RequestPayoutRequest
		code codes.Code
	}{
		{"above available", &ledgerv1.RequestPayoutRequest{RequestId: "b1", FarmerId: "F3", Amount: amount(601)}, codes.FailedPrecondition},
		{"zero", &ledgerv1.RequestPayoutRequest{RequestId: "b2", FarmerId: "F3", Amount: amount(0)}, codes.InvalidArgument},
		{"negative", &ledgerv1.RequestPayoutRequest{RequestId: "b3", FarmerId: "F3", Amount: amount(-5)}, codes.InvalidArgument},
		{"no amount", &ledgerv1.RequestPayoutRequest{RequestId: "b4", FarmerId: "F3"}, codes.InvalidArgument},
		{"unknown farmer", &ledgerv1.RequestPayoutRequest{RequestId: "b5", FarmerId: "F404", Amount: amount(1)}, codes.NotFound},
		{"bad farmer id", &ledgerv1.RequestPayoutRequest{RequestId: "b6", FarmerId: "F.3", Amount: amount(1)}, codes.InvalidArgument},
		{"no request id", &ledgerv1.RequestPayoutRequest{FarmerId: "F3", Amount: amount(1)}, codes.InvalidArgument},
		{"request id reused with another amount", &ledgerv1.RequestPayoutRequest{RequestId: "ok-1", FarmerId: "F3", Amount: amount(401)}, codes.AlreadyExists},
		{"no payout account", &ledgerv1.RequestPayoutRequest{RequestId: "b7", FarmerId: "F4", Amount: amount(1)}, codes.FailedPrecondition},
		{"request id reused for another farmer", &ledgerv1.RequestPayoutRequest{RequestId: "ok-1", FarmerId: "F5", Amount: amount(400)}, codes.AlreadyExists},
	} {
		_, err := c.ledger.RequestPayout(testCtx(t), tc.req)
		finWantCode(t, tc.name, err, tc.code)
	}
	// A retry of the accepted request is the same payout, appended once.
	again, err := c.ledger.RequestPayout(testCtx(t), &ledgerv1.RequestPayoutRequest{RequestId: "ok-1", FarmerId: "F3", Amount: amount(400)})
	if err != nil {
		t.Fatal(err)
	}
	if again.GetPayout().GetPayoutId() != ok.GetPayout().GetPayoutId() || again.GetPosition().GetSequence() != ok.GetPosition().GetSequence() {
		t.Fatalf("retry = %v, first = %v", again, ok)
	}
	if after := streamMsgs(t, c, "LEDGER"); after != before {
		t.Fatalf("LEDGER went from %d to %d events on bad input", before, after)
	}
}

// TestReconciliationFindsEachBreak runs reconciliation against the
// provider's own settlement file (no false breaks), then against copies
// with one injected break each, all together, then resolves a break.
func TestReconciliationFindsEachBreak(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c := startStack(t, dir)
	ctx := testCtx(t)
	finRegister(t, c, "G1", "Xunwu", "Xunwu Navel Orange Co-op", "6222020000000010")
	finRegister(t, c, "G2", "Xunwu", "Xunwu Navel Orange Co-op", "SIM-FAIL-6222020000000011")
	balanceAt(t, c, "G1", finDeliver(t, c, "G1", "DG1", 10_000, 1_000, 10_000))
	balanceAt(t, c, "G2", finDeliver(t, c, "G2", "DG2", 10_000, 1_000, 10_000))
	for i, amount := range []int64{100, 200, 300, 400} {
		finRequestPayout(t, c, "G1", fmt.Sprintf("g1-%d", i), amount)
	}
	finRequestPayout(t, c, "G2", "g2-0", 500)
	for i := 1; i <= 4; i++ {
		finWaitPayout(t, c, fmt.Sprintf("PO-G1-%d", i), ledgerv1.PayoutStatus_PAYOUT_STATUS_SETTLED)
	}
	finWaitPayout(t, c, "PO-G2-1", ledgerv1.PayoutStatus_PAYOUT_STATUS_FAILED)
	head := finLedgerHead(t, c)

	clean, err := os.ReadFile(filepath.Join(dir, "provider", "settlement.csv"))
	if err != nil {
		t.Fatal(err)
	}
	reconcile := func(file string) *ledgerv1.ReconcilePayoutsResponse {
		t.Helper()
		rec, err := c.ledger.ReconcilePayouts(ctx, &ledgerv1.ReconcilePayoutsRequest{SettlementCsv: []byte(file), MinPosition: head})
		if err != nil {
			t.Fatal(err)
		}
		return rec
	}
	type brk struct {
		Result ledgerv1.ReconciliationResult
		Payout string
	}
	breaks := func(rec *ledgerv1.ReconcilePayoutsResponse) []brk {
		var out []brk
		for _, it := range rec.GetItems() {
			if it.GetResult() != ledgerv1.ReconciliationResult_RECONCILIATION_RESULT_MATCHED {
				out = append(out, brk{it.GetResult(), it.GetPayoutId()})
			}
		}
		return out
	}
	rec := reconcile(string(clean))
	if got := breaks(rec); len(got) != 0 || len(rec.GetItems()) != 5 || rec.GetTotals().GetSettlementFen() != 1_500 {
		t.Fatalf("clean file: breaks %v, report %v", got, rec)
	}

	lines := strings.Split(strings.TrimSuffix(string(clean), "\n"), "\n")
	lineOf := func(payoutID string) int {
		for i, l := range lines {
			if strings.Contains(l, ","+payoutID+",") {
				return i
			}
		}
		t.Fatalf("%s not in the settlement file", payoutID)
		return 0
	}
	edit := func(payoutID string, f func(fields []string) []string) string {
		out := append([]string(nil), lines...)
		i := lineOf(payoutID)
		out[i] = strings.Join(f(strings.Split(out[i], ",")), ",")
		return strings.Join(out, "\n") + "\n"
	}
	// Columns: provider_reference,payout_id,farmer_id,amount_fen,currency,status,settled_at.
	missing := strings.Replace(string(clean), lines[lineOf("PO-G1-1")]+"\n", "", 1)
	duplicate := string(clean) + lines[lineOf("PO-G1-2")] + "\n"
	offByOne := edit("PO-G1-3", func(f []string) []string { f[3] = "301"; return f })
	unknown := string(clean) + "SIM-FFFFFFFFFFFF,PO-G9-1,G9,700,CNY,settled,2026-11-28T10:00:00Z\n"
	statusFlip := edit("PO-G1-4", func(f []string) []string { f[5] = "failed"; return f })
	for _, tc := range []struct {
		name, file string
		want       brk
	}{
		{"missing line", missing, brk{ledgerv1.ReconciliationResult_RECONCILIATION_RESULT_MISSING_IN_SETTLEMENT, "PO-G1-1"}},
		{"duplicate", duplicate, brk{ledgerv1.ReconciliationResult_RECONCILIATION_RESULT_DUPLICATE, "PO-G1-2"}},
		{"amount off by 1 fen", offByOne, brk{ledgerv1.ReconciliationResult_RECONCILIATION_RESULT_AMOUNT_MISMATCH, "PO-G1-3"}},
		{"unknown payout id", unknown, brk{ledgerv1.ReconciliationResult_RECONCILIATION_RESULT_MISSING_IN_LEDGER, "PO-G9-1"}},
		{"status mismatch", statusFlip, brk{ledgerv1.ReconciliationResult_RECONCILIATION_RESULT_STATUS_MISMATCH, "PO-G1-4"}},
	} {
		if diff := cmp.Diff([]brk{tc.want}, breaks(reconcile(tc.file))); diff != "" {
			t.Errorf("%s: breaks (-want +got):\n%s", tc.name, diff)
		}
	}

	// All five at once; then finance resolves the unknown payout.
	all := strings.Replace(lines[0]+"\n", "", "", 1)
	for _, l := range lines[1:] {
		switch {
		case strings.Contains(l, ",PO-G1-1,"):
		case strings.Contains(l, ",PO-G1-2,"):
			all += l + "\n" + l + "\n"
		case strings.Contains(l, ",PO-G1-3,"):
			all += strings.Replace(l, ",300,", ",301,", 1) + "\n"
		case strings.Contains(l, ",PO-G1-4,"):
			all += strings.Replace(l, ",settled,", ",failed,", 1) + "\n"
		default:
			all += l + "\n"
		}
	}
	all += "SIM-FFFFFFFFFFFF,PO-G9-1,G9,700,CNY,settled,2026-11-28T10:00:00Z\n"
	first := reconcile(all)
	if got := first.GetTotals(); len(breaks(first)) != 5 || got.GetOpenBreaks() != 5 || got.GetResolvedBreaks() != 0 {
		t.Fatalf("all breaks: %v, totals %v", breaks(first), got)
	}
	var unknownID string
	for _, it := range first.GetItems() {
		if it.GetPayoutId() == "PO-G9-1" {
			unknownID = it.GetBreakId()
		}
	}
	resolve := &ledgerv1.ResolvePayoutBreakRequest{RequestId: "fin-1", BreakId: unknownID,
		Decision: ledgerv1.BreakDecision_BREAK_DECISION_PROVIDER_TO_CORRECT, Note: "not ours; provider ticket 4711"}
	res, err := c.ledger.ResolvePayoutBreak(ctx, resolve)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := c.ledger.ResolvePayoutBreak(ctx, resolve); err != nil || again.GetPosition().GetSequence() != res.GetPosition().GetSequence() {
		t.Fatalf("retried resolution: %v, %v", again, err)
	}
	_, err = c.ledger.ResolvePayoutBreak(ctx, &ledgerv1.ResolvePayoutBreakRequest{RequestId: "fin-2", BreakId: unknownID,
		Decision: ledgerv1.BreakDecision_BREAK_DECISION_ACCEPTED, Note: "again"})
	finWantCode(t, "resolving twice", err, codes.AlreadyExists)
	_, err = c.ledger.ResolvePayoutBreak(ctx, &ledgerv1.ResolvePayoutBreakRequest{RequestId: "fin-3", BreakId: unknownID})
	finWantCode(t, "no decision", err, codes.InvalidArgument)

	head = res.GetPosition()
	second := reconcile(all)
	if got := second.GetTotals(); len(breaks(second)) != 5 || got.GetOpenBreaks() != 4 || got.GetResolvedBreaks() != 1 {
		t.Fatalf("second run: totals %v", got)
	}
	for _, it := range second.GetItems() {
		if (it.GetBreakId() == unknownID) != (it.GetResolution() != nil) {
			t.Errorf("%s: resolution %v", it.GetBreakId(), it.GetResolution())
		}
	}

	// A malformed file names its line, and nothing is recorded.
	before := streamMsgs(t, c, "LEDGER")
	bad := string(clean) + "SIM-X,PO-G1-9,G1,12.50,CNY,settled,2026-11-28T10:00:00Z\n"
	_, err = c.ledger.ReconcilePayouts(ctx, &ledgerv1.ReconcilePayoutsRequest{SettlementCsv: []byte(bad)})
	finWantCode(t, "malformed file", err, codes.InvalidArgument)
	if want := fmt.Sprintf("line %d: amount_fen", len(lines)+1); !strings.Contains(status.Convert(err).Message(), want) {
		t.Fatalf("malformed file: %v, want it to name %q", err, want)
	}
	if after := streamMsgs(t, c, "LEDGER"); after != before {
		t.Fatalf("LEDGER went from %d to %d events", before, after)
	}
}

// TestTrialBalanceRefusesAnUnbalancedJournal: an entry that does not
// balance (written past the domain, which never would) makes the trial
// balance fail with DATA_LOSS, the totals attached.
func TestTrialBalanceRefusesAnUnbalancedJournal(t *testing.T) {
	t.Parallel()
	c := startStack(t, t.TempDir())
	finRegister(t, c, "F5", "Xunwu", "Xunwu Navel Orange Co-op", "6222")
	ev, err := eventstore.NewEvent("ledger.farmer.F5.entry_posted", &ledgerevents.EntryPosted{
		EntryId: "E-bogus", FarmerId: "F5", Source: &ledgerevents.SourceRef{Stream: "TEST", Sequence: 1, EventId: "bogus"},
		Lines: []*ledgerevents.EntryLine{{Account: "farmer:F5:payable", CreditFen: 100}, {Account: "platform:procurement_expense", DebitFen: 99}},
	}, eventstore.Metadata{Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := eventstore.New(c.st.JetStream()).Append(testCtx(t), eventstore.AppendRequest{
		Stream: "LEDGER", Aggregate: "ledger.farmer.F5.>", Events: []eventstore.Event{ev}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.ledger.GetTrialBalance(testCtx(t), &ledgerv1.GetTrialBalanceRequest{
		MinPosition: &typesv1.Position{Stream: res.Stream, Sequence: res.Last}})
	finWantCode(t, "trial balance", err, codes.DataLoss)
	var tb *ledgerv1.GetTrialBalanceResponse
	for _, d := range status.Convert(err).Details() {
		if r, ok := d.(*ledgerv1.GetTrialBalanceResponse); ok {
			tb = r
		}
	}
	if tb == nil || tb.GetBalanced() || tb.GetTotalDebitFen() != 99 || tb.GetTotalCreditFen() != 100 {
		t.Fatalf("details: %v", tb)
	}
}

func TestListFarmers(t *testing.T) {
	t.Parallel()
	c := startStack(t, t.TempDir())
	finRegister(t, c, "A1", "Xunwu", "Navel Co-op", "1")
	finRegister(t, c, "A2", "Qinglong", "Chestnut Co-op", "2")
	finRegister(t, c, "A3", "Xunwu", "Navel Co-op", "3")
	finRegister(t, c, "A4", "Xunwu", "Tea Co-op", "4")
	head := finLedgerHead(t, c)
	var got []string
	token := ""
	for page := 0; ; page++ {
		res, err := c.ledger.ListFarmers(testCtx(t), &ledgerv1.ListFarmersRequest{
			County: "Xunwu", Cooperative: "Navel Co-op", PageSize: 1, PageToken: token, MinPosition: head})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range res.GetFarmers() {
			got = append(got, f.GetFarmerId())
		}
		if token = res.GetNextPageToken(); token == "" || page > 5 {
			break
		}
	}
	if diff := cmp.Diff([]string{"A1", "A3"}, got); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	res, err := c.ledger.ListFarmers(testCtx(t), &ledgerv1.ListFarmersRequest{County: "Xunwu", MinPosition: head})
	if err != nil || len(res.GetFarmers()) != 3 || res.GetNextPageToken() != "" {
		t.Fatalf("Xunwu: %v, %v", res, err)
	}
	_, err = c.ledger.ListFarmers(testCtx(t), &ledgerv1.ListFarmersRequest{PageToken: "bogus"})
	finWantCode(t, "bad page token", err, codes.InvalidArgument)
}
