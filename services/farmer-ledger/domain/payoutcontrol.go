package domain

import (
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	ledgerevents "github.com/furrow/furrow/proto/furrow/ledger/events/v1"

	"github.com/furrow/furrow/pkg/failure"
)

// Payout controls: the rules that make a stolen platform identity unable
// to change a farmer's payout account and empty the balance at once.
//
//   - Cooling-off: a change of payout account starts a period during
//     which payouts are refused (the change's event records its end), and
//     the farmer's phone and cooperative are told at once.
//   - Four-eyes: a payout above a threshold is held (its hold placed) but
//     not sent until someone other than its requester approves it.

// The statuses of a payout above the four-eyes threshold: held, waiting
// for a second approver (then requested, and on as any payout), or
// rejected (final, the hold released).
const (
	PayoutStatusPendingApproval PayoutStatus = iota + PayoutStatusFailed + 1
	PayoutStatusRejected
)

// PayoutControls are the payout rules a deployment configures.
type PayoutControls struct {
	// CoolingOff is how long after a change of payout account payouts are
	// refused; 0: not at all.
	CoolingOff time.Duration
	// ApprovalAboveFen: a payout of more than this many fen needs a second
	// approver; 0: none does.
	ApprovalAboveFen int64
}

// Production defaults of the payout controls (the farmer-ledger binary's
// flags). furrow dev has no cooling-off unless asked, so that its
// walkthroughs can change an account and pay at once.
const (
	DefaultCoolingOff       = 24 * time.Hour
	DefaultApprovalAboveFen = 1_000_000 // 10,000 yuan
)

// Event kinds of the payout controls.
const (
	KindPayoutApproved = "payout_approved"
	KindPayoutRejected = "payout_rejected"
	KindFarmerNotified = "farmer_notified"
)

// NoticeSubject is the subject of a notice event about a farmer. Notices
// are an aggregate of their own, not the farmer's: recording one must not
// move the farmer's version.
func NoticeSubject(farmerID, kind string) string { return "ledger.notice." + farmerID + "." + kind }

// NoticeAggregate is the subject filter covering a farmer's notices.
func NoticeAggregate(farmerID string) string { return "ledger.notice." + farmerID + ".>" }

// NoticePayoutAccountChanged is the reason of the notice a change of
// payout account sends (FarmerNotified.reason).
const NoticePayoutAccountChanged = "payout_account_changed"

// StartCoolingOff stamps a change of payout account made at now with the
// end of its cooling-off period, if c has one.
func StartCoolingOff(ev *ledgerevents.PayoutAccountUpdated, now time.Time, c PayoutControls) {
	if c.CoolingOff > 0 {
		ev.CoolingOffUntil = timestamppb.New(now.Add(c.CoolingOff).UTC())
	}
}

// CoolingOffUntil is when payouts are allowed again after the last change
// of payout account (zero: they are).
func (f *Farmer) CoolingOffUntil() time.Time { return f.coolingOffUntil }

// checkCoolingOff refuses a payout requested at now while the payout
// account is cooling off, naming when that ends.
func (f *Farmer) checkCoolingOff(now time.Time) error {
	if f.coolingOffUntil.IsZero() || !now.Before(f.coolingOffUntil) {
		return nil
	}
	return failure.FailedPrecondition("farmer %s's payout account was changed: payouts are held until %s (cooling-off; the farmer was notified)",
		f.id, f.coolingOffUntil.UTC().Format(time.RFC3339))
}

// needsApproval reports whether a payout of amount needs a second approver.
func needsApproval(amount, aboveFen int64) bool { return aboveFen > 0 && amount > aboveFen }

// ApprovePayout decides the approval of a payout waiting for it: approver
// must not be its requester (four-eyes).
func (f *Farmer) ApprovePayout(payoutID, approver string) (*ledgerevents.PayoutApproved, error) {
	p, err := f.pendingPayout(payoutID)
	if err != nil {
		return nil, err
	}
	if approver == "" {
		return nil, failure.FailedPrecondition("payout %s: an approval needs the approver's identity", payoutID)
	}
	if approver == p.RequestedBy {
		return nil, failure.FailedPrecondition("payout %s: %s requested it and may not approve it too (four-eyes: another finance identity must)", payoutID, approver)
	}
	return &ledgerevents.PayoutApproved{PayoutId: p.ID, FarmerId: f.id, ApprovedBy: approver}, nil
}

// RejectPayout decides the rejection of a payout waiting for approval: the
// events to append atomically — PayoutRejected and the entry releasing its
// hold.
func (f *Farmer) RejectPayout(payoutID, by, reason string, ids EventIDs) ([]Change, error) {
	p, err := f.pendingPayout(payoutID)
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(reason) == "" {
		return nil, failure.Invalid("reason", "is required")
	}
	ev := &ledgerevents.PayoutRejected{PayoutId: p.ID, FarmerId: f.id, AmountFen: p.AmountFen, RejectedBy: by, Reason: reason}
	entry, err := payoutEntry(ids(0), ev, p.ID, fmt.Sprintf("payout %s rejected by %s: hold of %d fen released", p.ID, by, p.AmountFen),
		&ledgerevents.EntryLine{Account: AccountPayoutClearing, DebitFen: p.AmountFen},
		&ledgerevents.EntryLine{Account: FarmerAccount(f.id, FarmerHeld), CreditFen: p.AmountFen},
	)
	if err != nil {
		return nil, err
	}
	if err := f.accepts(entry.GetLines()); err != nil {
		return nil, err
	}
	entry.FarmerId = f.id
	return []Change{{Kind: KindPayoutRejected, Event: ev, ID: ids(0)}, {Kind: KindEntryPosted, Event: entry, ID: ids(1)}}, nil
}

func (f *Farmer) pendingPayout(payoutID string) (Payout, error) {
	p, ok := f.payouts.Get(payoutID)
	if !ok {
		return Payout{}, failure.NotFound("payout_id", "farmer %s has no payout %s", f.id, payoutID)
	}
	if p.Status != PayoutStatusPendingApproval {
		return Payout{}, failure.FailedPrecondition("payout %s is %s, not waiting for approval", payoutID, p.Status)
	}
	return p, nil
}

// FarmerOfPayout returns the farmer a payout id belongs to: the ledger
// names payouts "PO-<farmer id>-<n>".
func FarmerOfPayout(payoutID string) (string, bool) {
	rest, ok := strings.CutPrefix(payoutID, "PO-")
	i := strings.LastIndexByte(rest, '-')
	if !ok || i <= 0 || i == len(rest)-1 {
		return "", false
	}
	for _, c := range rest[i+1:] {
		if c < '0' || c > '9' {
			return "", false
		}
	}
	return rest[:i], true
}
