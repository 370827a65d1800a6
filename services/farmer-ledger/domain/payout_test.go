package domain_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	ledgerevents "github.com/furrow/furrow/proto/furrow/ledger/events/v1"

	"github.com/furrow/furrow/pkg/failure"

	"github.com/furrow/furrow/services/farmer-ledger/domain"
)

// book is a farmer with the events applied to it, as the repository would
// rebuild it, plus every entry posted, to check each one balances.
type book struct {
	t       *testing.T
	f       *domain.Farmer
	seq     uint64
	entries []*ledgerevents.EntryPosted
}

func newBook(t *testing.T, account string) *book {
	t.Helper()
	b := &book{t: t, f: domain.NewFarmer("F1")}
	ev, err := b.f.Register(&ledgerevents.FarmerRegistered{FarmerId: "F1", Name: "Wang Fang", County: "Xunwu", PayoutAccount: account})
	if err != nil {
		t.Fatal(err)
	}
	b.apply(domain.Change{Kind: domain.KindRegistered, Event: ev})
	return b
}

// ids names events after the book's next sequences, unique per append.
func (b *book) ids(i int) string { return fmt.Sprintf("ev-%d", b.seq+uint64(i)+1) }

func (b *book) apply(changes ...domain.Change) {
	b.t.Helper()
	for _, c := range changes {
		b.seq++
		if e, ok := c.Event.(*ledgerevents.EntryPosted); ok {
			if err := domain.CheckBalanced(e.GetLines()); err != nil {
				b.t.Fatalf("entry %s: %v", e.GetEntryId(), err)
			}
			if e.GetSource().GetEventId() == "" {
				b.t.Fatalf("entry %s has no source", e.GetEntryId())
			}
			b.entries = append(b.entries, e)
		}
		b.f.Apply(b.seq, c.Event)
	}
}

func (b *book) post(e *ledgerevents.EntryPosted, already bool, err error) {
	b.t.Helper()
	if err != nil || already {
		b.t.Fatalf("post: already=%v err=%v", already, err)
	}
	b.apply(domain.Change{Kind: domain.KindEntryPosted, Event: e})
}

func (b *book) request(amount int64) domain.Payout {
	b.t.Helper()
	p, changes, err := b.f.RequestPayout(domain.PayoutRequest{RequestID: fmt.Sprintf("r%d", b.seq), AmountFen: amount}, b.ids)
	if err != nil {
		b.t.Fatalf("RequestPayout(%d): %v", amount, err)
	}
	b.apply(changes...)
	return p
}

func (b *book) outcome(payoutID string, status domain.ProviderStatus) []domain.Change {
	b.t.Helper()
	changes, err := b.f.RecordProviderOutcome(payoutID, domain.ProviderReceipt{
		Reference: "REF-" + payoutID, Status: status, At: time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC), Reason: "account closed",
	}, b.ids)
	if err != nil {
		b.t.Fatalf("RecordProviderOutcome(%s, %s): %v", payoutID, status, err)
	}
	b.apply(changes...)
	return changes
}

func src(id string) *ledgerevents.SourceRef { return &ledgerevents.SourceRef{EventId: id} }

// TestFarmerLife follows a farmer from registration through deliveries, a
// premium, a correction and two payouts, one failing, and checks the
// aggregate's own balance against figures worked out by hand.
func TestFarmerLife(t *testing.T) {
	t.Parallel()
	b := newBook(t, "6222020000000001")
	b.post(b.f.PostPayable(src("d1"), 8_395, "")) // 12,345 g × 680 fen/kg
	b.post(b.f.PostPayable(src("d2"), 6_000, ""))
	b.post(b.f.PostPremium(src("p1"), 1_235, ""))
	b.post(b.f.PostCorrection(src("c1"), 6_000, 5_400, "")) // d2 re-graded
	// Accrued: 8,395 + 5,400 = 13,795 payable, 1,235 premium → 15,030.
	first := b.request(10_000)
	b.outcome(first.ID, domain.ProviderSettled)
	second := b.request(5_030)
	if got := available(t, b.f.Balance()); got != 0 {
		t.Fatalf("available while 5,030 is held = %d, want 0", got)
	}
	b.outcome(second.ID, domain.ProviderAccepted)
	b.outcome(second.ID, domain.ProviderFailed)

	want := domain.Balance{FarmerID: "F1", PurchasesFen: 13_795, PremiumsFen: 1_235, HeldFen: 0, PaidFen: 10_000}
	if diff := cmp.Diff(want, b.f.Balance()); diff != "" {
		t.Fatalf("balance (-want +got):\n%s", diff)
	}
	if got := available(t, b.f.Balance()); got != 5_030 {
		t.Fatalf("available = %d, want 5030", got)
	}
	// The journal as a whole balances too, and the platform's clearing
	// account is back at zero once nothing is in flight.
	accounts := map[string]int64{}
	for _, e := range b.entries {
		for _, l := range e.GetLines() {
			accounts[l.GetAccount()] += l.GetDebitFen() - l.GetCreditFen()
		}
	}
	var sum int64
	for _, v := range accounts {
		sum += v
	}
	if sum != 0 || accounts[domain.AccountPayoutClearing] != 0 || accounts[domain.AccountProviderSettlement] != -10_000 {
		t.Fatalf("journal: sum %d, clearing %d, provider %d", sum, accounts[domain.AccountPayoutClearing], accounts[domain.AccountProviderSettlement])
	}
	for _, p := range []domain.Payout{first, second} {
		got, _ := b.f.Payout(p.ID)
		if got.Status != map[string]domain.PayoutStatus{first.ID: domain.PayoutStatusSettled, second.ID: domain.PayoutStatusFailed}[p.ID] {
			t.Errorf("payout %s is %s", p.ID, got.Status)
		}
	}
}

