package adapters

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	ledgerevents "github.com/furrow/furrow/proto/furrow/ledger/events/v1"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/money"
	"github.com/furrow/furrow/pkg/projection"

	"github.com/furrow/furrow/services/farmer-ledger/domain"
)

// FinanceProjection keeps what finance reads, fed by the whole LEDGER
// stream: every journal entry with its source and its effect on the
// farmer's accounts (statements, balances as of a point), every entry line
// and per-account totals (trial balance), payouts and their status
// (payout queries, the settlement poll, reconciliation), the breaks
// reconciliations reported and the decisions recorded about them.
//
// It is separate from BalancesProjection, which keeps the current balance
// per farmer: a statement's closing balance (a sum over entries) and
// GetFarmerBalance (a running total) come from two read models with their
// own checkpoints, so either can be rebuilt without the other.
//
// A payout's account is kept as its event holds it: sealed under the
// farmer's data key, never decrypted here; FarmerErased replaces it with
// domain.Erased.
//
// It records an entry that does not balance as it is, rather than refuse
// it: the stream is the truth, and the trial balance is where such an
// entry must show (refusing would stop the read model at it instead).
type FinanceProjection struct{}

var _ projection.Versioned = FinanceProjection{}

// Tables of the finance read model (logical names: views of the live copy).
const (
	tableEntries     = "ledger_entries"
	tableEntryLines  = "ledger_entry_lines"
	tableAccounts    = "ledger_accounts"
	tablePayouts     = "ledger_payouts"
	tableResolutions = "ledger_break_resolutions"
	tableBreaks      = "ledger_breaks"
)

// Name implements projection.Projection.
func (FinanceProjection) Name() string { return "ledger_finance" }

// Stream implements projection.Projection.
func (FinanceProjection) Stream() string { return domain.Stream }

// Subjects implements projection.Projection.
func (FinanceProjection) Subjects() []string { return []string{domain.Subjects} }

// Tables implements projection.Versioned.
func (FinanceProjection) Tables() []string {
	return []string{tableEntries, tableEntryLines, tableAccounts, tablePayouts, tableResolutions, tableBreaks}
}

var _ projection.LateIndexed = FinanceProjection{}

// LateIndexes implements projection.LateIndexed: Apply finds rows by their
// keys only (entries, payouts and accounts by id), so a rebuild builds the
// readers' indexes at the end.
func (FinanceProjection) LateIndexes() []string {
	return []string{"ledger_entries_farmer_time", "ledger_entries_farmer_seq",
		"ledger_payouts_status", "ledger_payouts_farmer", "ledger_payouts_completed"}
}

// Migrate implements projection.Projection. Times are Unix nanoseconds
// (BIGINT): portable, and ordered as numbers.
func (FinanceProjection) Migrate(ctx context.Context, tx *sql.Tx) error {
	t := func(name string) string { return projection.Table(ctx, name) }
	for _, stmt := range []string{
		`CREATE TABLE IF NOT EXISTS ` + t(tableEntries) + ` (
			entry_id TEXT PRIMARY KEY,
			farmer_id TEXT NOT NULL,
			seq BIGINT NOT NULL,
			posted_at BIGINT NOT NULL,
			description TEXT NOT NULL,
			source_stream TEXT NOT NULL,
			source_seq BIGINT NOT NULL,
			source_event_id TEXT NOT NULL,
			source_type TEXT NOT NULL,
			payout_id TEXT NOT NULL,
			payable_fen BIGINT NOT NULL,
			premium_fen BIGINT NOT NULL,
			held_fen BIGINT NOT NULL,
			paid_fen BIGINT NOT NULL)`,
		`CREATE INDEX IF NOT EXISTS ` + t("ledger_entries_farmer_time") + ` ON ` + t(tableEntries) + ` (farmer_id, posted_at)`,
		`CREATE INDEX IF NOT EXISTS ` + t("ledger_entries_farmer_seq") + ` ON ` + t(tableEntries) + ` (farmer_id, seq)`,
		`CREATE TABLE IF NOT EXISTS ` + t(tableEntryLines) + ` (
			entry_id TEXT NOT NULL,
			line_no INTEGER NOT NULL,
			account TEXT NOT NULL,
			debit_fen BIGINT NOT NULL,
			credit_fen BIGINT NOT NULL,
			PRIMARY KEY (entry_id, line_no))`,
		`CREATE TABLE IF NOT EXISTS ` + t(tableAccounts) + ` (
			account TEXT PRIMARY KEY,
			debit_fen BIGINT NOT NULL,
			credit_fen BIGINT NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS ` + t(tablePayouts) + ` (
			payout_id TEXT PRIMARY KEY,
			farmer_id TEXT NOT NULL,
			request_id TEXT NOT NULL,
			amount_fen BIGINT NOT NULL,
			currency TEXT NOT NULL,
			payout_account TEXT NOT NULL,
			status TEXT NOT NULL,
			provider_reference TEXT NOT NULL,
			failure_reason TEXT NOT NULL,
			requested_seq BIGINT NOT NULL,
			requested_at BIGINT NOT NULL,
			completed_at BIGINT NOT NULL)`,
		`CREATE INDEX IF NOT EXISTS ` + t("ledger_payouts_status") + ` ON ` + t(tablePayouts) + ` (status, requested_seq)`,
		`CREATE INDEX IF NOT EXISTS ` + t("ledger_payouts_farmer") + ` ON ` + t(tablePayouts) + ` (farmer_id, requested_seq)`,
		`CREATE INDEX IF NOT EXISTS ` + t("ledger_payouts_completed") + ` ON ` + t(tablePayouts) + ` (completed_at)`,
		`CREATE TABLE IF NOT EXISTS ` + t(tableResolutions) + ` (
			break_id TEXT PRIMARY KEY,
			decision TEXT NOT NULL,
			note TEXT NOT NULL,
			actor TEXT NOT NULL,
			resolved_at BIGINT NOT NULL,
			seq BIGINT NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS ` + t(tableBreaks) + ` (
			break_id TEXT PRIMARY KEY,
			result TEXT NOT NULL,
			payout_id TEXT NOT NULL,
			found_seq BIGINT NOT NULL)`,
	} {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("migrate ledger_finance: %w", err)
		}
	}
	return nil
}

