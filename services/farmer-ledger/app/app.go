// Package app holds the farmer ledger's command and query handlers: it
// loads aggregates, asks the domain to decide, and appends the outcome.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	brandevents "github.com/furrow/furrow/proto/furrow/brand/events/v1"
	ledgerevents "github.com/furrow/furrow/proto/furrow/ledger/events/v1"
	procurementevents "github.com/furrow/furrow/proto/furrow/procurement/events/v1"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/ident"

	"github.com/furrow/furrow/services/farmer-ledger/domain"
)

// Farmers loads and appends farmer aggregates.
type Farmers interface {
	Load(ctx context.Context, farmerID string) (*domain.Farmer, *eventstore.Requests, error)
	Append(ctx context.Context, f *domain.Farmer, key, fingerprint string, md eventstore.Metadata, changes ...domain.Change) (eventstore.AppendResult, error)
}

// Balances reads the balances read model.
type Balances interface {
	Balance(ctx context.Context, farmerID string) (domain.Balance, error)
}

// Positions waits until a read model reflects a position; Head is the
// position covering everything written so far.
type Positions interface {
	WaitFor(ctx context.Context, pos eventstore.Position) (eventstore.Position, error)
	Head(ctx context.Context) (eventstore.Position, error)
}

// ErrNoBalance means the balances read model has no row for a farmer (yet).
var ErrNoBalance = errors.New("no balance row")

// ErrBusy means the event store refused an append for back-pressure (too
// many atomic batches in flight on the stream): nothing was written, and
// the append may be retried after a pause, like a lost race.
var ErrBusy = errors.New("event store busy")

// retryable reports whether an append failed in a way a reload and a new
// attempt can fix: a lost optimistic-concurrency race or back-pressure.
func retryable(err error) bool {
	return errors.Is(err, eventstore.ErrConflict) || errors.Is(err, ErrBusy)
}

// maxConflictRetries bounds how often a posting reaction reloads and
// retries after losing an optimistic-concurrency race; past it the router
// retries the whole message.
const maxConflictRetries = 16

// Ledger is the farmer ledger's application service.
type Ledger struct {
	farmers   Farmers
	balances  Balances
	positions Positions
	log       *slog.Logger

	directory        Directory
	finance          Finance
	financePositions Positions
	breaks           Breaks
	provider         PaymentProvider
	now              func() time.Time
	keys             Keys
	controls         domain.PayoutControls
	notifier         Notifier
	notices          Notices

	traces       Traces
	traceLotsAt  Positions
	traceSalesAt Positions

	// locks serialises this process's appends to one farmer.
	locks farmerLocks
}

// Deps are what the application service works with.
type Deps struct {
	Farmers Farmers
	// Balances and Positions: the balances read model (farmers and their
	// balances) and its read-your-writes waiter.
	Balances  Balances
	Positions Positions
	Directory Directory
	// Finance and FinancePositions: the finance read model (payouts,
	// entries, account totals, resolutions) and its waiter.
	Finance          Finance
	FinancePositions Positions
	Breaks           Breaks
	Provider         PaymentProvider
	// Keys holds the farmers' data keys (personal data is sealed under
	// them: pii.go).
	Keys Keys
	// PayoutControls: cooling-off after an account change, four-eyes
	// above a threshold (payoutcontrol.go); the zero value has neither.
	PayoutControls domain.PayoutControls
	// Notifier tells farmers about changes to their accounts; nil: nobody
	// is told (the notice is still recorded).
	Notifier Notifier
	// Notices records the notices sent (FarmerNotified).
	Notices Notices
	// Traces and the waiters of its two upstream read models (deliveries
	// on PROCUREMENT, premium events on BRAND); nil without tracing.
	Traces       Traces
	TraceLotsAt  Positions
	TraceSalesAt Positions
	Log          *slog.Logger
	// Now defaults to time.Now.
	Now func() time.Time
}

// New returns the application service.
func New(d Deps) *Ledger {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Log == nil {
		d.Log = slog.Default()
	}
	return &Ledger{
		farmers: d.Farmers, balances: d.Balances, positions: d.Positions, log: d.Log,
		directory: d.Directory, finance: d.Finance, financePositions: d.FinancePositions,
		breaks: d.Breaks, provider: d.Provider, now: d.Now, keys: d.Keys,
		controls: d.PayoutControls, notifier: d.Notifier, notices: d.Notices,
		traces: d.Traces, traceLotsAt: d.TraceLotsAt, traceSalesAt: d.TraceSalesAt,
	}
}