func TestRequestPayoutEntries(t *testing.T) {
	t.Parallel()
	b := newBook(t, "6222020000000001")
	b.post(b.f.PostPayable(src("d1"), 1_000, ""))
	p, changes, err := b.f.RequestPayout(domain.PayoutRequest{RequestID: "req-1", AllAvailable: true}, b.ids)
	if err != nil {
		t.Fatal(err)
	}
	want := []domain.Change{
		{Kind: domain.KindPayoutRequested, ID: "ev-3", Event: &ledgerevents.PayoutRequested{
			PayoutId: "PO-F1-1", FarmerId: "F1", AmountFen: 1_000, Currency: "CNY",
			PayoutAccount: "6222020000000001", RequestId: "req-1", AllAvailable: true,
		}},
		{Kind: domain.KindEntryPosted, ID: "ev-4", Event: &ledgerevents.EntryPosted{
			EntryId: "E-ev-3", FarmerId: "F1", PayoutId: "PO-F1-1",
			Source:      &ledgerevents.SourceRef{Stream: "LEDGER", EventId: "ev-3", EventType: "furrow.ledger.events.v1.PayoutRequested"},
			Description: "payout PO-F1-1 requested: hold 1000 fen",
			Lines: []*ledgerevents.EntryLine{
				{Account: "farmer:F1:held", DebitFen: 1_000},
				{Account: "platform:payout_clearing", CreditFen: 1_000},
			},
		}},
	}
	if diff := cmp.Diff(want, changes, protocmp.Transform()); diff != "" {
		t.Fatalf("changes (-want +got):\n%s", diff)
	}
	if p.ID != "PO-F1-1" || p.AmountFen != 1_000 || p.Status != domain.PayoutStatusRequested {
		t.Fatalf("payout = %+v", p)
	}
	b.apply(changes...)
	if got, ok := b.f.PayoutByRequest("req-1"); !ok || got.ID != "PO-F1-1" {
		t.Fatalf("PayoutByRequest = %+v, %v", got, ok)
	}

	settled := b.outcome("PO-F1-1", domain.ProviderSettled)
	wantLines := []*ledgerevents.EntryLine{
		{Account: "farmer:F1:paid", DebitFen: 1_000},
		{Account: "farmer:F1:held", CreditFen: 1_000},
		{Account: "platform:payout_clearing", DebitFen: 1_000},
		{Account: "provider:settlement", CreditFen: 1_000},
	}
	if len(settled) != 3 {
		t.Fatalf("settling a requested payout appends %d events, want sent, settled, entry", len(settled))
	}
	if diff := cmp.Diff(wantLines, settled[2].Event.(*ledgerevents.EntryPosted).GetLines(), protocmp.Transform()); diff != "" {
		t.Fatalf("settlement lines (-want +got):\n%s", diff)
	}
	if got := settled[2].Event.(*ledgerevents.EntryPosted).GetSource().GetEventId(); got != settled[1].ID {
		t.Fatalf("settlement entry's source = %s, want the PayoutSettled event %s", got, settled[1].ID)
	}
}