// Apply implements projection.Projection.
func (FinanceProjection) Apply(ctx context.Context, tx *sql.Tx, rec eventstore.Recorded) error {
	msg, err := eventstore.Decode(rec)
	if err != nil {
		return err
	}
	t := func(name string) string { return projection.Table(ctx, name) }
	switch e := msg.(type) {
	case *ledgerevents.EntryPosted:
		err = applyFinanceEntry(ctx, tx, t, rec, e)
	case *ledgerevents.PayoutRequested:
		status := domain.PayoutStatusRequested
		if e.GetApprovalRequired() {
			status = domain.PayoutStatusPendingApproval
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO `+t(tablePayouts)+`
			(payout_id, farmer_id, request_id, amount_fen, currency, payout_account, status,
			 provider_reference, failure_reason, requested_seq, requested_at, completed_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, '', '', $8, $9, 0)`,
			e.GetPayoutId(), e.GetFarmerId(), e.GetRequestId(), e.GetAmountFen(), e.GetCurrency(),
			domain.PersonalText(e.GetPayoutAccount(), e.GetSealedPayoutAccount()),
			status.String(), rec.Sequence, rec.Time.UnixNano())
	case *ledgerevents.PayoutApproved:
		err = updatePayout(ctx, tx, t, `status = $1`, e.GetPayoutId(), domain.PayoutStatusRequested.String())
	case *ledgerevents.PayoutRejected:
		err = updatePayout(ctx, tx, t, `status = $1, completed_at = $2, failure_reason = $3`, e.GetPayoutId(),
			domain.PayoutStatusRejected.String(), rec.Time.UnixNano(), e.GetReason())
	case *ledgerevents.FarmerErased:
		// The accounts of the farmer's payouts, sealed or (before
		// encryption) clear, go.
		_, err = tx.ExecContext(ctx, `UPDATE `+t(tablePayouts)+` SET payout_account = $1 WHERE farmer_id = $2`,
			domain.Erased, e.GetFarmerId())
	case *ledgerevents.PayoutSent:
		err = updatePayout(ctx, tx, t, `status = $1, provider_reference = $2`, e.GetPayoutId(),
			domain.PayoutStatusSent.String(), e.GetProviderReference())
	case *ledgerevents.PayoutSettled:
		err = updatePayout(ctx, tx, t, `status = $1, provider_reference = $2, completed_at = $3`, e.GetPayoutId(),
			domain.PayoutStatusSettled.String(), e.GetProviderReference(), e.GetSettledAt().AsTime().UnixNano())
	case *ledgerevents.PayoutFailed:
		err = updatePayout(ctx, tx, t, `status = $1, provider_reference = $2, completed_at = $3, failure_reason = $4`, e.GetPayoutId(),
			domain.PayoutStatusFailed.String(), e.GetProviderReference(), e.GetFailedAt().AsTime().UnixNano(), e.GetReason())
	case *ledgerevents.PayoutBreakFound:
		// Racing reconciliations may report a break twice: the first counts.
		_, err = tx.ExecContext(ctx, `INSERT INTO `+t(tableBreaks)+` (break_id, result, payout_id, found_seq)
			VALUES ($1, $2, $3, $4) ON CONFLICT (break_id) DO NOTHING`,
			e.GetBreakId(), e.GetResult(), e.GetPayoutId(), rec.Sequence)
	case *ledgerevents.PayoutBreakResolved:
		_, err = tx.ExecContext(ctx, `INSERT INTO `+t(tableResolutions)+`
			(break_id, decision, note, actor, resolved_at, seq) VALUES ($1, $2, $3, $4, $5, $6)`,
			e.GetBreakId(), e.GetDecision(), e.GetNote(), rec.Metadata.Actor, rec.Time.UnixNano(), rec.Sequence)
	}
	if err != nil {
		return fmt.Errorf("apply %s seq %d: %w", rec.Type, rec.Sequence, err)
	}
	return nil
}

// updatePayout sets columns of one payout; the payout's first argument
// placeholder follows set's.
func updatePayout(ctx context.Context, tx *sql.Tx, t func(string) string, set, payoutID string, args ...any) error {
	q := fmt.Sprintf(`UPDATE %s SET %s WHERE payout_id = $%d`, t(tablePayouts), set, len(args)+1)
	res, err := tx.ExecContext(ctx, q, append(args, payoutID)...)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err == nil && n != 1 {
		return fmt.Errorf("payout %s: updated %d rows, want 1 (its PayoutRequested was not applied)", payoutID, n)
	}
	return nil
}

func applyFinanceEntry(ctx context.Context, tx *sql.Tx, t func(string) string, rec eventstore.Recorded, e *ledgerevents.EntryPosted) error {
	src := e.GetSource()
	srcSeq := src.GetSequence()
	if srcSeq == 0 && src.GetStream() == domain.Stream && rec.Sequence > 0 {
		// The ledger's own payout event, appended just before the entry in
		// the same atomic batch (see ledger events' SourceRef).
		srcSeq = rec.Sequence - 1
	}
	d, err := domain.Effect(e.GetFarmerId(), e.GetLines())
	if err != nil {
		return fmt.Errorf("entry %s: %w", e.GetEntryId(), err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO `+t(tableEntries)+`
		(entry_id, farmer_id, seq, posted_at, description, source_stream, source_seq, source_event_id, source_type,
		 payout_id, payable_fen, premium_fen, held_fen, paid_fen)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
		e.GetEntryId(), e.GetFarmerId(), rec.Sequence, rec.Time.UnixNano(), e.GetDescription(),
		src.GetStream(), srcSeq, src.GetEventId(), src.GetEventType(), e.GetPayoutId(),
		d.PurchasesFen, d.PremiumsFen, d.HeldFen, d.PaidFen); err != nil {
		return fmt.Errorf("entry %s: %w", e.GetEntryId(), err)
	}
	for i, l := range e.GetLines() {
		if _, err := tx.ExecContext(ctx, `INSERT INTO `+t(tableEntryLines)+`
			(entry_id, line_no, account, debit_fen, credit_fen) VALUES ($1, $2, $3, $4, $5)`,
			e.GetEntryId(), i, l.GetAccount(), l.GetDebitFen(), l.GetCreditFen()); err != nil {
			return fmt.Errorf("entry %s line %d: %w", e.GetEntryId(), i, err)
		}
		if err := addToAccount(ctx, tx, t(tableAccounts), l); err != nil {
			return fmt.Errorf("entry %s line %d: account %s: %w", e.GetEntryId(), i, l.GetAccount(), err)
		}
	}
	return nil
}

// addToAccount adds a line to its account's totals. The totals are summed
// here, with overflow checks, and written whole: SQLite's "x = x + ?"
// would store an overflowing sum as a float without a word.
func addToAccount(ctx context.Context, tx *sql.Tx, table string, l *ledgerevents.EntryLine) error {
	var debit, credit int64
	err := tx.QueryRowContext(ctx, `SELECT debit_fen, credit_fen FROM `+table+` WHERE account = $1`, l.GetAccount()).
		Scan(projection.Exact(&debit), projection.Exact(&credit))
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	if debit, err = money.Add(debit, l.GetDebitFen()); err != nil {
		return fmt.Errorf("debits: %w", err)
	}
	if credit, err = money.Add(credit, l.GetCreditFen()); err != nil {
		return fmt.Errorf("credits: %w", err)
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO `+table+` (account, debit_fen, credit_fen) VALUES ($1, $2, $3)
		ON CONFLICT (account) DO UPDATE SET debit_fen = excluded.debit_fen, credit_fen = excluded.credit_fen`,
		l.GetAccount(), debit, credit)
	return err
}
