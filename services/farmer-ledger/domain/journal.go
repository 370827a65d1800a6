package domain

import (
	"fmt"
	"strings"

	ledgerevents "github.com/furrow/furrow/proto/furrow/ledger/events/v1"

	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/money"
)

// The chart of accounts. A farmer's accounts are qualified by the farmer id
// (FarmerAccount); the platform's and the provider's are shared.
//
// Every farmer account belongs to the platform's liability to that farmer:
// payable and premium accrue it (credit-normal); held and paid are its
// contra accounts (debit-normal), so that
//
//	available = payable + premium − held − paid
//
// is read straight off the four balances. A payout moves through them:
//
//	request  Dr farmer:F:held            Cr platform:payout_clearing
//	settle   Dr farmer:F:paid            Cr farmer:F:held
//	         Dr platform:payout_clearing Cr provider:settlement
//	fail     Dr platform:payout_clearing Cr farmer:F:held
//
// so payout clearing always equals the sum of every farmer's holds, and
// provider settlement the sum of what the provider paid out.
//
// Clawbacks. When an entry lowers what the farmer accrued below what was
// already held or paid out (a premium cut, a correction after a payout),
// payable + premium − held − paid would go negative: the farmer owes the
// shortfall back. The entry then also books it as a receivable, the
// platform's claim on the farmer (debit-normal), against the farmer's
// clawback account (credit-normal), so that
//
//	available = payable + premium + clawback − held − paid
//
// is exactly zero rather than negative, and the receivable says how much
// is owed. Every later entry that raises the farmer's accruals (a payable,
// a premium, a released hold) nets against it first: Dr clawback, Cr
// receivable, by as much as it raised them, until the receivable is
// closed. The two accounts always hold the same balance. While a
// receivable is open nothing is available to pay out.
const (
	AccountProcurementExpense = "platform:procurement_expense"
	AccountPremiumExpense     = "platform:premium_expense"
	AccountPayoutClearing     = "platform:payout_clearing"
	AccountProviderSettlement = "provider:settlement"
)

// Kinds of a farmer's accounts.
const (
	FarmerPayable = "payable"
	FarmerPremium = "premium"
	FarmerHeld    = "held"
	FarmerPaid    = "paid"
	// FarmerReceivable is what the farmer owes back (debit-normal) and
	// FarmerClawback its counterpart among the farmer's liabilities
	// (credit-normal): see the chart above.
	FarmerReceivable = "receivable"
	FarmerClawback   = "clawback"
)

// FarmerAccount is the code of a farmer's account of the given kind
// (FarmerPayable, FarmerPremium, FarmerHeld, FarmerPaid).
func FarmerAccount(farmerID, kind string) string { return "farmer:" + farmerID + ":" + kind }

// Effect is what lines do to farmerID's accounts, each in its normal
// direction (credits for payable and premium, debits for held and paid).
// Lines on other accounts do not count. It fails with money.ErrOverflow
// when the lines' sum on an account does not fit in an int64.
func Effect(farmerID string, lines []*ledgerevents.EntryLine) (Balance, error) {
	b := Balance{FarmerID: farmerID}
	prefix := "farmer:" + farmerID + ":"
	for i, l := range lines {
		kind, ok := strings.CutPrefix(l.GetAccount(), prefix)
		if !ok {
			continue
		}
		var (
			sum         *int64
			plus, minus = l.GetCreditFen(), l.GetDebitFen()
		)
		switch kind {
		case FarmerPayable:
			sum = &b.PurchasesFen
		case FarmerPremium:
			sum = &b.PremiumsFen
		case FarmerHeld:
			sum, plus, minus = &b.HeldFen, l.GetDebitFen(), l.GetCreditFen()
		case FarmerPaid:
			sum, plus, minus = &b.PaidFen, l.GetDebitFen(), l.GetCreditFen()
		case FarmerReceivable:
			sum, plus, minus = &b.ReceivableFen, l.GetDebitFen(), l.GetCreditFen()
		case FarmerClawback:
			sum = &b.ClawbackFen
		default:
			continue
		}
		net, err := money.Sub(plus, minus)
		var v int64
		if err == nil {
			v, err = money.Add(*sum, net)
		}
		if err != nil {
			return Balance{}, fmt.Errorf("effect of line %d on %s: %w", i, l.GetAccount(), err)
		}
		*sum = v
	}
	return b, nil
}

