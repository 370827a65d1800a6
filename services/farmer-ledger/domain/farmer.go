// Package domain holds the farmer ledger's aggregates and rules: farmer
// accounts, the double-entry journal posted to them, payouts (hold, settle,
// release), and the pure parts of finance's work: reading a provider's
// settlement file, reconciling it with the ledger's payouts, and the trial
// balance. It does no I/O; the aggregates are rebuilt only from their
// events.
package domain

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	ledgerevents "github.com/furrow/furrow/proto/furrow/ledger/events/v1"

	"github.com/furrow/furrow/pkg/cowmap"
	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/ident"
)

// Stream is the ledger's event stream and Subjects the subjects it holds.
const (
	Stream   = "LEDGER"
	Subjects = "ledger.>"
)

// FarmerSubject is the subject of a farmer's event of the given kind.
func FarmerSubject(farmerID, kind string) string { return "ledger.farmer." + farmerID + "." + kind }

// FarmerAggregate is the subject filter covering all of a farmer's events.
func FarmerAggregate(farmerID string) string { return "ledger.farmer." + farmerID + ".>" }

// Event kinds (the last subject token).
const (
	KindRegistered           = "farmer_registered"
	KindPayoutAccountUpdated = "payout_account_updated"
	KindEntryPosted          = "entry_posted"
	KindPayoutRequested      = "payout_requested"
	KindPayoutSent           = "payout_sent"
	KindPayoutSettled        = "payout_settled"
	KindPayoutFailed         = "payout_failed"
)

// Change is one event to append to a farmer, with its kind (the last
// subject token). ID, when set, is the event's id: an entry appended in the
// same batch as its source event refers to the source by this id.
type Change struct {
	Kind  string
	Event proto.Message
	ID    string
}

// Farmer is a farmer's account, rebuilt from its events.
type Farmer struct {
	id            string
	registered    bool
	name          string
	county        string
	cooperative   string
	phone         string
	payoutAccount string
	version       uint64
	// erased: FarmerErased was applied. name, phone and payoutAccount are
	// personal texts (pii.go): sealed, clear in old events, or Erased.
	erased bool
	// coolingOffUntil: payouts are refused before it (payoutcontrol.go).
	coolingOffUntil time.Time
	// posted holds the source event ids that already have an entry: an
	// entry is posted once per source event. It grows with every entry,
	// so it is a cowmap: a loaded farmer is a copy of a cached one.
	posted cowmap.Map[string, struct{}]
	// balance is the farmer's accounts as the entries posted so far leave
	// them: the command side's own view, so that a payout's check against
	// available never depends on an eventually consistent read model.
	balance Balance
	// overflow, when set, says why balance stopped following the entries:
	// one took an account beyond int64. The domain never writes such an
	// entry, but streams written before it checked may hold one. The
	// balance stays as it was before that entry, and the farmer refuses
	// every posting and payout, rather than act on a wrapped number.
	overflow error
	// payouts by id, and payout ids by client request id.
	payouts   cowmap.Map[string, Payout]
	byRequest cowmap.Map[string, string]
}

// NewFarmer returns the empty aggregate for id, ready to replay events.
func NewFarmer(id string) *Farmer {
	return &Farmer{id: id, balance: Balance{FarmerID: id}}
}

// Apply folds one recorded event into the aggregate.
func (f *Farmer) Apply(seq uint64, ev proto.Message) {
	f.version = seq
	switch e := ev.(type) {
	case *ledgerevents.FarmerRegistered:
		f.registered = true
		f.name, f.county, f.cooperative = PersonalText(e.GetName(), e.GetSealedName()), e.GetCounty(), e.GetCooperative()
		f.phone = PersonalText(e.GetPhone(), e.GetSealedPhone())
		f.payoutAccount = PersonalText(e.GetPayoutAccount(), e.GetSealedPayoutAccount())
	case *ledgerevents.PayoutAccountUpdated:
		f.payoutAccount = PersonalText(e.GetPayoutAccount(), e.GetSealedPayoutAccount())
		f.coolingOffUntil = time.Time{}
		if e.GetCoolingOffUntil() != nil {
			f.coolingOffUntil = e.GetCoolingOffUntil().AsTime()
		}
	case *ledgerevents.FarmerErased:
		f.applyErased()
	case *ledgerevents.EntryPosted:
		f.posted.Set(e.GetSource().GetEventId(), struct{}{})
		if f.overflow != nil {
			break
		}
		d, err := Effect(f.id, e.GetLines())
		var next Balance
		if err == nil {
			next, err = f.balance.Plus(d)
		}
		if err != nil {
			f.overflow = fmt.Errorf("entry %s at %s:%d: %w", e.GetEntryId(), Stream, seq, err)
			break
		}
		f.balance = next
	case *ledgerevents.PayoutRequested:
		status := PayoutStatusRequested
		if e.GetApprovalRequired() {
			status = PayoutStatusPendingApproval
		}
		f.payouts.Set(e.GetPayoutId(), Payout{
			ID: e.GetPayoutId(), FarmerID: f.id, RequestID: e.GetRequestId(), AmountFen: e.GetAmountFen(),
			Currency: e.GetCurrency(), Account: PersonalText(e.GetPayoutAccount(), e.GetSealedPayoutAccount()),
			Status: status, RequestedBy: e.GetRequestedBy(),
		})
		f.byRequest.Set(e.GetRequestId(), e.GetPayoutId())
	case *ledgerevents.PayoutApproved:
		f.updatePayout(e.GetPayoutId(), func(p *Payout) { p.Status = PayoutStatusRequested })
	case *ledgerevents.PayoutRejected:
		f.updatePayout(e.GetPayoutId(), func(p *Payout) { p.Status, p.Reason = PayoutStatusRejected, e.GetReason() })
	case *ledgerevents.PayoutSent:
		f.updatePayout(e.GetPayoutId(), func(p *Payout) {
			p.Status, p.ProviderRef = PayoutStatusSent, e.GetProviderReference()
		})
	case *ledgerevents.PayoutSettled:
		f.updatePayout(e.GetPayoutId(), func(p *Payout) {
			p.Status, p.ProviderRef = PayoutStatusSettled, e.GetProviderReference()
		})
	case *ledgerevents.PayoutFailed:
		f.updatePayout(e.GetPayoutId(), func(p *Payout) {
			p.Status, p.ProviderRef, p.Reason = PayoutStatusFailed, e.GetProviderReference(), e.GetReason()
		})
	}
}