// RegisterFarmer is the command to open a farmer's account.
type RegisterFarmer struct {
	RequestID   string
	Fingerprint string
	Farmer      *ledgerevents.FarmerRegistered
	Meta        eventstore.Metadata
}

// RegisterFarmer opens a farmer's account, once per request id.
func (l *Ledger) RegisterFarmer(ctx context.Context, cmd RegisterFarmer) (eventstore.AppendResult, error) {
	if err := ident.CheckRequestID(cmd.RequestID); err != nil {
		return eventstore.AppendResult{}, err
	}
	if err := ident.Check("farmer_id", cmd.Farmer.GetFarmerId()); err != nil {
		return eventstore.AppendResult{}, err
	}
	key := "ledger.RegisterFarmer:" + cmd.RequestID
	unlock, err := l.locks.lock(ctx, cmd.Farmer.GetFarmerId())
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	defer unlock()
	f, seen, err := l.farmers.Load(ctx, cmd.Farmer.GetFarmerId())
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	if f.Erased() {
		return eventstore.AppendResult{}, failure.FailedPrecondition("farmer %s was erased", f.ID())
	}
	if f.Registered() {
		// A retry is recognised by its fingerprint, which is keyed with
		// the farmer's data key (pii.go: keyedFingerprint).
		dk, err := l.keys.Get(ctx, f.ID())
		if err != nil && !errors.Is(err, ErrNoKey) { // no key: registered before encryption
			return eventstore.AppendResult{}, fmt.Errorf("register farmer %s: data key: %w", f.ID(), err)
		}
		if err == nil {
			if res, ok, err := seen.Check(key, keyedFingerprint(dk, cmd.Fingerprint)); ok || err != nil {
				return res, err
			}
		}
	}
	ev, err := f.Register(cmd.Farmer)
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	dk, err := l.keys.Create(ctx, f.ID())
	if err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("register farmer %s: data key: %w", f.ID(), err)
	}
	if err := sealRegistration(dk, ev); err != nil {
		return eventstore.AppendResult{}, err
	}
	res, err := l.farmers.Append(ctx, f, key, keyedFingerprint(dk, cmd.Fingerprint), cmd.Meta, domain.Change{Kind: domain.KindRegistered, Event: ev})
	if errors.Is(err, eventstore.ErrConflict) {
		// Someone registered the farmer between our load and append.
		return eventstore.AppendResult{}, failure.AlreadyExists("farmer_id", "farmer %s is already registered", f.ID())
	}
	return res, err
}

// UpdatePayoutAccount is the command to change where a farmer is paid.
type UpdatePayoutAccount struct {
	RequestID       string
	Fingerprint     string
	FarmerID        string
	PayoutAccount   string
	ExpectedVersion *uint64
	Meta            eventstore.Metadata
}

