package domain

import "github.com/furrow/furrow/pkg/money"

// AllocationRule states how Allocate assigns money to payouts, for
// readers of a trace.
const AllocationRule = "first-in first-out, to the fen: the farmer's entries are taken in ledger order; " +
	"each settled payout, and each reduction of what the farmer accrued, takes the oldest unpaid fen first; " +
	"a reduction that finds nothing unpaid is owed back (receivable) and the next accruals repay it first"

// Allocation kinds (see TraceLot's Allocation message).
const (
	AllocPayout     = "payout"
	AllocReduction  = "reduction"
	AllocReceivable = "receivable"
	AllocUnpaid     = "unpaid"
)

// TraceItem is one of a farmer's entries as Allocate sees it, in ledger
// order: an accrual (AccruedFen, positive or negative: payable + premium)
// or a settlement (PaidFen > 0, PayoutID set).
type TraceItem struct {
	EntryID    string
	AccruedFen int64
	PaidFen    int64
	PayoutID   string
}

// Part is a share of an entry's money.
type Part struct {
	Kind     string
	Fen      int64
	PayoutID string
	// EntryID is the other entry involved.
	EntryID string
}

// Allocated is where an entry's money went.
type Allocated struct {
	Parts []Part
	// Open is what is still unpaid (a positive entry) or still owed back
	// (a negative one).
	Open int64
}

// Allocate assigns the farmer's money first-in first-out (AllocationRule)
// and returns, by entry id, where each accrual's money went. It is pure and
// deterministic: the same entries always allocate the same way.
func Allocate(items []TraceItem) (map[string]*Allocated, error) {
	out := map[string]*Allocated{}
	type open struct {
		entry string
		fen   int64
	}
	var queue []open // unpaid fen of positive entries, oldest first
	type owed struct {
		entry string
		fen   int64
	}
	var debts []owed // clawed-back fen of negative entries, oldest first
	at := func(id string) *Allocated {
		a := out[id]
		if a == nil {
			a = &Allocated{}
			out[id] = a
		}
		return a
	}
	// take removes up to fen from the queue's front, calling give for each
	// part, and returns what it could not take.
	take := func(fen int64, give func(entry string, fen int64)) int64 {
		for fen > 0 && len(queue) > 0 {
			n := min(fen, queue[0].fen)
			give(queue[0].entry, n)
			queue[0].fen -= n
			fen -= n
			if queue[0].fen == 0 {
				queue = queue[1:]
			}
		}
		return fen
	}
	for _, it := range items {
		switch {
		case it.AccruedFen > 0:
			a := at(it.EntryID)
			rest := it.AccruedFen
			for rest > 0 && len(debts) > 0 {
				n := min(rest, debts[0].fen)
				a.Parts = append(a.Parts, Part{Kind: AllocReceivable, Fen: n, EntryID: debts[0].entry})
				d := at(debts[0].entry)
				d.Open -= n
				debts[0].fen -= n
				rest -= n
				if debts[0].fen == 0 {
					debts = debts[1:]
				}
			}
			if rest > 0 {
				queue = append(queue, open{it.EntryID, rest})
				a.Open = rest
			}
		case it.AccruedFen < 0:
			a := at(it.EntryID)
			cut, err := money.Sub(0, it.AccruedFen)
			if err != nil {
				return nil, err
			}
			rest := take(cut, func(entry string, n int64) {
				src := at(entry)
				src.Parts = append(src.Parts, Part{Kind: AllocReduction, Fen: n, EntryID: it.EntryID})
				src.Open -= n
				a.Parts = append(a.Parts, Part{Kind: AllocUnpaid, Fen: n, EntryID: entry})
			})
			if rest > 0 {
				a.Parts = append(a.Parts, Part{Kind: AllocReceivable, Fen: rest})
				a.Open = rest
				debts = append(debts, owed{it.EntryID, rest})
			}
		}
		if it.PaidFen > 0 {
			take(it.PaidFen, func(entry string, n int64) {
				src := at(entry)
				src.Parts = append(src.Parts, Part{Kind: AllocPayout, Fen: n, PayoutID: it.PayoutID})
				src.Open -= n
			})
		}
	}
	return out, nil
}
