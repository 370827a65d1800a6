package domain

import (
	"fmt"

	ledgerevents "github.com/furrow/furrow/proto/furrow/ledger/events/v1"

	"github.com/furrow/furrow/pkg/failure"
)

// Accounts of the chart. A farmer's accounts are qualified by the farmer id.
const (
	AccountProcurementExpense = "platform:procurement_expense"
	AccountPremiumExpense     = "platform:premium_expense"
	AccountPayoutClearing     = "platform:payout_clearing"
)

// FarmerAccount is the code of a farmer's account of the given kind
// ("payable", "premium", "held", "paid").
func FarmerAccount(farmerID, kind string) string { return "farmer:" + farmerID + ":" + kind }

// CheckBalanced fails unless the lines' debits equal their credits and
// every amount is non-negative.
func CheckBalanced(lines []*ledgerevents.EntryLine) error {
	if len(lines) < 2 {
		return failure.Invalid("lines", "an entry needs at least two lines, got %d", len(lines))
	}
	var debit, credit int64
	for i, l := range lines {
		if l.GetDebitFen() < 0 || l.GetCreditFen() < 0 {
			return failure.Invalid("lines", "line %d has a negative amount", i)
		}
		debit += l.GetDebitFen()
		credit += l.GetCreditFen()
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
		&ledgerevents.EntryLine{Account: FarmerAccount(f.id, "payable"), CreditFen: amountFen},
	)
}

// Balance is a farmer's balance in fen, as the journal accrues it.
type Balance struct {
	FarmerID     string
	PurchasesFen int64
	PremiumsFen  int64
	HeldFen      int64
	PaidFen      int64
}

// AvailableFen is what can still be paid out.
func (b Balance) AvailableFen() int64 { return b.PurchasesFen + b.PremiumsFen - b.HeldFen - b.PaidFen }

// PostCorrection returns the entry for a corrected delivery: it reverses the
// payable being replaced and posts the replacement, so the farmer's payable
// for the delivery ends at exactly the corrected amount. already is true
// when the source event has an entry.
func (f *Farmer) PostCorrection(src *ledgerevents.SourceRef, reversedFen, replacementFen int64, description string) (entry *ledgerevents.EntryPosted, already bool, err error) {
	payable := FarmerAccount(f.id, "payable")
	return f.post(src, description,
		&ledgerevents.EntryLine{Account: payable, DebitFen: reversedFen},
		&ledgerevents.EntryLine{Account: AccountProcurementExpense, CreditFen: reversedFen},
		&ledgerevents.EntryLine{Account: AccountProcurementExpense, DebitFen: replacementFen},
		&ledgerevents.EntryLine{Account: payable, CreditFen: replacementFen},
	)
}

// PostPremium returns the entry for a premium earned (deltaFen > 0) or
// adjusted by deltaFen (either sign): the platform's premium expense against
// the farmer's premium account.
func (f *Farmer) PostPremium(src *ledgerevents.SourceRef, deltaFen int64, description string) (entry *ledgerevents.EntryPosted, already bool, err error) {
	premium := FarmerAccount(f.id, "premium")
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
	return &ledgerevents.EntryPosted{
		EntryId: "E-" + src.GetEventId(), FarmerId: f.id, Source: src, Description: description, Lines: lines,
	}, false, nil
}
