package app

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	ledgerevents "github.com/furrow/furrow/proto/furrow/ledger/events/v1"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/ident"
	"github.com/furrow/furrow/pkg/pagetoken"

	"github.com/furrow/furrow/services/farmer-ledger/domain"
)

// Paging limits of list queries.
const (
	DefaultPageSize = 50
	MaxPageSize     = 500
)

// MaxSettlementBytes bounds a settlement file handed to ReconcilePayouts.
const MaxSettlementBytes = 16 << 20

func pageSize(n int32) (int, error) {
	switch {
	case n < 0:
		return 0, failure.Invalid("page_size", "must not be negative, got %d", n)
	case n == 0:
		return DefaultPageSize, nil
	case n > MaxPageSize:
		return MaxPageSize, nil
	}
	return int(n), nil
}

// farmersList and payoutsList bind a page token to its list and filters.
func farmersList(f FarmerFilter) pagetoken.List {
	return pagetoken.For("ledger.farmers", f.County, f.Cooperative)
}

func payoutsList(f PayoutFilter) pagetoken.List {
	return pagetoken.For("ledger.payouts", f.FarmerID, strconv.Itoa(int(f.Status)))
}

// ListFarmers returns a page of farmers and the token of the next page.
func (l *Ledger) ListFarmers(ctx context.Context, f FarmerFilter, size int32, token string, minPos *eventstore.Position) ([]FarmerRow, string, eventstore.Position, error) {
	limit, err := pageSize(size)
	if err != nil {
		return nil, "", eventstore.Position{}, err
	}
	list := farmersList(f)
	after, err := list.Cursor(token, 1)
	if err != nil {
		return nil, "", eventstore.Position{}, err
	}
	f.AfterID = after[0]
	asOf, err := l.positions.WaitFor(ctx, derefPos(minPos))
	if err != nil {
		return nil, "", eventstore.Position{}, err
	}
	f.Limit = limit + 1
	rows, err := l.directory.Farmers(ctx, f)
	if err != nil {
		return nil, "", eventstore.Position{}, err
	}
	next := ""
	if len(rows) > limit {
		rows = rows[:limit]
		next = list.Next(rows[limit-1].FarmerID)
	}
	return rows, next, asOf, nil
}

// BalanceAt returns a farmer's balance at a point in history and the
// sequence of the last entry it counts. A point given as a LEDGER sequence
// is waited for (bounded), so the answer never misses an entry before it.
func (l *Ledger) BalanceAt(ctx context.Context, farmerID string, at BalancePoint) (domain.Balance, uint64, eventstore.Position, error) {
	if _, err := l.Farmer(ctx, farmerID); err != nil {
		return domain.Balance{}, 0, eventstore.Position{}, err
	}
	if at.Seq == 0 && at.Time.IsZero() {
		return domain.Balance{}, 0, eventstore.Position{}, failure.Invalid("at", "give a time or a ledger_sequence")
	}
	var wait eventstore.Position
	if at.Seq > 0 {
		wait = eventstore.Position{Stream: domain.Stream, Sequence: at.Seq}
	}
	asOf, err := l.financePositions.WaitFor(ctx, wait)
	if err != nil {
		return domain.Balance{}, 0, eventstore.Position{}, err
	}
	b, last, err := l.finance.BalanceAt(ctx, farmerID, at)
	if err != nil {
		return domain.Balance{}, 0, eventstore.Position{}, err
	}
	return b, last, asOf, nil
}

// Payout returns one payout from the finance read model.
func (l *Ledger) Payout(ctx context.Context, payoutID string, minPos *eventstore.Position) (PayoutView, eventstore.Position, error) {
	if payoutID == "" {
		return PayoutView{}, eventstore.Position{}, failure.Invalid("payout_id", "is required")
	}
	asOf, err := l.waitForReport(ctx, minPos)
	if err != nil {
		return PayoutView{}, eventstore.Position{}, err
	}
	p, err := l.finance.Payout(ctx, payoutID)
	if errors.Is(err, ErrNotFound) {
		return PayoutView{}, eventstore.Position{}, failure.NotFound("payout_id",
			"no payout %s as of %s (a payout just requested: pass its position as min_position)", payoutID, asOf)
	}
	return p, asOf, err
}

