package app

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/google/uuid"

	ledgerevents "github.com/furrow/furrow/proto/furrow/ledger/events/v1"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/ident"

	"github.com/furrow/furrow/services/farmer-ledger/domain"
)

// Payout retries. Concurrent requests for one farmer serialise through the
// aggregate's version: each round one append wins and the others reload
// and decide again against the new balance (the same holds when the server
// pushes back on too many atomic batches in flight). maxPayoutAttempts is
// sized so that dozens of simultaneous requests for one farmer normally all
// get their turn; past it the caller gets Aborted and may retry.
const (
	maxPayoutAttempts = 64
	payoutBackoffBase = 2 * time.Millisecond
	payoutBackoffMax  = 64 * time.Millisecond
)

// providerTimeout bounds one call to the payment provider. A call that runs
// out is retried with the same payout id, which the provider de-duplicates.
const providerTimeout = 10 * time.Second

// eventIDSpace namespaces the ids the ledger picks for its own events.
var eventIDSpace = uuid.MustParse("0b6f7c1e-3d2a-5e8f-9a4b-7c6d5e4f3a2b")

// eventIDs names the events of the append made under key, deterministically,
// so that a retried command produces the same ids.
func eventIDs(key string) domain.EventIDs {
	return func(i int) string { return uuid.NewSHA1(eventIDSpace, []byte(key+"#"+strconv.Itoa(i))).String() }
}

// RequestPayout is the command to pay a farmer out.
type RequestPayout struct {
	RequestID    string
	Fingerprint  string
	FarmerID     string
	AmountFen    int64
	AllAvailable bool
	Meta         eventstore.Metadata
}

// RequestPayout places a payout's hold and records the request, once per
// request id. The check against available runs on the aggregate, never on
// a read model, and the append expects the version it checked: a
// concurrent payout or entry makes it reload and decide again.
func (l *Ledger) RequestPayout(ctx context.Context, cmd RequestPayout) (domain.Payout, eventstore.AppendResult, error) {
	if err := ident.CheckRequestID(cmd.RequestID); err != nil {
		return domain.Payout{}, eventstore.AppendResult{}, err
	}
	if err := ident.Check("farmer_id", cmd.FarmerID); err != nil {
		return domain.Payout{}, eventstore.AppendResult{}, err
	}
	key := "ledger.RequestPayout:" + cmd.RequestID
	pace := raceBackoff()
	for attempt := 1; ; attempt++ {
		p, res, err := l.requestPayoutOnce(ctx, cmd, key)
		switch {
		case err == nil:
			return p, res, nil
		case !retryable(err):
			return domain.Payout{}, eventstore.AppendResult{}, err
		case attempt >= maxPayoutAttempts:
			return domain.Payout{}, eventstore.AppendResult{}, failure.Conflict(fmt.Errorf(
				"payout for farmer %s lost %d races with concurrent changes: %w", cmd.FarmerID, attempt, err))
		}
		l.log.DebugContext(ctx, "payout append lost a race; retrying", "farmer_id", cmd.FarmerID, "attempt", attempt)
		if err := pause(ctx, pace); err != nil {
			return domain.Payout{}, eventstore.AppendResult{}, err
		}
	}
}

