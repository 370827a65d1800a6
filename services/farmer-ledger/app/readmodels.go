package app

import (
	"context"
	"errors"
	"time"

	ledgerevents "github.com/furrow/furrow/proto/furrow/ledger/events/v1"

	"github.com/furrow/furrow/pkg/eventstore"

	"github.com/furrow/furrow/services/farmer-ledger/domain"
)

// ErrNotFound means a read model has no row for what was asked (yet).
var ErrNotFound = errors.New("not in the read model")

// PayoutView is a payout as the finance read model holds it.
type PayoutView struct {
	domain.Payout
	// RequestedSeq is the LEDGER sequence of PayoutRequested.
	RequestedSeq uint64
	RequestedAt  time.Time
	// CompletedAt is when the provider settled or failed it (zero before).
	CompletedAt time.Time
}

// PayoutFilter selects payouts, in the order they were requested.
type PayoutFilter struct {
	FarmerID string
	// Status 0 means any.
	Status domain.PayoutStatus
	// AfterSeq skips payouts requested at or before this LEDGER sequence.
	AfterSeq uint64
	Limit    int
}

// SourceRef points to the event an entry accounts for.
type SourceRef struct {
	Stream    string
	Sequence  uint64
	EventID   string
	EventType string
}

// JournalLine debits or credits one account.
type JournalLine struct {
	Account   string
	DebitFen  int64
	CreditFen int64
}

// StatementEntry is one journal entry on a farmer's statement.
type StatementEntry struct {
	EntryID     string
	Seq         uint64
	PostedAt    time.Time
	Description string
	Source      SourceRef
	PayoutID    string
	// Change is the entry's effect on the farmer's accounts.
	Change domain.Balance
	Lines  []JournalLine
}

// Statement is a farmer's entries for a period [From, To), with the
// balances before and after. Opening and Closing are read independently of
// the entries, so that opening + entries = closing is a check, not a sum.
type Statement struct {
	From, To time.Time
	Opening  domain.Balance
	Entries  []StatementEntry
	Closing  domain.Balance
}

// BalancePoint is a point in a farmer's history: a time, or a LEDGER
// sequence when Seq > 0.
type BalancePoint struct {
	Time time.Time
	Seq  uint64
}

// Resolution is a decision recorded about a reconciliation break.
type Resolution struct {
	BreakID    string
	Decision   string
	Note       string
	Actor      string
	ResolvedAt time.Time
	Seq        uint64
}

// Finance reads the finance read model: payouts, entries, account totals
// and break resolutions.
type Finance interface {
	// Payout returns one payout, or ErrNotFound.
	Payout(ctx context.Context, payoutID string) (PayoutView, error)
	// Payouts lists payouts by filter.
	Payouts(ctx context.Context, f PayoutFilter) ([]PayoutView, error)
	// ReconciliationPayouts returns the payouts completed in the period,
	// and those named in ids whatever their state.
	ReconciliationPayouts(ctx context.Context, period domain.Period, ids []string) ([]domain.LedgerPayout, error)
	// BalanceAt sums a farmer's entries up to a point, and returns the
	// sequence of the last entry counted.
	BalanceAt(ctx context.Context, farmerID string, at BalancePoint) (domain.Balance, uint64, error)
	// Statement returns a farmer's statement for [from, to).
	Statement(ctx context.Context, farmerID string, from, to time.Time) (Statement, error)
	// Accounts returns every account's totals and the number of entries.
	Accounts(ctx context.Context) ([]domain.AccountTotal, int64, error)
	// Resolutions returns the recorded resolutions of the given breaks.
	Resolutions(ctx context.Context, breakIDs []string) (map[string]Resolution, error)
	// FoundBreaks returns which of the given breaks a reconciliation has
	// reported before (PayoutBreakFound).
	FoundBreaks(ctx context.Context, breakIDs []string) (map[string]bool, error)
}

// FarmerRow is a farmer as the farmers read model holds it.
type FarmerRow struct {
	FarmerID      string
	Name          string
	County        string
	Cooperative   string
	Phone         string
	PayoutAccount string
}

// FarmerFilter selects farmers, ordered by farmer id.
type FarmerFilter struct {
	County      string
	Cooperative string
	// AfterID skips farmers with an id up to and including it.
	AfterID string
	Limit   int
}

// Directory lists farmers.
type Directory interface {
	Farmers(ctx context.Context, f FarmerFilter) ([]FarmerRow, error)
}

// PaymentProvider pays farmers out. Both calls are idempotent by payout
// id: an instruction sent twice (a retry after a timeout) is paid once,
// and the second call returns the first one's receipt.
type PaymentProvider interface {
	// Send instructs the provider to pay. An error means the outcome is
	// unknown (a timeout, a lost connection): retry with the same payout.
	Send(ctx context.Context, in domain.PayoutInstruction) (domain.ProviderReceipt, error)
	// Status asks where a payout the provider accepted stands.
	Status(ctx context.Context, payoutID string) (domain.ProviderReceipt, error)
}

// Breaks loads and appends the events of reconciliation breaks: that a
// reconciliation reported one, and finance's decision about it.
type Breaks interface {
	// Load reads a break's events from the stream (always current).
	Load(ctx context.Context, breakID string) (state domain.BreakState, version uint64, seen *eventstore.Requests, err error)
	// Append records a decision, expecting the break unchanged since version.
	Append(ctx context.Context, version uint64, key, fingerprint string, md eventstore.Metadata, ev *ledgerevents.PayoutBreakResolved) (eventstore.AppendResult, error)
	// Found records that breaks were reported (one event per break).
	Found(ctx context.Context, md eventstore.Metadata, evs []*ledgerevents.PayoutBreakFound) error
}