// UpdatePayoutAccount changes a farmer's payout account. With an expected
// version, a farmer changed since is a conflict (the caller re-reads).
func (l *Ledger) UpdatePayoutAccount(ctx context.Context, cmd UpdatePayoutAccount) (eventstore.AppendResult, error) {
	if err := ident.CheckRequestID(cmd.RequestID); err != nil {
		return eventstore.AppendResult{}, err
	}
	if err := ident.Check("farmer_id", cmd.FarmerID); err != nil {
		return eventstore.AppendResult{}, err
	}
	key := "ledger.UpdatePayoutAccount:" + cmd.RequestID
	unlock, err := l.locks.lock(ctx, cmd.FarmerID)
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	defer unlock()
	f, seen, err := l.farmers.Load(ctx, cmd.FarmerID)
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	if !f.Registered() || f.Erased() {
		_, err := f.UpdatePayoutAccount(cmd.PayoutAccount) // says which
		return eventstore.AppendResult{}, err
	}
	// Create, not Get: a farmer registered before encryption has no key
	// yet. EraseFarmer destroys the key before it records the erasure and
	// retries when this append wins the race, so a key made here meanwhile
	// does not survive it.
	dk, err := l.keys.Create(ctx, f.ID())
	if err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("update payout account of %s: data key: %w", f.ID(), err)
	}
	fingerprint := keyedFingerprint(dk, cmd.Fingerprint)
	if res, ok, err := seen.Check(key, fingerprint); ok || err != nil {
		return res, err
	}
	if cmd.ExpectedVersion != nil && *cmd.ExpectedVersion != f.Version() {
		return eventstore.AppendResult{}, failure.Conflict(fmt.Errorf("farmer %s is at version %d, not %d: %w",
			f.ID(), f.Version(), *cmd.ExpectedVersion, eventstore.ErrConflict))
	}
	ev, err := f.UpdatePayoutAccount(cmd.PayoutAccount)
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	if ev.SealedPayoutAccount, err = seal(dk, f.ID(), domain.FieldPayoutAccount, ev.GetPayoutAccount()); err != nil {
		return eventstore.AppendResult{}, err
	}
	ev.PayoutAccount = ""
	domain.StartCoolingOff(ev, l.now(), l.controls)
	return l.farmers.Append(ctx, f, key, fingerprint, cmd.Meta, domain.Change{Kind: domain.KindPayoutAccountUpdated, Event: ev})
}

// Farmer returns a registered farmer.
func (l *Ledger) Farmer(ctx context.Context, farmerID string) (*domain.Farmer, error) {
	if err := ident.Check("farmer_id", farmerID); err != nil {
		return nil, err
	}
	f, _, err := l.farmers.Load(ctx, farmerID)
	if err != nil {
		return nil, err
	}
	if !f.Registered() {
		return nil, failure.NotFound("farmer_id", "farmer %s is not registered", farmerID)
	}
	return f, nil
}

// Balance returns a farmer's balance once the read model reflects minPos
// (when given), and the ledger position it reflects.
func (l *Ledger) Balance(ctx context.Context, farmerID string, minPos *eventstore.Position) (domain.Balance, eventstore.Position, error) {
	if err := ident.Check("farmer_id", farmerID); err != nil {
		return domain.Balance{}, eventstore.Position{}, err
	}
	asOf, err := l.positions.WaitFor(ctx, derefPos(minPos))
	if err != nil {
		return domain.Balance{}, eventstore.Position{}, err
	}
	b, err := l.balances.Balance(ctx, farmerID)
	if errors.Is(err, ErrNoBalance) {
		// The read model may lag a fresh registration: ask the stream.
		if _, ferr := l.Farmer(ctx, farmerID); ferr != nil {
			return domain.Balance{}, eventstore.Position{}, ferr
		}
		return domain.Balance{FarmerID: farmerID}, asOf, nil
	}
	return b, asOf, err
}

func derefPos(p *eventstore.Position) eventstore.Position {
	if p == nil {
		return eventstore.Position{}
	}
	return *p
}

// PostEntryOnDeliveryRecorded makes a recorded delivery payable to its
// farmer: one balanced journal entry per DeliveryRecorded event, however
// often the event is delivered.
func (l *Ledger) PostEntryOnDeliveryRecorded(ctx context.Context, src eventstore.Recorded, d *procurementevents.DeliveryRecorded) error {
	desc := fmt.Sprintf("delivery %s: %d g %s at %d fen/kg", d.GetDeliveryId(), d.GetNetGrams(), d.GetProduct(), d.GetPriceFenPerKg())
	return l.post(ctx, src, d.GetFarmerId(), "post-entry-on-delivery-recorded", func(f *domain.Farmer, ref *ledgerevents.SourceRef) (*ledgerevents.EntryPosted, bool, error) {
		return f.PostPayable(ref, d.GetAmountFen(), desc)
	})
}

