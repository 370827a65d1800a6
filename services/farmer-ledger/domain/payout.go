package domain

import (
	"fmt"
	"math"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	ledgerevents "github.com/furrow/furrow/proto/furrow/ledger/events/v1"

	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/money"
)

// Currency is the currency of every amount the ledger holds.
const Currency = "CNY"

// PayoutStatus is where a payout stands.
type PayoutStatus int

// A payout is requested (held), then sent to the provider, then settled or
// failed. Settled and failed are final.
const (
	PayoutStatusRequested PayoutStatus = iota + 1
	PayoutStatusSent
	PayoutStatusSettled
	PayoutStatusFailed
)

func (s PayoutStatus) String() string {
	switch s {
	case PayoutStatusRequested:
		return "requested"
	case PayoutStatusSent:
		return "sent"
	case PayoutStatusSettled:
		return "settled"
	case PayoutStatusFailed:
		return "failed"
	case PayoutStatusPendingApproval:
		return "pending_approval"
	case PayoutStatusRejected:
		return "rejected"
	}
	return "unknown"
}

// Final reports whether the provider has settled or failed the payout, or
// it was rejected before it was sent.
func (s PayoutStatus) Final() bool {
	return s == PayoutStatusSettled || s == PayoutStatusFailed || s == PayoutStatusRejected
}

// ParsePayoutStatus is the inverse of PayoutStatus.String.
func ParsePayoutStatus(s string) (PayoutStatus, bool) {
	for _, st := range []PayoutStatus{PayoutStatusRequested, PayoutStatusSent, PayoutStatusSettled, PayoutStatusFailed,
		PayoutStatusPendingApproval, PayoutStatusRejected} {
		if st.String() == s {
			return st, true
		}
	}
	return 0, false
}

// Payout is one payout of a farmer, as the aggregate knows it.
type Payout struct {
	ID          string
	FarmerID    string
	RequestID   string
	AmountFen   int64
	Currency    string
	Account     string
	Status      PayoutStatus
	ProviderRef string
	Reason      string
	// RequestedBy is who requested it (four-eyes: not its approver).
	RequestedBy string
}

// EventIDs names the events of one append by their index in it. The ledger
// picks its own events' ids before appending, because an entry appended in
// the same atomic batch as its source event refers to the source by id.
type EventIDs func(index int) string

// MaxPayoutFen is the largest payout: its settlement entry, which moves
// the amount twice, must balance within int64.
const MaxPayoutFen = math.MaxInt64 / 2

// PayoutRequest is a farmer's request to be paid out.
type PayoutRequest struct {
	// RequestID is the client's request id.
	RequestID string
	// AmountFen is the amount asked for, unless AllAvailable.
	AmountFen int64
	// AllAvailable asks for everything available.
	AllAvailable bool
	// Now is the time of the request (cooling-off); RequestedBy its actor
	// (four-eyes); ApprovalAboveFen the four-eyes threshold
	// (PayoutControls).
	Now              time.Time
	RequestedBy      string
	ApprovalAboveFen int64
}