// CheckBalanced fails unless the lines' debits equal their credits and
// every amount is non-negative. Debits and credits are summed with overflow
// checks: a sum that wrapped could make an unbalanced entry look balanced.
func CheckBalanced(lines []*ledgerevents.EntryLine) error {
	if len(lines) < 2 {
		return failure.Invalid("lines", "an entry needs at least two lines, got %d", len(lines))
	}
	var debit, credit int64
	for i, l := range lines {
		if l.GetDebitFen() < 0 || l.GetCreditFen() < 0 {
			return failure.Invalid("lines", "line %d has a negative amount", i)
		}
		var err error
		if debit, err = money.Add(debit, l.GetDebitFen()); err == nil {
			credit, err = money.Add(credit, l.GetCreditFen())
		}
		if err != nil {
			return failure.Invalid("lines", "the entry's debits or credits overflow at line %d: %v", i, err)
		}
	}
	if debit != credit {
		return failure.Invalid("lines", "entry does not balance: debits %d fen, credits %d fen", debit, credit)
	}
	return nil
}

// PostPayable returns the entry that makes a delivery's amount payable to
// the farmer: the platform's procurement expense against the farmer's
// payable. already is true when the source event has an entry.
func (f *Farmer) PostPayable(src *ledgerevents.SourceRef, amountFen int64, description string) (entry *ledgerevents.EntryPosted, already bool, err error) {
	return f.post(src, description,
		&ledgerevents.EntryLine{Account: AccountProcurementExpense, DebitFen: amountFen},
		&ledgerevents.EntryLine{Account: FarmerAccount(f.id, FarmerPayable), CreditFen: amountFen},
	)
}

// Balance is a farmer's balance in fen, as the journal accrues it.
type Balance struct {
	FarmerID     string
	PurchasesFen int64
	PremiumsFen  int64
	HeldFen      int64
	PaidFen      int64
	// ReceivableFen is what the farmer owes back after a clawback, and
	// ClawbackFen its counterpart in the farmer's liabilities; they are
	// equal (see the chart of accounts).
	ReceivableFen int64
	ClawbackFen   int64
}

// Available is what can still be paid out: payable + premium + clawback −
// held − paid. A reduction below what was paid out is booked as a
// receivable (its clawback brings this to zero), so it is negative only
// for entries written before receivables existed. It fails with
// money.ErrOverflow when the result does not fit in an int64 (each account
// may fit while their sum does not).
func (b Balance) Available() (int64, error) {
	net, err := b.Net()
	var avail int64
	if err == nil {
		avail, err = money.Add(net, b.ClawbackFen)
	}
	if err != nil {
		return 0, fmt.Errorf("available to %s: %w", b.FarmerID, err)
	}
	return avail, nil
}

// Net is payable + premium − held − paid: what the farmer's accruals leave
// after payouts, negative when more was paid out than is now owed (the
// receivable then covers the difference).
func (b Balance) Net() (int64, error) {
	// Paired as (payable − held) + (premium − paid): with accounts that
	// are not negative, neither difference can overflow, so an error means
	// the result itself does not fit.
	x, err := money.Sub(b.PurchasesFen, b.HeldFen)
	var y, net int64
	if err == nil {
		y, err = money.Sub(b.PremiumsFen, b.PaidFen)
	}
	if err == nil {
		net, err = money.Add(x, y)
	}
	if err != nil {
		return 0, fmt.Errorf("net balance of %s: %w", b.FarmerID, err)
	}
	return net, nil
}

// receivableLines returns the lines that keep the farmer's receivable
// equal to what lines (an entry about to be posted) leave owed: a
// shortfall below zero is booked (Dr receivable, Cr clawback), and an
// entry that raises the farmer's accruals while a receivable is open nets
// against it (Dr clawback, Cr receivable). It returns no lines when the
// receivable stays as it is, and a description of what it did.
func (f *Farmer) receivableLines(lines []*ledgerevents.EntryLine) ([]*ledgerevents.EntryLine, string, error) {
	d, err := Effect(f.id, lines)
	if err != nil {
		return nil, "", err
	}
	next, err := f.balance.Plus(d)
	if err != nil {
		return nil, "", err
	}
	net, err := next.Net()
	if err != nil {
		return nil, "", err
	}
	owed := max(-net, 0)
	switch change := owed - next.ReceivableFen; {
	case change > 0:
		return []*ledgerevents.EntryLine{
			{Account: FarmerAccount(f.id, FarmerReceivable), DebitFen: change},
			{Account: FarmerAccount(f.id, FarmerClawback), CreditFen: change},
		}, fmt.Sprintf("; %d fen more than is owed was paid out: booked as receivable", change), nil
	case change < 0:
		return []*ledgerevents.EntryLine{
			{Account: FarmerAccount(f.id, FarmerClawback), DebitFen: -change},
			{Account: FarmerAccount(f.id, FarmerReceivable), CreditFen: -change},
		}, fmt.Sprintf("; %d fen netted against the receivable", -change), nil
	}
	return nil, "", nil
}