// PostEntryOnDeliveryCorrected reverses a delivery's previous payable and
// posts its replacement, once per DeliveryCorrected event.
func (l *Ledger) PostEntryOnDeliveryCorrected(ctx context.Context, src eventstore.Recorded, c *procurementevents.DeliveryCorrected) error {
	desc := fmt.Sprintf("delivery %s correction %d: %d g grade %q at %d fen/kg (%s)",
		c.GetDeliveryId(), c.GetCorrectionNumber(), c.GetNetGrams(), c.GetGrade(), c.GetPriceFenPerKg(), c.GetReason())
	return l.post(ctx, src, c.GetFarmerId(), "post-entry-on-delivery-corrected", func(f *domain.Farmer, ref *ledgerevents.SourceRef) (*ledgerevents.EntryPosted, bool, error) {
		return f.PostCorrection(ref, c.GetReversedAmountFen(), c.GetAmountFen(), desc)
	})
}

// PostEntryOnPremiumEarned credits a farmer's premium for a branded sale,
// once per PremiumEarned event.
func (l *Ledger) PostEntryOnPremiumEarned(ctx context.Context, src eventstore.Recorded, p *brandevents.PremiumEarned) error {
	desc := fmt.Sprintf("premium for sale %s: %d g %s at %s, %d fen/kg", p.GetSaleId(), p.GetGrams(), p.GetBrandId(), p.GetChannel(), p.GetFenPerKg())
	return l.post(ctx, src, p.GetFarmerId(), "post-entry-on-premium-earned", func(f *domain.Farmer, ref *ledgerevents.SourceRef) (*ledgerevents.EntryPosted, bool, error) {
		return f.PostPremium(ref, p.GetPremiumFen(), desc)
	})
}

// PostEntryOnPremiumAdjusted moves a farmer's premium by an adjustment's
// exact delta, once per PremiumAdjusted event.
func (l *Ledger) PostEntryOnPremiumAdjusted(ctx context.Context, src eventstore.Recorded, p *brandevents.PremiumAdjusted) error {
	desc := fmt.Sprintf("premium adjustment for sale %s: %+d fen (%s)", p.GetSaleId(), p.GetDeltaFen(), p.GetReason())
	return l.post(ctx, src, p.GetFarmerId(), "post-entry-on-premium-adjusted", func(f *domain.Farmer, ref *ledgerevents.SourceRef) (*ledgerevents.EntryPosted, bool, error) {
		return f.PostPremium(ref, p.GetDeltaFen(), desc)
	})
}

// post appends the entry decide returns for the source event, reloading and
// retrying when a concurrent change to the farmer wins the race.
func (l *Ledger) post(ctx context.Context, src eventstore.Recorded, farmerID, reaction string,
	decide func(*domain.Farmer, *ledgerevents.SourceRef) (*ledgerevents.EntryPosted, bool, error)) error {
	sourceEventID := src.ID
	ref := &ledgerevents.SourceRef{Stream: src.Stream, Sequence: src.Sequence, EventId: src.ID, EventType: src.Type}
	md := eventstore.Metadata{CorrelationID: src.Metadata.CorrelationID, CausationID: src.ID, Actor: "farmer-ledger/" + reaction}
	key := "ledger.post:" + sourceEventID
	if err := ident.Check("farmer_id", farmerID); err != nil {
		return err
	}
	pace := raceBackoff()
	for attempt := 0; ; attempt++ {
		err := l.withFarmer(ctx, farmerID, func(f *domain.Farmer) error {
			entry, already, err := decide(f, ref)
			if err != nil || already {
				return err
			}
			_, err = l.farmers.Append(ctx, f, key, sourceEventID, md, domain.Change{Kind: domain.KindEntryPosted, Event: entry})
			return err
		})
		if !retryable(err) || attempt >= maxConflictRetries {
			return err
		}
		l.log.DebugContext(ctx, "entry append lost a race; retrying", "farmer_id", farmerID, "attempt", attempt)
		// Payout requests contend for the same farmer: back off a little
		// rather than meet them again at once.
		if err := pause(ctx, pace); err != nil {
			return err
		}
	}
}

// withFarmer loads a farmer under this process's lock for it and runs fn,
// which decides and appends. fn's append still expects the loaded version:
// another process may have written meanwhile.
func (l *Ledger) withFarmer(ctx context.Context, farmerID string, fn func(*domain.Farmer) error) error {
	unlock, err := l.locks.lock(ctx, farmerID)
	if err != nil {
		return err
	}
	defer unlock()
	f, _, err := l.farmers.Load(ctx, farmerID)
	if err != nil {
		return err
	}
	return fn(f)
}