// RequestPayout decides a payout: it returns the payout and the events to
// append atomically — PayoutRequested and the entry placing its hold — or
// an error when the farmer is unknown, has no payout account, or the amount
// is not positive or exceeds what is available. Since the hold is in the
// same batch and the append expects the aggregate's version, concurrent
// requests cannot together hold more than is available.
func (f *Farmer) RequestPayout(r PayoutRequest, ids EventIDs) (Payout, []Change, error) {
	if !f.registered {
		return Payout{}, nil, failure.NotFound("farmer_id", "farmer %s is not registered", f.id)
	}
	if f.overflow != nil {
		return Payout{}, nil, failure.Overflow(f.overflow, "farmer %s's balance overflowed in the stream: it takes no payouts", f.id)
	}
	available, err := f.balance.Available()
	if err != nil {
		// Plus keeps available within int64 for every balance it builds.
		return Payout{}, nil, failure.Overflow(err, "farmer %s's available balance cannot be computed", f.id)
	}
	// While a receivable is open, a payout must leave enough to cover it:
	// what the farmer owes back comes before what is paid out.
	if owed := f.balance.ReceivableFen; owed > 0 {
		if available, err = money.Sub(available, owed); err != nil {
			return Payout{}, nil, failure.Overflow(err, "farmer %s's available balance cannot be computed", f.id)
		}
		if available <= 0 || (!r.AllAvailable && r.AmountFen > available) {
			return Payout{}, nil, failure.FailedPrecondition("farmer %s owes %d fen back (a receivable from premiums or payables lowered after they were paid out): a payout must leave it covered, and %d fen is available beyond it",
				f.id, owed, max(available, 0))
		}
	}
	amount := r.AmountFen
	switch {
	case r.AllAvailable && r.AmountFen != 0:
		return Payout{}, nil, failure.Invalid("amount", "give amount_fen or all_available, not both")
	case r.AllAvailable:
		if available <= 0 {
			return Payout{}, nil, failure.FailedPrecondition("farmer %s has nothing available to pay out (available %d fen)", f.id, available)
		}
		amount = available
	case amount <= 0:
		return Payout{}, nil, failure.Invalid("amount_fen", "must be positive, got %d", amount)
	case amount > available:
		return Payout{}, nil, failure.FailedPrecondition("payout of %d fen exceeds farmer %s's available %d fen", amount, f.id, available)
	}
	if f.erased {
		return Payout{}, nil, failure.FailedPrecondition("farmer %s was erased: it has no payout account", f.id)
	}
	if f.payoutAccount == "" {
		return Payout{}, nil, failure.FailedPrecondition("farmer %s has no payout account", f.id)
	}
	if err := f.checkCoolingOff(r.Now); err != nil {
		return Payout{}, nil, err
	}
	// Settling moves the amount twice in one entry (held to paid, payout
	// clearing to the provider), so that entry's debits are twice the
	// amount: a payout whose settlement could not balance within int64 is
	// refused now rather than stuck later.
	if _, err := money.Add(amount, amount); err != nil {
		if r.AllAvailable {
			return Payout{}, nil, failure.Overflow(err, "farmer %s's available %d fen is more than one payout can settle (at most %d fen): request an amount", f.id, amount, MaxPayoutFen)
		}
		return Payout{}, nil, &failure.Error{Kind: failure.KindInvalid, Field: "amount_fen",
			Msg: fmt.Sprintf("%d fen is more than one payout can settle, at most %d fen", amount, MaxPayoutFen), Err: err}
	}
	p := Payout{
		ID: "PO-" + f.id + "-" + strconv.Itoa(f.payouts.Len()+1), FarmerID: f.id, RequestID: r.RequestID,
		AmountFen: amount, Currency: Currency, Account: f.payoutAccount, Status: PayoutStatusRequested,
		RequestedBy: r.RequestedBy,
	}
	req := &ledgerevents.PayoutRequested{
		PayoutId: p.ID, FarmerId: f.id, AmountFen: amount, Currency: Currency,
		RequestId: r.RequestID, AllAvailable: r.AllAvailable, RequestedBy: r.RequestedBy,
	}
	if needsApproval(amount, r.ApprovalAboveFen) {
		req.ApprovalRequired, p.Status = true, PayoutStatusPendingApproval
	}
	req.PayoutAccount, req.SealedPayoutAccount = splitPersonal(p.Account)
	hold, err := payoutEntry(ids(0), req, p.ID, fmt.Sprintf("payout %s requested: hold %d fen", p.ID, amount),
		&ledgerevents.EntryLine{Account: FarmerAccount(f.id, FarmerHeld), DebitFen: amount},
		&ledgerevents.EntryLine{Account: AccountPayoutClearing, CreditFen: amount},
	)
	if err != nil {
		return Payout{}, nil, err
	}
	// held + amount ≤ held + available, so the hold always fits; checked
	// all the same, like every posting.
	if err := f.accepts(hold.GetLines()); err != nil {
		return Payout{}, nil, err
	}
	hold.FarmerId = f.id
	return p, []Change{
		{Kind: KindPayoutRequested, Event: req, ID: ids(0)},
		{Kind: KindEntryPosted, Event: hold, ID: ids(1)},
	}, nil
}

// ProviderStatus is what a payment provider says about a payout.
type ProviderStatus int

// A provider accepts a payout instruction, then settles or fails it; it
// may report either at once.
const (
	ProviderAccepted ProviderStatus = iota + 1
	ProviderSettled
	ProviderFailed
)

func (s ProviderStatus) String() string {
	switch s {
	case ProviderAccepted:
		return "accepted"
	case ProviderSettled:
		return "settled"
	case ProviderFailed:
		return "failed"
	}
	return "unknown"
}

// ProviderReceipt is a payment provider's answer about one payout.
type ProviderReceipt struct {
	// Reference is the provider's own id of the payment.
	Reference string
	Status    ProviderStatus
	// At is when the provider settled or failed it (its value date).
	At time.Time
	// Reason says why it failed.
	Reason string
}

// PayoutInstruction is what a payment provider is told to pay. PayoutID is
// its idempotency key: every retry carries the same one.
type PayoutInstruction struct {
	PayoutID  string
	FarmerID  string
	Account   string
	AmountFen int64
	Currency  string
}

// Instruction returns the instruction that pays p.
func (p Payout) Instruction() PayoutInstruction {
	return PayoutInstruction{PayoutID: p.ID, FarmerID: p.FarmerID, Account: p.Account, AmountFen: p.AmountFen, Currency: p.Currency}
}

