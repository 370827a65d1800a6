// Package domain holds the farmer ledger's aggregates and rules: farmer
// accounts and the journal entries posted to them. It does no I/O; the
// aggregates are rebuilt only from their events.
package domain

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	ledgerevents "github.com/furrow/furrow/proto/furrow/ledger/events/v1"

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
)

// Change is one event to append to a farmer, with its kind (the last
// subject token).
type Change struct {
	Kind  string
	Event proto.Message
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
	// posted holds the source event ids that already have an entry: an
	// entry is posted once per source event.
	posted map[string]bool
}

// NewFarmer returns the empty aggregate for id, ready to replay events.
func NewFarmer(id string) *Farmer { return &Farmer{id: id, posted: map[string]bool{}} }

// Apply folds one recorded event into the aggregate.
func (f *Farmer) Apply(seq uint64, ev proto.Message) {
	f.version = seq
	switch e := ev.(type) {
	case *ledgerevents.FarmerRegistered:
		f.registered = true
		f.name, f.county, f.cooperative = e.GetName(), e.GetCounty(), e.GetCooperative()
		f.phone, f.payoutAccount = e.GetPhone(), e.GetPayoutAccount()
	case *ledgerevents.PayoutAccountUpdated:
		f.payoutAccount = e.GetPayoutAccount()
	case *ledgerevents.EntryPosted:
		f.posted[e.GetSource().GetEventId()] = true
	}
}

// ID returns the farmer id.
func (f *Farmer) ID() string { return f.id }

// Registered reports whether the farmer has been registered.
func (f *Farmer) Registered() bool { return f.registered }

// Version is the stream sequence of the farmer's last event (0: none).
func (f *Farmer) Version() uint64 { return f.version }

// Snapshot returns the account details.
func (f *Farmer) Snapshot() ledgerevents.FarmerRegistered {
	return ledgerevents.FarmerRegistered{
		FarmerId: f.id, Name: f.name, County: f.county, Cooperative: f.cooperative,
		Phone: f.phone, PayoutAccount: f.payoutAccount,
	}
}

// HasPosted reports whether an entry for the source event exists.
func (f *Farmer) HasPosted(sourceEventID string) bool { return f.posted[sourceEventID] }

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

// UpdatePayoutAccount returns the event changing the payout account.
func (f *Farmer) UpdatePayoutAccount(account string) (*ledgerevents.PayoutAccountUpdated, error) {
	if !f.registered {
		return nil, failure.NotFound("farmer_id", "farmer %s is not registered", f.id)
	}
	if account == "" {
		return nil, failure.Invalid("payout_account", "is required")
	}
	return &ledgerevents.PayoutAccountUpdated{FarmerId: f.id, PayoutAccount: account}, nil
}

// ErrUnknownFarmer is returned when an entry is posted for a farmer that
// was never registered.
var ErrUnknownFarmer = fmt.Errorf("farmer not registered: %w", failure.NotFound("farmer_id", "unknown farmer"))