// requestPayoutOnce is one attempt of RequestPayout, under this process's
// lock for the farmer.
func (l *Ledger) requestPayoutOnce(ctx context.Context, cmd RequestPayout, key string) (domain.Payout, eventstore.AppendResult, error) {
	unlock, err := l.locks.lock(ctx, cmd.FarmerID)
	if err != nil {
		return domain.Payout{}, eventstore.AppendResult{}, err
	}
	defer unlock()
	f, seen, err := l.farmers.Load(ctx, cmd.FarmerID)
	if err != nil {
		return domain.Payout{}, eventstore.AppendResult{}, err
	}
	if res, ok, err := seen.Check(key, cmd.Fingerprint); ok || err != nil {
		if err != nil {
			return domain.Payout{}, eventstore.AppendResult{}, err
		}
		return l.requested(f, cmd.RequestID, res)
	}
	p, changes, err := f.RequestPayout(domain.PayoutRequest{
		RequestID: cmd.RequestID, AmountFen: cmd.AmountFen, AllAvailable: cmd.AllAvailable,
		Now: l.now(), RequestedBy: cmd.Meta.Actor, ApprovalAboveFen: l.controls.ApprovalAboveFen,
	}, eventIDs(key))
	if err != nil {
		return domain.Payout{}, eventstore.AppendResult{}, err
	}
	res, err := l.farmers.Append(ctx, f, key, cmd.Fingerprint, cmd.Meta, changes...)
	if errors.Is(err, eventstore.ErrConflict) {
		return domain.Payout{}, eventstore.AppendResult{}, l.explainConflict(ctx, f, cmd.RequestID, err)
	}
	if err != nil || !res.Duplicate {
		return p, res, err
	}
	// An earlier call with this request id landed after our load: its
	// payout is the answer, not the one decided here (loaded from a
	// replica that holds it).
	if err := eventstore.Reflecting(ctx, res.Last, func(ctx context.Context) (uint64, error) {
		var err error
		if f, _, err = l.farmers.Load(ctx, cmd.FarmerID); err != nil {
			return 0, err
		}
		return f.Version(), nil
	}); err != nil {
		return domain.Payout{}, eventstore.AppendResult{}, err
	}
	return l.requested(f, cmd.RequestID, res)
}

// explainConflict tells a lost race from a reused request id. The server
// refuses an atomic batch whose message ids it has seen (within its
// duplicate window) with the same error as a failed expectation; when the
// farmer has not changed since it was loaded, no race was lost, so the
// request id must have been used for another farmer's payout.
func (l *Ledger) explainConflict(ctx context.Context, f *domain.Farmer, requestID string, conflict error) error {
	now, _, err := l.farmers.Load(ctx, f.ID())
	if err != nil {
		return conflict
	}
	if now.Version() == f.Version() {
		return failure.AlreadyExists("request_id", "request id %s was already used for another request", requestID)
	}
	return conflict
}

// requested answers a retried payout request from the farmer's events.
func (l *Ledger) requested(f *domain.Farmer, requestID string, res eventstore.AppendResult) (domain.Payout, eventstore.AppendResult, error) {
	p, ok := f.PayoutByRequest(requestID)
	if !ok {
		return domain.Payout{}, eventstore.AppendResult{}, fmt.Errorf("request %s was applied to farmer %s but made no payout", requestID, f.ID())
	}
	return p, res, nil
}

// raceBackoff paces the retries of an append that lost a race: before the
// n-th retry a random wait between half and all of 2ms<<n, at most 64ms,
// so losers of one race do not meet again in the next (the library's
// randomisation of ±1/3 around three quarters of that doubling wait).
// The loops using it stay hand-written: each ends differently (Aborted
// after its own bound, under the farmer's lock, reporting how many races
// it lost), which backoff.Retry's options would only obscure.
func raceBackoff() *backoff.ExponentialBackOff {
	b := &backoff.ExponentialBackOff{
		InitialInterval:     3 * payoutBackoffBase / 2,
		RandomizationFactor: 1.0 / 3,
		Multiplier:          2,
		MaxInterval:         3 * payoutBackoffMax / 4,
	}
	b.Reset()
	return b
}