// RecordProviderOutcome returns the events that bring a payout up to what
// the provider says: PayoutSent when it accepted a requested payout;
// PayoutSettled with the entry moving held to paid, or PayoutFailed with
// the entry releasing the hold, when it completed. It returns no events when
// the ledger already knows, and an error when the provider contradicts a
// final status (that is for reconciliation to raise, not to overwrite).
func (f *Farmer) RecordProviderOutcome(payoutID string, r ProviderReceipt, ids EventIDs) ([]Change, error) {
	p, ok := f.payouts.Get(payoutID)
	if !ok {
		return nil, failure.NotFound("payout_id", "farmer %s has no payout %s", f.id, payoutID)
	}
	if r.Reference == "" {
		return nil, failure.Invalid("provider_reference", "the provider named no reference for payout %s", payoutID)
	}
	if p.Status.Final() {
		if (p.Status == PayoutStatusSettled) != (r.Status == ProviderSettled) && r.Status != ProviderAccepted {
			return nil, failure.FailedPrecondition("provider reports payout %s %s, the ledger has it %s", payoutID, r.Status, p.Status)
		}
		return nil, nil
	}
	var changes []Change
	next := func() string { return ids(len(changes)) }
	if p.Status == PayoutStatusRequested && r.Status != ProviderFailed {
		changes = append(changes, Change{Kind: KindPayoutSent, ID: next(), Event: &ledgerevents.PayoutSent{
			PayoutId: p.ID, FarmerId: f.id, ProviderReference: r.Reference,
		}})
	}
	switch r.Status {
	case ProviderAccepted:
	case ProviderSettled:
		srcID := next()
		ev := &ledgerevents.PayoutSettled{
			PayoutId: p.ID, FarmerId: f.id, ProviderReference: r.Reference, AmountFen: p.AmountFen,
			SettledAt: timestamppb.New(r.At),
		}
		entry, err := payoutEntry(srcID, ev, p.ID, fmt.Sprintf("payout %s settled by provider (%s): %d fen paid", p.ID, r.Reference, p.AmountFen),
			&ledgerevents.EntryLine{Account: FarmerAccount(f.id, FarmerPaid), DebitFen: p.AmountFen},
			&ledgerevents.EntryLine{Account: FarmerAccount(f.id, FarmerHeld), CreditFen: p.AmountFen},
			&ledgerevents.EntryLine{Account: AccountPayoutClearing, DebitFen: p.AmountFen},
			&ledgerevents.EntryLine{Account: AccountProviderSettlement, CreditFen: p.AmountFen},
		)
		if err != nil {
			return nil, err
		}
		if err := f.accepts(entry.GetLines()); err != nil {
			return nil, err
		}
		entry.FarmerId = f.id
		changes = append(changes, Change{Kind: KindPayoutSettled, Event: ev, ID: srcID})
		changes = append(changes, Change{Kind: KindEntryPosted, Event: entry, ID: next()})
	case ProviderFailed:
		srcID := next()
		ev := &ledgerevents.PayoutFailed{
			PayoutId: p.ID, FarmerId: f.id, ProviderReference: r.Reference, AmountFen: p.AmountFen,
			Reason: r.Reason, FailedAt: timestamppb.New(r.At),
		}
		lines := []*ledgerevents.EntryLine{
			{Account: AccountPayoutClearing, DebitFen: p.AmountFen},
			{Account: FarmerAccount(f.id, FarmerHeld), CreditFen: p.AmountFen},
		}
		// The released hold nets against an open receivable first.
		more, note, err := f.receivableLines(lines)
		if err != nil {
			return nil, failure.Overflow(err, "farmer %s's balance would overflow: refused", f.id)
		}
		entry, err := payoutEntry(srcID, ev, p.ID, fmt.Sprintf("payout %s failed (%s): hold of %d fen released%s", p.ID, r.Reason, p.AmountFen, note),
			append(lines, more...)...)
		if err != nil {
			return nil, err
		}
		if err := f.accepts(entry.GetLines()); err != nil {
			return nil, err
		}
		entry.FarmerId = f.id
		changes = append(changes, Change{Kind: KindPayoutFailed, Event: ev, ID: srcID})
		changes = append(changes, Change{Kind: KindEntryPosted, Event: entry, ID: next()})
	default:
		return nil, failure.Invalid("status", "unknown provider status %d for payout %s", r.Status, payoutID)
	}
	return changes, nil
}

// payoutEntry builds the balanced entry for one of the ledger's own payout
// events, appended right after it in the same batch.
func payoutEntry(srcID string, src proto.Message, payoutID, description string, lines ...*ledgerevents.EntryLine) (*ledgerevents.EntryPosted, error) {
	if err := CheckBalanced(lines); err != nil {
		return nil, fmt.Errorf("entry for payout %s: %w", payoutID, err)
	}
	return &ledgerevents.EntryPosted{
		EntryId: "E-" + srcID,
		Source: &ledgerevents.SourceRef{
			Stream: Stream, EventId: srcID, EventType: string(proto.MessageName(src)),
		},
		Description: description,
		Lines:       lines,
		PayoutId:    payoutID,
	}, nil
}
