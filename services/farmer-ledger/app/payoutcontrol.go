package app

import (
	"context"
	"fmt"
	"time"

	ledgerevents "github.com/furrow/furrow/proto/furrow/ledger/events/v1"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/ident"

	"github.com/furrow/furrow/services/farmer-ledger/domain"
)

// Notice is what the ledger tells a farmer about its account.
type Notice struct {
	FarmerID string
	// Reason says what it is about (domain.NoticePayoutAccountChanged).
	Reason string
	// Phone is the farmer's registered phone number, in full (the
	// notifier must reach it), or empty when there is none.
	Phone string
	// Cooperative is the farmer's cooperative, or empty.
	Cooperative string
	// Text is the message, with numbers masked.
	Text string
}

// Notifier is the port through which the ledger tells farmers (by text
// message to their registered phone) and their cooperatives about changes
// to their accounts. Notify may be called more than once for one notice
// (at-least-once: a crash after sending and before recording it sends it
// again). adapters.LogNotifier writes notices to the log (development); a
// production notifier sends them through an SMS gateway and the
// cooperatives' channel.
type Notifier interface {
	Notify(ctx context.Context, n Notice) error
}

// Notices records the notices sent to farmers (FarmerNotified), in an
// aggregate of their own per farmer.
type Notices interface {
	// Load returns the version of a farmer's notices and their
	// idempotency keys.
	Load(ctx context.Context, farmerID string) (uint64, *eventstore.Requests, error)
	// Record appends a notice, expecting the notices at version.
	Record(ctx context.Context, version uint64, key string, md eventstore.Metadata, ev *ledgerevents.FarmerNotified) error
}

// NotifyOnPayoutAccountUpdated tells the farmer (at its registered phone)
// and its cooperative that its payout account was changed, and until when
// payouts are held, then records FarmerNotified — once per change, however
// often the event is delivered; a notice sent but not yet recorded is sent
// again.
func (l *Ledger) NotifyOnPayoutAccountUpdated(ctx context.Context, src eventstore.Recorded, ev *ledgerevents.PayoutAccountUpdated) error {
	farmerID := ev.GetFarmerId()
	if err := ident.Check("farmer_id", farmerID); err != nil {
		return err
	}
	key := "ledger.notify:" + src.ID
	md := eventstore.Metadata{CorrelationID: src.Metadata.CorrelationID, CausationID: src.ID, Actor: "farmer-ledger/notify-on-payout-account-updated"}
	pace := raceBackoff()
	for attempt := 0; ; attempt++ {
		err := l.withFarmer(ctx, farmerID, func(f *domain.Farmer) error {
			version, seen, err := l.notices.Load(ctx, farmerID)
			if err != nil {
				return err
			}
			if _, done, _ := seen.Check(key, key); done {
				return nil
			}
			n, recorded, err := l.notice(ctx, f, ev)
			if err != nil {
				return err
			}
			if l.notifier != nil && (n.Phone != "" || n.Cooperative != "") {
				if err := l.notifier.Notify(ctx, n); err != nil {
					return fmt.Errorf("notify farmer %s: %w", farmerID, err)
				}
			} else {
				l.log.WarnContext(ctx, "farmer not notified of a payout account change: no notifier, phone or cooperative", "farmer_id", farmerID)
			}
			recorded.AboutEventId = src.ID
			return l.notices.Record(ctx, version, key, md, recorded)
		})
		if !retryable(err) || attempt >= maxConflictRetries {
			return err
		}
		if err := pause(ctx, pace); err != nil {
			return err
		}
	}
}

// notice is the notice of a payout account change, and its record.
func (l *Ledger) notice(ctx context.Context, f *domain.Farmer, ev *ledgerevents.PayoutAccountUpdated) (Notice, *ledgerevents.FarmerNotified, error) {
	d := f.Snapshot()
	phone, err := l.Reveal(ctx, f.ID(), domain.FieldPhone, d.GetPhone())
	if err != nil {
		return Notice{}, nil, err
	}
	if phone == domain.Erased || phone == domain.Unreadable {
		phone = ""
	}
	account, err := l.Reveal(ctx, f.ID(), domain.FieldPayoutAccount,
		domain.PersonalText(ev.GetPayoutAccount(), ev.GetSealedPayoutAccount()))
	if err != nil {
		return Notice{}, nil, err
	}
	text := fmt.Sprintf("Furrow: the payout account of farmer %s was changed to %s.", f.ID(), domain.Mask(account))
	if until := ev.GetCoolingOffUntil(); until != nil {
		text += fmt.Sprintf(" No payout goes to it before %s.", until.AsTime().UTC().Format(time.RFC3339))
	}
	text += " If the farmer did not ask for this, contact the cooperative or the platform at once."
	n := Notice{FarmerID: f.ID(), Reason: domain.NoticePayoutAccountChanged, Phone: phone, Cooperative: d.GetCooperative(), Text: text}
	return n, &ledgerevents.FarmerNotified{
		FarmerId: f.ID(), Reason: n.Reason, Phone: phone != "", Cooperative: n.Cooperative,
	}, nil
}