func TestRequestPayoutRefusals(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		account string
		accrued int64
		req     domain.PayoutRequest
		want    failure.Kind
	}{
		{"zero", "acct", 500, domain.PayoutRequest{AmountFen: 0}, failure.KindInvalid},
		{"negative", "acct", 500, domain.PayoutRequest{AmountFen: -1}, failure.KindInvalid},
		{"one fen above available", "acct", 500, domain.PayoutRequest{AmountFen: 501}, failure.KindFailedPrecondition},
		{"nothing available", "acct", 0, domain.PayoutRequest{AllAvailable: true}, failure.KindFailedPrecondition},
		{"amount and all", "acct", 500, domain.PayoutRequest{AmountFen: 5, AllAvailable: true}, failure.KindInvalid},
		{"no payout account", "", 500, domain.PayoutRequest{AmountFen: 5}, failure.KindFailedPrecondition},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newBook(t, tc.account)
			if tc.accrued > 0 {
				b.post(b.f.PostPayable(src("d1"), tc.accrued, ""))
			}
			_, changes, err := b.f.RequestPayout(tc.req, b.ids)
			if failure.KindOf(err) != tc.want || changes != nil {
				t.Fatalf("RequestPayout(%+v) = %v, %v; want a %s failure and no events", tc.req, changes, err, tc.want)
			}
		})
	}
	t.Run("unknown farmer", func(t *testing.T) {
		t.Parallel()
		_, _, err := domain.NewFarmer("F9").RequestPayout(domain.PayoutRequest{AmountFen: 1}, func(int) string { return "x" })
		if failure.KindOf(err) != failure.KindNotFound {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("exactly available", func(t *testing.T) {
		t.Parallel()
		b := newBook(t, "acct")
		b.post(b.f.PostPayable(src("d1"), 500, ""))
		b.request(500)
		if _, _, err := b.f.RequestPayout(domain.PayoutRequest{AmountFen: 1}, b.ids); failure.KindOf(err) != failure.KindFailedPrecondition {
			t.Fatalf("a fen more after holding everything: %v", err)
		}
	})
}

func TestProviderOutcomes(t *testing.T) {
	t.Parallel()
	kinds := func(cs []domain.Change) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.Kind)
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		before []domain.ProviderStatus
		then   domain.ProviderStatus
		want   []string
		fails  bool
	}{
		{"accepted", nil, domain.ProviderAccepted, []string{"payout_sent"}, false},
		{"settled at once", nil, domain.ProviderSettled, []string{"payout_sent", "payout_settled", "entry_posted"}, false},
		{"rejected at once", nil, domain.ProviderFailed, []string{"payout_failed", "entry_posted"}, false},
		{"accepted twice", []domain.ProviderStatus{domain.ProviderAccepted}, domain.ProviderAccepted, nil, false},
		{"settled late", []domain.ProviderStatus{domain.ProviderAccepted}, domain.ProviderSettled, []string{"payout_settled", "entry_posted"}, false},
		{"returned late", []domain.ProviderStatus{domain.ProviderAccepted}, domain.ProviderFailed, []string{"payout_failed", "entry_posted"}, false},
		{"settled twice", []domain.ProviderStatus{domain.ProviderSettled}, domain.ProviderSettled, nil, false},
		{"accepted after settled", []domain.ProviderStatus{domain.ProviderSettled}, domain.ProviderAccepted, nil, false},
		{"failed after settled", []domain.ProviderStatus{domain.ProviderSettled}, domain.ProviderFailed, nil, true},
		{"settled after failed", []domain.ProviderStatus{domain.ProviderFailed}, domain.ProviderSettled, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newBook(t, "acct")
			b.post(b.f.PostPayable(src("d1"), 700, ""))
			p := b.request(700)
			for _, s := range tc.before {
				b.outcome(p.ID, s)
			}
			changes, err := b.f.RecordProviderOutcome(p.ID, domain.ProviderReceipt{Reference: "R", Status: tc.then}, b.ids)
			if (err != nil) != tc.fails {
				t.Fatalf("err = %v, want failure %v", err, tc.fails)
			}
			if diff := cmp.Diff(tc.want, kinds(changes)); diff != "" {
				t.Fatalf("events (-want +got):\n%s", diff)
			}
		})
	}
}