// Payouts returns a page of payouts and the token of the next page.
func (l *Ledger) Payouts(ctx context.Context, f PayoutFilter, size int32, token string, minPos *eventstore.Position) ([]PayoutView, string, eventstore.Position, error) {
	if f.FarmerID != "" {
		if err := ident.Check("farmer_id", f.FarmerID); err != nil {
			return nil, "", eventstore.Position{}, err
		}
	}
	limit, err := pageSize(size)
	if err != nil {
		return nil, "", eventstore.Position{}, err
	}
	list := payoutsList(f)
	if f.AfterSeq, err = list.Seq(token); err != nil {
		return nil, "", eventstore.Position{}, err
	}
	asOf, err := l.waitForReport(ctx, minPos)
	if err != nil {
		return nil, "", eventstore.Position{}, err
	}
	f.Limit = limit + 1
	rows, err := l.finance.Payouts(ctx, f)
	if err != nil {
		return nil, "", eventstore.Position{}, err
	}
	next := ""
	if len(rows) > limit {
		rows = rows[:limit]
		next = list.NextSeq(rows[limit-1].RequestedSeq)
	}
	return rows, next, asOf, nil
}

// Statement returns a farmer's statement for [from, to); a zero to means
// now. It also returns the farmer, for the statement's heading.
func (l *Ledger) Statement(ctx context.Context, farmerID string, period domain.Period, minPos *eventstore.Position) (*domain.Farmer, Statement, eventstore.Position, error) {
	f, err := l.Farmer(ctx, farmerID)
	if err != nil {
		return nil, Statement{}, eventstore.Position{}, err
	}
	if period.To.IsZero() {
		period.To = l.now()
	}
	if err := period.Check(); err != nil {
		return nil, Statement{}, eventstore.Position{}, err
	}
	asOf, err := l.waitForReport(ctx, minPos)
	if err != nil {
		return nil, Statement{}, eventstore.Position{}, err
	}
	st, err := l.finance.Statement(ctx, farmerID, period.From, period.To)
	if err != nil {
		return nil, Statement{}, eventstore.Position{}, err
	}
	return f, st, asOf, nil
}

// ErrUnbalanced means the journal's debits and credits differ: an entry
// that does not balance reached the stream, which the domain never writes.
var ErrUnbalanced = errors.New("the journal does not balance")

// TrialBalance returns every account's totals and the number of entries.
// When Σ debits ≠ Σ credits it returns the totals and an error wrapping
// ErrUnbalanced.
func (l *Ledger) TrialBalance(ctx context.Context, byFarmer bool, minPos *eventstore.Position) (domain.TrialBalance, int64, eventstore.Position, error) {
	asOf, err := l.waitForReport(ctx, minPos)
	if err != nil {
		return domain.TrialBalance{}, 0, eventstore.Position{}, err
	}
	accounts, entries, err := l.finance.Accounts(ctx)
	if err != nil {
		return domain.TrialBalance{}, 0, eventstore.Position{}, err
	}
	tb, err := domain.NewTrialBalance(accounts, byFarmer)
	if err != nil {
		return domain.TrialBalance{}, 0, eventstore.Position{}, err
	}
	recordTrialBalance(ctx, tb.DebitFen, tb.CreditFen)
	if !tb.Balanced() {
		return tb, entries, asOf, fmt.Errorf("%w: debits %d fen, credits %d fen (difference %d fen) as of %s",
			ErrUnbalanced, tb.DebitFen, tb.CreditFen, tb.DebitFen-tb.CreditFen, asOf)
	}
	return tb, entries, asOf, nil
}

// Reconciliation is a reconciliation with the decisions recorded about
// its breaks.
type Reconciliation struct {
	domain.Reconciliation
	Resolutions map[string]Resolution
}

