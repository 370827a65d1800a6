package domain_test

import (
	"errors"
	"math"
	"math/big"
	"strings"
	"testing"

	ledgerevents "github.com/furrow/furrow/proto/furrow/ledger/events/v1"

	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/money"

	"github.com/furrow/furrow/services/farmer-ledger/domain"
)

// The amount of one weigh-in of math.MaxInt64 g at 680 fen/kg, the issue's
// delivery: it fits in an int64, two of them do not.
const maxDeliveryFen = 6_271_892_985_061_247_549

// wantOverflowRefusal fails unless err is a failed precondition that says
// what overflowed and still wraps money.ErrOverflow.
func wantOverflowRefusal(t *testing.T, what string, err error) {
	t.Helper()
	if failure.KindOf(err) != failure.KindFailedPrecondition || !errors.Is(err, money.ErrOverflow) ||
		!strings.Contains(err.Error(), "overflow") {
		t.Fatalf("%s: err = %v; want a failed precondition wrapping money.ErrOverflow", what, err)
	}
}

// A posting whose effect would take one of the farmer's accounts, or what
// is available to them, beyond int64 is refused: nothing to append, and
// the balance stays exact.
func TestPostingThatWouldOverflowTheFarmerIsRefused(t *testing.T) {
	t.Parallel()
	if got, err := money.Amount(math.MaxInt64, 680); err != nil || got != maxDeliveryFen {
		t.Fatalf("Amount(MaxInt64, 680) = %d, %v", got, err)
	}
	for _, tc := range []struct {
		name  string
		first func(f *domain.Farmer) (*ledgerevents.EntryPosted, bool, error)
		next  func(f *domain.Farmer) (*ledgerevents.EntryPosted, bool, error)
	}{
		{"two maximal deliveries", func(f *domain.Farmer) (*ledgerevents.EntryPosted, bool, error) {
			return f.PostPayable(src("d1"), maxDeliveryFen, "")
		}, func(f *domain.Farmer) (*ledgerevents.EntryPosted, bool, error) {
			return f.PostPayable(src("d2"), maxDeliveryFen, "")
		}},
		{"payable at the maximum, then one fen more", func(f *domain.Farmer) (*ledgerevents.EntryPosted, bool, error) {
			return f.PostPayable(src("d1"), math.MaxInt64, "")
		}, func(f *domain.Farmer) (*ledgerevents.EntryPosted, bool, error) {
			return f.PostPayable(src("d2"), 1, "")
		}},
		// Each account fits, but payable + premium (what is available) does not.
		{"premium on top of a maximal payable", func(f *domain.Farmer) (*ledgerevents.EntryPosted, bool, error) {
			return f.PostPayable(src("d1"), math.MaxInt64, "")
		}, func(f *domain.Farmer) (*ledgerevents.EntryPosted, bool, error) {
			return f.PostPremium(src("s1"), 1, "")
		}},
		{"correction raising a maximal payable", func(f *domain.Farmer) (*ledgerevents.EntryPosted, bool, error) {
			return f.PostPayable(src("d1"), math.MaxInt64-10, "")
		}, func(f *domain.Farmer) (*ledgerevents.EntryPosted, bool, error) {
			return f.PostCorrection(src("c1"), 1, 100, "")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newBook(t, "acct")
			b.post(tc.first(b.f))
			before := b.f.Balance()
			entry, already, err := tc.next(b.f)
			if entry != nil || already {
				t.Fatalf("second posting = %v (already %v), want refused", entry, already)
			}
			wantOverflowRefusal(t, "second posting", err)
			if b.f.Balance() != before {
				t.Fatalf("balance moved from %+v to %+v", before, b.f.Balance())
			}
			// What is available is still exact, and can be paid out.
			avail, err := before.Available()
			if err != nil || avail <= 0 {
				t.Fatalf("available = %d, %v", avail, err)
			}
			if p := b.request(min(avail, domain.MaxPayoutFen)); p.AmountFen != min(avail, domain.MaxPayoutFen) {
				t.Fatalf("payout = %d fen, want %d", p.AmountFen, min(avail, domain.MaxPayoutFen))
			}
		})
	}
}

