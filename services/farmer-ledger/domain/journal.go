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
	if !f.registered {
		return nil, false, ErrUnknownFarmer
	}
	if f.HasPosted(src.GetEventId()) {
		return nil, true, nil
	}
	if amountFen < 0 {
		return nil, false, fmt.Errorf("payable of %d fen for %s: %w", amountFen, src.GetEventId(), failure.Invalid("amount_fen", "is negative"))
	}
	e := &ledgerevents.EntryPosted{
		EntryId:     "E-" + src.GetEventId(),
		FarmerId:    f.id,
		Source:      src,
		Description: description,
		Lines: []*ledgerevents.EntryLine{
			{Account: AccountProcurementExpense, DebitFen: amountFen},
			{Account: FarmerAccount(f.id, "payable"), CreditFen: amountFen},
		},
	}
	if err := CheckBalanced(e.Lines); err != nil {
		return nil, false, err
	}
	return e, false, nil
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