// ApprovePayout is the command to approve a payout waiting for a second
// approver. The approver is Meta.Actor.
type ApprovePayout struct {
	RequestID   string
	Fingerprint string
	PayoutID    string
	Meta        eventstore.Metadata
}

// ApprovePayout records the approval of a payout above the four-eyes
// threshold by someone other than its requester (the domain refuses the
// requester); the saga then sends it. Once per request id.
func (l *Ledger) ApprovePayout(ctx context.Context, cmd ApprovePayout) (domain.Payout, eventstore.AppendResult, error) {
	key := "ledger.ApprovePayout:" + cmd.RequestID
	return l.decidePayout(ctx, cmd.RequestID, cmd.PayoutID, key, cmd.Fingerprint, cmd.Meta,
		func(f *domain.Farmer) ([]domain.Change, error) {
			ev, err := f.ApprovePayout(cmd.PayoutID, cmd.Meta.Actor)
			if err != nil {
				return nil, err
			}
			return []domain.Change{{Kind: domain.KindPayoutApproved, Event: ev}}, nil
		})
}

// RejectPayout is the command to reject a payout waiting for approval.
type RejectPayout struct {
	RequestID   string
	Fingerprint string
	PayoutID    string
	Reason      string
	Meta        eventstore.Metadata
}

// RejectPayout records the rejection of a payout waiting for approval and
// releases its hold. Once per request id.
func (l *Ledger) RejectPayout(ctx context.Context, cmd RejectPayout) (domain.Payout, eventstore.AppendResult, error) {
	key := "ledger.RejectPayout:" + cmd.RequestID
	return l.decidePayout(ctx, cmd.RequestID, cmd.PayoutID, key, cmd.Fingerprint, cmd.Meta,
		func(f *domain.Farmer) ([]domain.Change, error) {
			return f.RejectPayout(cmd.PayoutID, cmd.Meta.Actor, cmd.Reason, eventIDs(key))
		})
}

// decidePayout loads the payout's farmer, recognises a retry, decides and
// appends, reloading and deciding again after a lost race. It returns the
// payout as the decision left it.
func (l *Ledger) decidePayout(ctx context.Context, requestID, payoutID, key, fingerprint string, md eventstore.Metadata,
	decide func(*domain.Farmer) ([]domain.Change, error)) (domain.Payout, eventstore.AppendResult, error) {
	if err := ident.CheckRequestID(requestID); err != nil {
		return domain.Payout{}, eventstore.AppendResult{}, err
	}
	farmerID, ok := domain.FarmerOfPayout(payoutID)
	if !ok {
		return domain.Payout{}, eventstore.AppendResult{}, failure.NotFound("payout_id", "no payout %q (payout ids read PO-<farmer id>-<n>)", payoutID)
	}
	pace := raceBackoff()
	for attempt := 1; ; attempt++ {
		var p domain.Payout
		var res eventstore.AppendResult
		err := l.withFarmerRequests(ctx, farmerID, func(f *domain.Farmer, seen *eventstore.Requests) error {
			if r, done, err := seen.Check(key, fingerprint); done || err != nil {
				if err != nil {
					return err
				}
				res, p = r, mustPayout(f, payoutID)
				return nil
			}
			changes, err := decide(f)
			if err != nil {
				return err
			}
			if res, err = l.farmers.Append(ctx, f, key, fingerprint, md, changes...); err != nil {
				return err
			}
			for i, c := range changes {
				f.Apply(res.First+uint64(i), c.Event)
			}
			p = mustPayout(f, payoutID)
			return nil
		})
		switch {
		case err == nil:
			return p, res, nil
		case !retryable(err):
			return domain.Payout{}, eventstore.AppendResult{}, err
		case attempt >= maxPayoutAttempts:
			return domain.Payout{}, eventstore.AppendResult{}, failure.Conflict(fmt.Errorf(
				"payout %s lost %d races with concurrent changes: %w", payoutID, attempt, err))
		}
		if err := pause(ctx, pace); err != nil {
			return domain.Payout{}, eventstore.AppendResult{}, err
		}
	}
}

// mustPayout returns a payout the farmer has (a decision about it was
// recorded, so it does).
func mustPayout(f *domain.Farmer, payoutID string) domain.Payout {
	p, _ := f.Payout(payoutID)
	return p
}

// SendPayoutOnPayoutApproved is the payout saga's step for a payout a
// second approver released: it sends it like SendPayoutOnPayoutRequested.
func (l *Ledger) SendPayoutOnPayoutApproved(ctx context.Context, src eventstore.Recorded, ev *ledgerevents.PayoutApproved) error {
	return l.sendPayout(ctx, src, ev.GetFarmerId(), ev.GetPayoutId(), "farmer-ledger/send-payout-on-payout-approved")
}

// withFarmerRequests is withFarmer for deciders that also need the
// farmer's idempotency keys (to recognise a retry).
func (l *Ledger) withFarmerRequests(ctx context.Context, farmerID string, fn func(*domain.Farmer, *eventstore.Requests) error) error {
	unlock, err := l.locks.lock(ctx, farmerID)
	if err != nil {
		return err
	}
	defer unlock()
	f, seen, err := l.farmers.Load(ctx, farmerID)
	if err != nil {
		return err
	}
	return fn(f, seen)
}