// Entries written before overflow was checked are still in the stream: a
// farmer rebuilt from them must not wrap. It keeps the balance before the
// entry that overflowed, refuses every further posting and payout with a
// failed precondition naming the overflow, and never reports the wrapped
// negative available balance of the issue.
func TestFarmerRebuiltFromOverflowingEntriesRefusesPayouts(t *testing.T) {
	t.Parallel()
	b := newBook(t, "acct")
	for _, id := range []string{"d1", "d2"} {
		b.seq++
		b.f.Apply(b.seq, &ledgerevents.EntryPosted{EntryId: "E-" + id, FarmerId: "F1", Source: src(id), Lines: []*ledgerevents.EntryLine{
			{Account: domain.AccountProcurementExpense, DebitFen: maxDeliveryFen},
			{Account: domain.FarmerAccount("F1", domain.FarmerPayable), CreditFen: maxDeliveryFen},
		}})
	}
	if got := b.f.Balance(); got.PurchasesFen != maxDeliveryFen {
		t.Fatalf("balance = %+v; want the payable before the overflowing entry, %d fen", got, int64(maxDeliveryFen))
	}
	_, changes, err := b.f.RequestPayout(domain.PayoutRequest{AmountFen: 1}, b.ids)
	if changes != nil {
		t.Fatalf("RequestPayout = %v, want no events", changes)
	}
	wantOverflowRefusal(t, "RequestPayout", err)
	// 2 × maxDeliveryFen wrapped to -5,902,958,103,587,056,518.
	if strings.Contains(err.Error(), "-5902958103587056518") {
		t.Fatalf("RequestPayout reports the wrapped balance: %v", err)
	}
	_, _, err = b.f.RequestPayout(domain.PayoutRequest{AllAvailable: true}, b.ids)
	wantOverflowRefusal(t, "RequestPayout of everything", err)
	_, _, err = b.f.PostPayable(src("d3"), 1, "")
	wantOverflowRefusal(t, "a later posting", err)
	// A posting already made is still recognised as such (idempotency
	// comes before the balance).
	if _, already, err := b.f.PostPayable(src("d2"), maxDeliveryFen, ""); !already || err != nil {
		t.Fatalf("re-posting d2: already %v, %v", already, err)
	}
}

// A payout must be able to settle: its settlement entry moves the amount
// twice, so a payout beyond MaxPayoutFen is refused at the request, and
// payouts up to it hold, settle, and leave every account within int64.
func TestPayoutsStayWithinInt64(t *testing.T) {
	t.Parallel()
	b := newBook(t, "acct")
	b.post(b.f.PostPayable(src("d1"), math.MaxInt64, ""))
	_, changes, err := b.f.RequestPayout(domain.PayoutRequest{RequestID: "big", AmountFen: domain.MaxPayoutFen + 1}, b.ids)
	if failure.KindOf(err) != failure.KindInvalid || !errors.Is(err, money.ErrOverflow) || changes != nil {
		t.Fatalf("a payout that could not settle: %v, %v; want invalid amount_fen", changes, err)
	}
	_, _, err = b.f.RequestPayout(domain.PayoutRequest{RequestID: "all", AllAvailable: true}, b.ids)
	wantOverflowRefusal(t, "everything available, more than a payout can settle", err)
	for range 2 {
		b.outcome(b.request(domain.MaxPayoutFen).ID, domain.ProviderSettled)
	}
	want := domain.Balance{FarmerID: "F1", PurchasesFen: math.MaxInt64, PaidFen: 2 * domain.MaxPayoutFen}
	if got := b.f.Balance(); got != want || available(t, got) != 1 {
		t.Fatalf("balance after two maximal payouts = %+v, want %+v", got, want)
	}
	_, _, err = b.f.PostPayable(src("d2"), 1, "")
	wantOverflowRefusal(t, "a posting beyond the maximal payable", err)
}

// A sum that wraps must not make an unbalanced entry look balanced.
func TestCheckBalancedDetectsOverflow(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		lines []*ledgerevents.EntryLine
	}{
		// Debits 2^64 wrap to 0, which equals the credits.
		{"debits wrap to the credits", []*ledgerevents.EntryLine{
			{Account: "a", DebitFen: math.MaxInt64}, {Account: "b", DebitFen: math.MaxInt64}, {Account: "c", DebitFen: 2},
			{Account: "d", CreditFen: 0}}},
		{"both sides beyond int64", []*ledgerevents.EntryLine{
			{Account: "a", DebitFen: math.MaxInt64}, {Account: "b", DebitFen: math.MaxInt64},
			{Account: "c", CreditFen: math.MaxInt64}, {Account: "d", CreditFen: math.MaxInt64}}},
	} {
		err := domain.CheckBalanced(tc.lines)
		if failure.KindOf(err) != failure.KindInvalid || !strings.Contains(err.Error(), "overflow") {
			t.Errorf("%s: CheckBalanced = %v, want an invalid entry naming the overflow", tc.name, err)
		}
	}
}