// updatePayout changes a known payout (payouts are values: copies of the
// farmer must not see each other's changes).
func (f *Farmer) updatePayout(payoutID string, change func(*Payout)) {
	if p, ok := f.payouts.Get(payoutID); ok {
		change(&p)
		f.payouts.Set(payoutID, p)
	}
}

// Clone returns a deep copy of the farmer: applying events to either never
// changes the other. Its indexes are cowmaps, so a clone costs about the
// square root of the farmer's entries, not all of them.
func (f *Farmer) Clone() *Farmer {
	c := *f
	c.posted = f.posted.Clone()
	c.payouts = f.payouts.Clone()
	c.byRequest = f.byRequest.Clone()
	return &c
}

// ID returns the farmer id.
func (f *Farmer) ID() string { return f.id }

// Registered reports whether the farmer has been registered.
func (f *Farmer) Registered() bool { return f.registered }

// Version is the stream sequence of the farmer's last event (0: none).
func (f *Farmer) Version() uint64 { return f.version }

// Snapshot returns the account details. Name, phone and payout account are
// personal texts (sealed, clear in old events, or Erased): see pii.go.
func (f *Farmer) Snapshot() ledgerevents.FarmerRegistered {
	return ledgerevents.FarmerRegistered{
		FarmerId: f.id, Name: f.name, County: f.county, Cooperative: f.cooperative,
		Phone: f.phone, PayoutAccount: f.payoutAccount,
	}
}

// Balance returns the farmer's accounts as the farmer's own entries leave
// them (the command side's view, always current). After an entry that
// overflowed (Overflow), it is the balance before that entry.
func (f *Farmer) Balance() Balance { return f.balance }

// Overflow returns why the farmer's balance stopped following its entries
// (an entry in the stream took an account beyond int64), or nil.
func (f *Farmer) Overflow() error { return f.overflow }

// Payout returns a copy of the farmer's payout with the given id.
func (f *Farmer) Payout(payoutID string) (Payout, bool) {
	return f.payouts.Get(payoutID)
}

// PayoutByRequest returns the payout a client request id created.
func (f *Farmer) PayoutByRequest(requestID string) (Payout, bool) {
	id, ok := f.byRequest.Get(requestID)
	if !ok {
		return Payout{}, false
	}
	return f.Payout(id)
}

// HasPosted reports whether an entry for the source event exists.
func (f *Farmer) HasPosted(sourceEventID string) bool { return f.posted.Has(sourceEventID) }

// Register validates a registration and returns its event. Registering an
// already registered farmer is AlreadyExists.
func (f *Farmer) Register(r *ledgerevents.FarmerRegistered) (*ledgerevents.FarmerRegistered, error) {
	if err := ident.Check("farmer_id", r.GetFarmerId()); err != nil {
		return nil, err
	}
	if r.GetName() == "" {
		return nil, failure.Invalid("name", "is required")
	}
	if r.GetCounty() == "" {
		return nil, failure.Invalid("county", "is required")
	}
	if f.registered {
		return nil, failure.AlreadyExists("farmer_id", "farmer %s is already registered", f.id)
	}
	return proto.CloneOf(r), nil
}

// UpdatePayoutAccount returns the event changing the payout account; the
// caller seals the account before appending it.
func (f *Farmer) UpdatePayoutAccount(account string) (*ledgerevents.PayoutAccountUpdated, error) {
	if !f.registered {
		return nil, failure.NotFound("farmer_id", "farmer %s is not registered", f.id)
	}
	if f.erased {
		return nil, failure.FailedPrecondition("farmer %s was erased: it takes no new payout account", f.id)
	}
	if account == "" {
		return nil, failure.Invalid("payout_account", "is required")
	}
	return &ledgerevents.PayoutAccountUpdated{FarmerId: f.id, PayoutAccount: account}, nil
}

// ErrUnknownFarmer is returned when an entry is posted for a farmer that
// was never registered.
var ErrUnknownFarmer = fmt.Errorf("farmer not registered: %w", failure.NotFound("farmer_id", "unknown farmer"))