// Reconcile matches the ledger's payouts against a provider's settlement
// file for a period. It records only the breaks no reconciliation reported
// before (PayoutBreakFound, once per break), so that ResolveBreak can tell
// a break that exists from a mistyped id. A malformed file is Invalid, with
// the line it failed on, and records nothing.
func (l *Ledger) Reconcile(ctx context.Context, settlement []byte, period domain.Period, minPos *eventstore.Position, md eventstore.Metadata) (Reconciliation, eventstore.Position, error) {
	if len(settlement) > MaxSettlementBytes {
		return Reconciliation{}, eventstore.Position{}, failure.Invalid("settlement_csv", "is %d bytes; at most %d", len(settlement), MaxSettlementBytes)
	}
	if err := period.Check(); err != nil {
		return Reconciliation{}, eventstore.Position{}, err
	}
	lines, err := domain.ParseSettlement(settlement)
	if err != nil {
		return Reconciliation{}, eventstore.Position{}, failure.Invalid("settlement_csv", "%v", err)
	}
	asOf, err := l.waitForReport(ctx, minPos)
	if err != nil {
		return Reconciliation{}, eventstore.Position{}, err
	}
	ids := make([]string, 0, len(lines))
	for _, ln := range lines {
		ids = append(ids, ln.PayoutID)
	}
	payouts, err := l.finance.ReconciliationPayouts(ctx, period, ids)
	if err != nil {
		return Reconciliation{}, eventstore.Position{}, err
	}
	rec, err := domain.Reconcile(payouts, lines, period)
	if err != nil {
		return Reconciliation{}, eventstore.Position{}, err
	}
	var breakIDs []string
	for _, it := range rec.Items {
		if it.BreakID != "" {
			breakIDs = append(breakIDs, it.BreakID)
		}
	}
	res, err := l.finance.Resolutions(ctx, breakIDs)
	if err != nil {
		return Reconciliation{}, eventstore.Position{}, err
	}
	if err := l.recordFound(ctx, rec, res, md); err != nil {
		return Reconciliation{}, eventstore.Position{}, err
	}
	return Reconciliation{Reconciliation: rec, Resolutions: res}, asOf, nil
}

// recordFound records the breaks of rec that no reconciliation reported
// before and none resolved. The read model it asks reflects everything
// written before the reconciliation (waitForReport); two reconciliations
// racing may both record a break, which is harmless: a break is found once
// it has one PayoutBreakFound.
func (l *Ledger) recordFound(ctx context.Context, rec domain.Reconciliation, resolved map[string]Resolution, md eventstore.Metadata) error {
	var ids []string
	for _, it := range rec.Items {
		if _, done := resolved[it.BreakID]; it.BreakID != "" && !done {
			ids = append(ids, it.BreakID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	found, err := l.finance.FoundBreaks(ctx, ids)
	if err != nil {
		return err
	}
	var evs []*ledgerevents.PayoutBreakFound
	for _, it := range rec.Items {
		if _, done := resolved[it.BreakID]; it.BreakID == "" || done || found[it.BreakID] {
			continue
		}
		found[it.BreakID] = true
		evs = append(evs, domain.BreakFound(it))
	}
	if len(evs) == 0 {
		return nil
	}
	if err := l.breaks.Found(ctx, md, evs); err != nil {
		return fmt.Errorf("record %d breaks found: %w", len(evs), err)
	}
	return nil
}

// ResolveBreak is the command recording finance's decision about a break.
type ResolveBreak struct {
	RequestID   string
	Fingerprint string
	BreakID     string
	Decision    string
	Note        string
	Meta        eventstore.Metadata
}

// ResolveBreak records a decision about a reconciliation break, once per
// request id; a break is resolved once, and only a break a reconciliation
// reported can be (NotFound otherwise).
func (l *Ledger) ResolveBreak(ctx context.Context, cmd ResolveBreak) (eventstore.AppendResult, error) {
	if err := ident.CheckRequestID(cmd.RequestID); err != nil {
		return eventstore.AppendResult{}, err
	}
	if err := domain.CheckBreakID(cmd.BreakID); err != nil {
		return eventstore.AppendResult{}, err
	}
	key := "ledger.ResolvePayoutBreak:" + cmd.RequestID
	state, version, seen, err := l.breaks.Load(ctx, cmd.BreakID)
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	if res, ok, err := seen.Check(key, cmd.Fingerprint); ok || err != nil {
		return res, err
	}
	ev, err := domain.ResolveBreak(cmd.BreakID, cmd.Decision, cmd.Note, state)
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	res, err := l.breaks.Append(ctx, version, key, cmd.Fingerprint, cmd.Meta, ev)
	if errors.Is(err, eventstore.ErrConflict) {
		return eventstore.AppendResult{}, failure.AlreadyExists("break_id", "break %s was resolved meanwhile", cmd.BreakID)
	}
	return res, err
}

// waitForReport waits until the finance read model reflects minPos or, when
// the caller gave none, everything written before the request: a finance
// report read right after a recorded decision or a payout must show it.
func (l *Ledger) waitForReport(ctx context.Context, minPos *eventstore.Position) (eventstore.Position, error) {
	if minPos != nil {
		return l.financePositions.WaitFor(ctx, *minPos)
	}
	head, err := l.financePositions.Head(ctx)
	if err != nil {
		return eventstore.Position{}, err
	}
	return l.financePositions.WaitFor(ctx, head)
}