// TestHoldsAndPaidNeverExceedAccrued drives one farmer through a long,
// seeded random mix of accruals, requests and provider outcomes and checks
// the invariant after every step.
func TestHoldsAndPaidNeverExceedAccrued(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(5, 64))
	b := newBook(t, "acct")
	var open []string
	var accrued, paid int64
	for step := range 2_000 {
		switch rng.IntN(4) {
		case 0:
			amount := rng.Int64N(5_000)
			accrued += amount
			b.post(b.f.PostPayable(src(fmt.Sprintf("d%d", step)), amount, ""))
		case 1:
			_, changes, err := b.f.RequestPayout(domain.PayoutRequest{RequestID: fmt.Sprint(step), AmountFen: rng.Int64N(3_000) + 1}, b.ids)
			if err != nil {
				if failure.KindOf(err) != failure.KindFailedPrecondition {
					t.Fatalf("step %d: %v", step, err)
				}
				continue
			}
			b.apply(changes...)
			open = append(open, changes[0].Event.(*ledgerevents.PayoutRequested).GetPayoutId())
		default:
			if len(open) == 0 {
				continue
			}
			i := rng.IntN(len(open))
			id := open[i]
			open = append(open[:i], open[i+1:]...)
			status := domain.ProviderSettled
			if rng.IntN(3) == 0 {
				status = domain.ProviderFailed
			}
			b.outcome(id, status)
			if p, _ := b.f.Payout(id); status == domain.ProviderSettled {
				paid += p.AmountFen
			}
		}
		bal := b.f.Balance()
		if bal.HeldFen+bal.PaidFen > accrued || available(t, bal) < 0 || bal.PaidFen != paid {
			t.Fatalf("step %d: %+v with %d accrued, %d paid", step, bal, accrued, paid)
		}
	}
}

// TestDownwardCorrectionAfterPayout: a correction is a fact the ledger
// must take even when the farmer was already paid; the shortfall is then
// a receivable (available stays at zero) and no payout is possible until
// later accruals cover it.
func TestDownwardCorrectionAfterPayout(t *testing.T) {
	t.Parallel()
	b := newBook(t, "acct")
	b.post(b.f.PostPayable(src("d1"), 1_000, ""))
	p := b.request(1_000)
	b.outcome(p.ID, domain.ProviderSettled)
	b.post(b.f.PostCorrection(src("c1"), 1_000, 800, ""))
	if got := available(t, b.f.Balance()); got != 0 || b.f.Balance().ReceivableFen != 200 {
		t.Fatalf("available = %d, receivable %d; want 0 and 200", got, b.f.Balance().ReceivableFen)
	}
	for _, r := range []domain.PayoutRequest{{AmountFen: 1}, {AllAvailable: true}} {
		if _, _, err := b.f.RequestPayout(r, b.ids); failure.KindOf(err) != failure.KindFailedPrecondition {
			t.Fatalf("RequestPayout(%+v) with available -200: %v", r, err)
		}
	}
	b.post(b.f.PostPayable(src("d2"), 500, ""))
	b.request(300)
}

func TestEffect(t *testing.T) {
	t.Parallel()
	lines := []*ledgerevents.EntryLine{
		{Account: "farmer:F1:payable", CreditFen: 100},
		{Account: "farmer:F1:premium", CreditFen: 20, DebitFen: 5},
		{Account: "farmer:F1:held", DebitFen: 30},
		{Account: "farmer:F1:paid", DebitFen: 7},
		{Account: "farmer:F11:payable", CreditFen: 1_000}, // another farmer
		{Account: "platform:payout_clearing", CreditFen: 1},
	}
	want := domain.Balance{FarmerID: "F1", PurchasesFen: 100, PremiumsFen: 15, HeldFen: 30, PaidFen: 7}
	got, err := domain.Effect("F1", lines)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
}