func TestEffectAndPlusDetectOverflow(t *testing.T) {
	t.Parallel()
	payable := domain.FarmerAccount("F1", domain.FarmerPayable)
	if _, err := domain.Effect("F1", []*ledgerevents.EntryLine{
		{Account: payable, CreditFen: math.MaxInt64}, {Account: payable, CreditFen: 1},
	}); !errors.Is(err, money.ErrOverflow) {
		t.Errorf("Effect of two lines beyond int64: %v", err)
	}
	if _, err := domain.Effect("F1", []*ledgerevents.EntryLine{
		{Account: payable, DebitFen: math.MaxInt64}, {Account: payable, DebitFen: 2},
	}); !errors.Is(err, money.ErrOverflow) {
		t.Errorf("Effect of debits below -int64: %v", err)
	}
	full := domain.Balance{FarmerID: "F1", PurchasesFen: math.MaxInt64}
	for _, d := range []domain.Balance{
		{PurchasesFen: 1}, {PremiumsFen: 1}, {HeldFen: math.MinInt64}, {PaidFen: math.MinInt64},
	} {
		if got, err := full.Plus(d); !errors.Is(err, money.ErrOverflow) {
			t.Errorf("%+v plus %+v = %+v, %v; want ErrOverflow", full, d, got, err)
		}
	}
	if got, err := full.Plus(domain.Balance{PurchasesFen: -1, PremiumsFen: 1}); err != nil || got.PurchasesFen != math.MaxInt64-1 || got.PremiumsFen != 1 {
		t.Errorf("a change that stays in range = %+v, %v", got, err)
	}
	if _, err := (domain.Balance{PremiumsFen: math.MaxInt64, HeldFen: -1}).Available(); !errors.Is(err, money.ErrOverflow) {
		t.Errorf("available beyond int64: %v", err)
	}
	// Exact whenever the result fits, whichever partial sums would not.
	for _, b := range []domain.Balance{
		{PurchasesFen: math.MaxInt64, PremiumsFen: 1, HeldFen: 5},
		{PurchasesFen: math.MaxInt64, PremiumsFen: math.MaxInt64, HeldFen: math.MaxInt64, PaidFen: math.MaxInt64},
		{HeldFen: math.MaxInt64, PaidFen: 1, PurchasesFen: 1},
	} {
		want := new(big.Int).Sub(new(big.Int).Add(big.NewInt(b.PurchasesFen), big.NewInt(b.PremiumsFen)),
			new(big.Int).Add(big.NewInt(b.HeldFen), big.NewInt(b.PaidFen)))
		if got, err := b.Available(); err != nil || got != want.Int64() {
			t.Errorf("%+v: available = %d, %v; want %v", b, got, err, want)
		}
	}
}

// Reconciliation sums the settlement file's amounts, which come from
// outside: a file whose total does not fit is refused, not wrapped.
func TestReconcileTotalsOverflow(t *testing.T) {
	t.Parallel()
	ledger, lines := cleanSide()
	lines[0].AmountFen, lines[1].AmountFen = math.MaxInt64, math.MaxInt64
	_, err := domain.Reconcile(ledger, lines, domain.Period{})
	if failure.KindOf(err) != failure.KindInvalid || !errors.Is(err, money.ErrOverflow) {
		t.Fatalf("Reconcile of a file whose total overflows: %v, want invalid settlement_csv", err)
	}
}

// mustReconcile reconciles totals that fit.
func mustReconcile(t *testing.T, ledger []domain.LedgerPayout, lines []domain.SettlementLine, period domain.Period) domain.Reconciliation {
	t.Helper()
	rec, err := domain.Reconcile(ledger, lines, period)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// available is what b leaves available, which must be computable.
func available(t *testing.T, b domain.Balance) int64 {
	t.Helper()
	avail, err := b.Available()
	if err != nil {
		t.Fatal(err)
	}
	return avail
}

// An account's balance (debits − credits) must fit too: the trial balance
// reports it for every account.
func TestTrialBalanceRefusesAnAccountBalanceBeyondInt64(t *testing.T) {
	t.Parallel()
	if _, err := domain.NewTrialBalance([]domain.AccountTotal{
		{Account: "a", DebitFen: math.MaxInt64, CreditFen: -1}, {Account: "b", CreditFen: math.MaxInt64, DebitFen: -1},
	}, true); !errors.Is(err, money.ErrOverflow) {
		t.Fatalf("NewTrialBalance = %v, want ErrOverflow", err)
	}
}