// pause waits b's next interval, or until ctx is done (its error).
func pause(ctx context.Context, b backoff.BackOff) error {
	t := time.NewTimer(b.NextBackOff())
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// SendPayoutOnPayoutRequested is the payout saga's first step: it sends a
// requested payout to the payment provider and records what the provider
// answered. The payout id is the provider's idempotency key, so a retry
// after a timeout or a crash (the handler is redelivered) never pays twice.
// A payout the ledger already sent is left alone, and so is one waiting
// for a second approver (SendPayoutOnPayoutApproved sends it).
func (l *Ledger) SendPayoutOnPayoutRequested(ctx context.Context, src eventstore.Recorded, ev *ledgerevents.PayoutRequested) error {
	return l.sendPayout(ctx, src, ev.GetFarmerId(), ev.GetPayoutId(), "farmer-ledger/send-payout-on-payout-requested")
}

// sendPayout sends a payout in status requested to the provider.
func (l *Ledger) sendPayout(ctx context.Context, src eventstore.Recorded, farmerID, payoutID, actor string) error {
	f, _, err := l.farmers.Load(ctx, farmerID)
	if err != nil {
		return err
	}
	p, ok := f.Payout(payoutID)
	if !ok {
		return fmt.Errorf("send payout: farmer %s has no payout %s", farmerID, payoutID)
	}
	if p.Status != domain.PayoutStatusRequested {
		return nil
	}
	md := eventstore.Metadata{CorrelationID: src.Metadata.CorrelationID, CausationID: src.ID, Actor: actor}
	in, unsendable, err := l.instructionFor(ctx, p)
	if err != nil {
		return err
	}
	if unsendable != nil {
		return l.recordOutcome(ctx, p.FarmerID, p.ID, *unsendable, md)
	}
	pctx, cancel := context.WithTimeout(ctx, providerTimeout)
	receipt, err := l.provider.Send(pctx, in)
	cancel()
	if err != nil {
		return fmt.Errorf("send payout %s to the provider: %w", p.ID, err)
	}
	return l.recordOutcome(ctx, p.FarmerID, p.ID, receipt, md)
}

// SettleSentPayoutsOnTick asks the provider about every payout it accepted
// without settling it yet (a provider that settles late), and records the
// ones it has completed since. It returns how many it recorded; a failure
// for one payout is logged and left for the next tick.
func (l *Ledger) SettleSentPayoutsOnTick(ctx context.Context) (int, error) {
	sent, err := l.finance.Payouts(ctx, PayoutFilter{Status: domain.PayoutStatusSent, Limit: 500})
	if err != nil {
		return 0, fmt.Errorf("list sent payouts: %w", err)
	}
	recorded := 0
	for _, p := range sent {
		pctx, cancel := context.WithTimeout(ctx, providerTimeout)
		receipt, err := l.provider.Status(pctx, p.ID)
		cancel()
		if err != nil {
			l.log.WarnContext(ctx, "payout status unknown; asking again later", "payout_id", p.ID, "err", err)
			continue
		}
		if receipt.Status == domain.ProviderAccepted {
			continue
		}
		md := eventstore.Metadata{CorrelationID: p.RequestID, CausationID: "provider:" + receipt.Reference, Actor: "farmer-ledger/settle-sent-payouts-on-tick"}
		if err := l.recordOutcome(ctx, p.FarmerID, p.ID, receipt, md); err != nil {
			l.log.WarnContext(ctx, "payout outcome not recorded; asking again later", "payout_id", p.ID, "err", err)
			continue
		}
		recorded++
	}
	return recorded, nil
}

// recordOutcome appends what the provider said about a payout, once:
// whichever of the saga and the settlement poll gets there first records
// it, and the other finds nothing left to do.
func (l *Ledger) recordOutcome(ctx context.Context, farmerID, payoutID string, r domain.ProviderReceipt, md eventstore.Metadata) error {
	key := "ledger.PayoutOutcome:" + payoutID + ":" + r.Status.String()
	fingerprint := r.Reference + "/" + r.Status.String()
	pace := raceBackoff()
	for attempt := 1; ; attempt++ {
		err := l.withFarmer(ctx, farmerID, func(f *domain.Farmer) error {
			changes, err := f.RecordProviderOutcome(payoutID, r, eventIDs(key))
			if err != nil || len(changes) == 0 {
				return err
			}
			_, err = l.farmers.Append(ctx, f, key, fingerprint, md, changes...)
			return err
		})
		if !retryable(err) || attempt >= maxPayoutAttempts {
			return err
		}
		l.log.DebugContext(ctx, "payout outcome append lost a race; retrying", "payout_id", payoutID, "attempt", attempt)
		if err := pause(ctx, pace); err != nil {
			return err
		}
	}
}
