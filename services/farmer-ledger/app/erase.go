package app

import (
	"context"
	"fmt"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/ident"

	"github.com/furrow/furrow/services/farmer-ledger/domain"
)

// EraseFarmer is the command to erase a farmer's personal data.
type EraseFarmer struct {
	RequestID   string
	Fingerprint string
	FarmerID    string
	Meta        eventstore.Metadata
}

// EraseFarmer erases a farmer's personal data by crypto-shredding: it
// destroys the farmer's data key, then records FarmerErased. Every sealed
// copy of the farmer's name, phone and payout account — in the stream, in
// read models, in backups of either — is unreadable from then on; the
// journal and balances, which hold no personal data, are untouched.
//
// The key goes first: once the call has started, a failure leaves the
// data unreadable rather than an erasure recorded over a key that still
// exists. A retry (the same request id, or any erasure of an erased
// farmer) destroys the key again, which finishes an erasure that failed
// between the two steps. A concurrent change to the farmer (an entry
// posted meanwhile) makes it reload and try again.
func (l *Ledger) EraseFarmer(ctx context.Context, cmd EraseFarmer) (eventstore.AppendResult, error) {
	if err := ident.CheckRequestID(cmd.RequestID); err != nil {
		return eventstore.AppendResult{}, err
	}
	if err := ident.Check("farmer_id", cmd.FarmerID); err != nil {
		return eventstore.AppendResult{}, err
	}
	key := "ledger.EraseFarmer:" + cmd.RequestID
	pace := raceBackoff()
	for attempt := 1; ; attempt++ {
		res, err := l.eraseOnce(ctx, cmd, key)
		switch {
		case err == nil:
			return res, nil
		case !retryable(err):
			return eventstore.AppendResult{}, err
		case attempt >= maxPayoutAttempts:
			return eventstore.AppendResult{}, failure.Conflict(fmt.Errorf(
				"erasure of farmer %s lost %d races with concurrent changes: %w", cmd.FarmerID, attempt, err))
		}
		if err := pause(ctx, pace); err != nil {
			return eventstore.AppendResult{}, err
		}
	}
}

// eraseOnce is one attempt of EraseFarmer, under this process's lock for
// the farmer.
func (l *Ledger) eraseOnce(ctx context.Context, cmd EraseFarmer, key string) (eventstore.AppendResult, error) {
	unlock, err := l.locks.lock(ctx, cmd.FarmerID)
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	defer unlock()
	f, seen, err := l.farmers.Load(ctx, cmd.FarmerID)
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	if res, ok, err := seen.Check(key, cmd.Fingerprint); ok || err != nil {
		if err != nil {
			return res, err
		}
		return res, l.destroyKey(ctx, f.ID())
	}
	ev, err := f.Erase()
	if err != nil {
		if f.Erased() {
			err = errorsJoinFirst(err, l.destroyKey(ctx, f.ID()))
		}
		return eventstore.AppendResult{}, err
	}
	if err := l.destroyKey(ctx, f.ID()); err != nil {
		return eventstore.AppendResult{}, err
	}
	res, err := l.farmers.Append(ctx, f, key, cmd.Fingerprint, cmd.Meta, domain.Change{Kind: domain.KindErased, Event: ev})
	if err == nil {
		l.log.InfoContext(ctx, "farmer erased", "farmer_id", f.ID(), "key_id", ev.GetKeyId(), "actor", cmd.Meta.Actor, "seq", res.Last)
	}
	return res, err
}

// destroyKey destroys a farmer's data key.
func (l *Ledger) destroyKey(ctx context.Context, farmerID string) error {
	if err := l.keys.Destroy(ctx, farmerID); err != nil {
		return fmt.Errorf("erase farmer %s: destroy its data key: %w", farmerID, err)
	}
	return nil
}

// errorsJoinFirst returns the second error when there is one (the key
// could not be destroyed: that is what the caller must know and retry),
// else the first.
func errorsJoinFirst(first, second error) error {
	if second != nil {
		return second
	}
	return first
}