// Plus returns b with d's amounts added. It fails with money.ErrOverflow
// when an account, or what is available, would not fit in an int64: a
// balance that holds is one whose every figure a reader can compute.
func (b Balance) Plus(d Balance) (Balance, error) {
	var err error
	for _, step := range []struct {
		sum *int64
		add int64
	}{{&b.PurchasesFen, d.PurchasesFen}, {&b.PremiumsFen, d.PremiumsFen}, {&b.HeldFen, d.HeldFen}, {&b.PaidFen, d.PaidFen},
		{&b.ReceivableFen, d.ReceivableFen}, {&b.ClawbackFen, d.ClawbackFen}} {
		if *step.sum, err = money.Add(*step.sum, step.add); err != nil {
			return Balance{}, fmt.Errorf("balance of %s: %w", b.FarmerID, err)
		}
	}
	if _, err := b.Available(); err != nil {
		return Balance{}, err
	}
	return b, nil
}

// PostCorrection returns the entry for a corrected delivery: it reverses the
// payable being replaced and posts the replacement, so the farmer's payable
// for the delivery ends at exactly the corrected amount. already is true
// when the source event has an entry.
func (f *Farmer) PostCorrection(src *ledgerevents.SourceRef, reversedFen, replacementFen int64, description string) (entry *ledgerevents.EntryPosted, already bool, err error) {
	payable := FarmerAccount(f.id, FarmerPayable)
	return f.post(src, description,
		&ledgerevents.EntryLine{Account: payable, DebitFen: reversedFen},
		&ledgerevents.EntryLine{Account: AccountProcurementExpense, CreditFen: reversedFen},
		&ledgerevents.EntryLine{Account: AccountProcurementExpense, DebitFen: replacementFen},
		&ledgerevents.EntryLine{Account: payable, CreditFen: replacementFen},
	)
}

// PostPremium returns the entry for a premium earned (deltaFen > 0) or
// adjusted by deltaFen (either sign): the platform's premium expense against
// the farmer's premium account. A zero delta (a restated sale whose
// premium did not change) needs no entry: it returns no entry and already
// true, so the journal never holds a zero posting.
func (f *Farmer) PostPremium(src *ledgerevents.SourceRef, deltaFen int64, description string) (entry *ledgerevents.EntryPosted, already bool, err error) {
	if deltaFen == 0 {
		return nil, true, nil
	}
	premium := FarmerAccount(f.id, FarmerPremium)
	if deltaFen >= 0 {
		return f.post(src, description,
			&ledgerevents.EntryLine{Account: AccountPremiumExpense, DebitFen: deltaFen},
			&ledgerevents.EntryLine{Account: premium, CreditFen: deltaFen},
		)
	}
	return f.post(src, description,
		&ledgerevents.EntryLine{Account: premium, DebitFen: -deltaFen},
		&ledgerevents.EntryLine{Account: AccountPremiumExpense, CreditFen: -deltaFen},
	)
}

// post builds a balanced entry for src, once per source event.
func (f *Farmer) post(src *ledgerevents.SourceRef, description string, lines ...*ledgerevents.EntryLine) (*ledgerevents.EntryPosted, bool, error) {
	if !f.registered {
		return nil, false, ErrUnknownFarmer
	}
	if f.HasPosted(src.GetEventId()) {
		return nil, true, nil
	}
	if err := CheckBalanced(lines); err != nil {
		return nil, false, fmt.Errorf("entry for %s: %w", src.GetEventId(), err)
	}
	if err := f.accepts(lines); err != nil {
		return nil, false, fmt.Errorf("entry for %s: %w", src.GetEventId(), err)
	}
	more, note, err := f.receivableLines(lines)
	if err != nil {
		return nil, false, failure.Overflow(err, "farmer %s's balance would overflow: refused", f.id)
	}
	lines, description = append(lines, more...), description+note
	if err := f.accepts(lines); err != nil {
		return nil, false, fmt.Errorf("entry for %s: %w", src.GetEventId(), err)
	}
	return &ledgerevents.EntryPosted{
		EntryId: "E-" + src.GetEventId(), FarmerId: f.id, Source: src, Description: description, Lines: lines,
	}, false, nil
}

// accepts fails with a failed precondition wrapping money.ErrOverflow
// unless the farmer's balance holds after lines: every account and what is
// available stay within int64. A farmer whose balance overflowed in the
// stream already (an entry written before this was checked) accepts
// nothing more.
func (f *Farmer) accepts(lines []*ledgerevents.EntryLine) error {
	if f.overflow != nil {
		return failure.Overflow(f.overflow, "farmer %s's balance overflowed in the stream: it takes no more entries", f.id)
	}
	d, err := Effect(f.id, lines)
	if err == nil {
		_, err = f.balance.Plus(d)
	}
	if err != nil {
		return failure.Overflow(err, "farmer %s's balance would overflow: refused", f.id)
	}
	return nil
}