// TestFarmerLifeWithAClawback: a premium cut after it was paid out books
// the shortfall as a receivable instead of taking available below zero;
// payouts are refused until it is covered; the next payable and premium
// net against it. Every figure is worked out by hand:
//
//	d1 1,000 kg × 500 fen/kg             payable  500,000
//	p1 600 kg × 100 fen/kg               premium   60,000
//	payout 560,000 settled               paid     560,000  available 0
//	p1 revised to 120 fen/kg             premium  +12,000  available 12,000
//	payout 12,000 settled                paid     572,000  available 0
//	p1's rule ended before the sale      premium  −72,000  net −72,000:
//	                                     receivable 72,000, available 0
//	d2 100 kg × 500 fen/kg               payable  +50,000: receivable 22,000
//	p2 300 kg × 100 fen/kg               premium  +30,000: receivable 0,
//	                                     available 8,000
func TestFarmerLifeWithAClawback(t *testing.T) {
	t.Parallel()
	b := newBook(t, "6222020000000001")
	b.post(b.f.PostPayable(src("d1"), 500_000, ""))
	b.post(b.f.PostPremium(src("p1"), 60_000, ""))
	b.outcome(b.request(560_000).ID, domain.ProviderSettled)
	b.post(b.f.PostPremium(src("p1-revised"), 12_000, ""))
	b.outcome(b.request(12_000).ID, domain.ProviderSettled)
	b.post(b.f.PostPremium(src("p1-ended"), -72_000, ""))

	want := domain.Balance{FarmerID: "F1", PurchasesFen: 500_000, PremiumsFen: 0, PaidFen: 572_000, ReceivableFen: 72_000, ClawbackFen: 72_000}
	if diff := cmp.Diff(want, b.f.Balance()); diff != "" {
		t.Fatalf("balance after the clawback (-want +got):\n%s", diff)
	}
	if got := available(t, b.f.Balance()); got != 0 {
		t.Fatalf("available after the clawback = %d, want 0 (never negative)", got)
	}
	if _, _, err := b.f.RequestPayout(domain.PayoutRequest{RequestID: "while-owed", AmountFen: 1}, b.ids); failure.KindOf(err) != failure.KindFailedPrecondition {
		t.Fatalf("payout while 72,000 fen are owed: %v, want a failed precondition", err)
	}
	b.post(b.f.PostPayable(src("d2"), 50_000, ""))
	if got := b.f.Balance().ReceivableFen; got != 22_000 {
		t.Fatalf("receivable after a 50,000 fen payable = %d, want 22,000", got)
	}
	if _, _, err := b.f.RequestPayout(domain.PayoutRequest{RequestID: "all", AllAvailable: true}, b.ids); failure.KindOf(err) != failure.KindFailedPrecondition {
		t.Fatalf("payout of everything while 22,000 fen are owed: %v, want a failed precondition", err)
	}
	b.post(b.f.PostPremium(src("p2"), 30_000, ""))
	want = domain.Balance{FarmerID: "F1", PurchasesFen: 550_000, PremiumsFen: 30_000, PaidFen: 572_000}
	if diff := cmp.Diff(want, b.f.Balance()); diff != "" {
		t.Fatalf("balance after the receivable is recovered (-want +got):\n%s", diff)
	}
	if got := available(t, b.f.Balance()); got != 8_000 {
		t.Fatalf("available = %d, want 8,000", got)
	}
	b.outcome(b.request(8_000).ID, domain.ProviderSettled)

	accounts := map[string]int64{}
	var sum int64
	for _, e := range b.entries {
		for _, l := range e.GetLines() {
			accounts[l.GetAccount()] += l.GetDebitFen() - l.GetCreditFen()
			sum += l.GetDebitFen() - l.GetCreditFen()
		}
	}
	wantAccounts := map[string]int64{
		"farmer:F1:payable": -550_000, "farmer:F1:premium": -30_000, "farmer:F1:held": 0, "farmer:F1:paid": 580_000,
		"farmer:F1:receivable": 0, "farmer:F1:clawback": 0,
		domain.AccountProcurementExpense: 550_000, domain.AccountPremiumExpense: 30_000,
		domain.AccountPayoutClearing: 0, domain.AccountProviderSettlement: -580_000,
	}
	if diff := cmp.Diff(wantAccounts, accounts); diff != "" || sum != 0 {
		t.Fatalf("journal (-want +got), sum %d:\n%s", sum, diff)
	}
}

// TestReleasedHoldNetsAgainstAReceivable: a premium cut while a payout is
// held books the shortfall; the payout then fails and its released hold
// pays the receivable back first.
func TestReleasedHoldNetsAgainstAReceivable(t *testing.T) {
	t.Parallel()
	b := newBook(t, "6222020000000001")
	b.post(b.f.PostPremium(src("p1"), 10_000, ""))
	p := b.request(10_000)
	b.post(b.f.PostPremium(src("p1-cut"), -4_000, ""))
	if got := b.f.Balance(); got.ReceivableFen != 4_000 {
		t.Fatalf("receivable while the payout is held = %d, want 4,000", got.ReceivableFen)
	}
	b.outcome(p.ID, domain.ProviderFailed)
	want := domain.Balance{FarmerID: "F1", PremiumsFen: 6_000}
	if diff := cmp.Diff(want, b.f.Balance()); diff != "" {
		t.Fatalf("balance after the failed payout (-want +got):\n%s", diff)
	}
}
