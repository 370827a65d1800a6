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

	"github.com/furrow/furrow/services/farmer-ledger/app"
	"github.com/furrow/furrow/services/farmer-ledger/domain"
)

// BalancesProjection keeps farmers, their journal lines and their balances
// in SQL, fed by the LEDGER stream. A farmer's name, phone and payout
// account are kept as the events hold them: sealed under the farmer's data
// key (domain.SealedText), never decrypted here; FarmerErased replaces
// them with domain.Erased.
type BalancesProjection struct{}

var _ projection.Versioned = BalancesProjection{}

// Tables implements projection.Versioned: the tables readers query. Each
// is a view of the live copy; Migrate and Apply write a copy's own tables
// (projection.Table), so the projection can be rebuilt beside itself.
func (BalancesProjection) Tables() []string {
	return []string{"ledger_farmers", "ledger_balances", "ledger_journal", "ledger_receivables"}
}

var _ projection.LateIndexed = BalancesProjection{}

// LateIndexes implements projection.LateIndexed: Apply finds rows by their
// keys only, so a rebuild builds the journal's farmer index at the end.
func (BalancesProjection) LateIndexes() []string { return []string{"ledger_journal_farmer"} }

// Name implements projection.Projection.
func (BalancesProjection) Name() string { return "ledger_balances" }

// Stream implements projection.Projection.
func (BalancesProjection) Stream() string { return domain.Stream }

// Subjects implements projection.Projection.
func (BalancesProjection) Subjects() []string { return []string{"ledger.farmer.>"} }

// Migrate implements projection.Projection.
func (BalancesProjection) Migrate(ctx context.Context, tx *sql.Tx) error {
	farmers, balances, journal := projection.Table(ctx, "ledger_farmers"), projection.Table(ctx, "ledger_balances"), projection.Table(ctx, "ledger_journal")
	for _, stmt := range []string{
		`CREATE TABLE IF NOT EXISTS ` + farmers + ` (
			farmer_id TEXT PRIMARY KEY,
			name TEXT NOT NULL, county TEXT NOT NULL, cooperative TEXT NOT NULL,
			phone TEXT NOT NULL, payout_account TEXT NOT NULL,
			version BIGINT NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS ` + balances + ` (
			farmer_id TEXT PRIMARY KEY,
			purchases_fen BIGINT NOT NULL DEFAULT 0,
			premiums_fen BIGINT NOT NULL DEFAULT 0,
			held_fen BIGINT NOT NULL DEFAULT 0,
			paid_fen BIGINT NOT NULL DEFAULT 0,
			seq BIGINT NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS ` + journal + ` (
			entry_id TEXT NOT NULL,
			line_no INTEGER NOT NULL,
			farmer_id TEXT NOT NULL,
			account TEXT NOT NULL,
			debit_fen BIGINT NOT NULL,
			credit_fen BIGINT NOT NULL,
			source_stream TEXT NOT NULL,
			source_seq BIGINT NOT NULL,
			source_event_id TEXT NOT NULL,
			seq BIGINT NOT NULL,
			PRIMARY KEY (entry_id, line_no))`,
		`CREATE INDEX IF NOT EXISTS ` + projection.Table(ctx, "ledger_journal_farmer") + ` ON ` + journal + ` (farmer_id, seq)`,
		// Receivables have their own table, added after the others: a
		// farmer has a row once an entry touched the receivable (entries
		// written before receivables existed never did).
		`CREATE TABLE IF NOT EXISTS ` + projection.Table(ctx, "ledger_receivables") + ` (
			farmer_id TEXT PRIMARY KEY,
			receivable_fen BIGINT NOT NULL,
			clawback_fen BIGINT NOT NULL,
			seq BIGINT NOT NULL)`,
	} {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("migrate ledger_balances: %w", err)
		}
	}
	return nil
}

// Apply implements projection.Projection.
func (BalancesProjection) Apply(ctx context.Context, tx *sql.Tx, rec eventstore.Recorded) error {
	msg, err := eventstore.Decode(rec)
	if err != nil {
		return err
	}
	switch e := msg.(type) {
	case *ledgerevents.FarmerRegistered:
		_, err = tx.ExecContext(ctx, `INSERT INTO `+projection.Table(ctx, "ledger_farmers")+`
			(farmer_id, name, county, cooperative, phone, payout_account, version)
			VALUES ($1, $2, $3, $4, $5, $6, $7)
			ON CONFLICT (farmer_id) DO NOTHING`,
			e.GetFarmerId(), domain.PersonalText(e.GetName(), e.GetSealedName()), e.GetCounty(), e.GetCooperative(),
			domain.PersonalText(e.GetPhone(), e.GetSealedPhone()), domain.PersonalText(e.GetPayoutAccount(), e.GetSealedPayoutAccount()), rec.Sequence)
		if err == nil {
			_, err = tx.ExecContext(ctx, `INSERT INTO `+projection.Table(ctx, "ledger_balances")+` (farmer_id, seq) VALUES ($1, $2)
				ON CONFLICT (farmer_id) DO NOTHING`, e.GetFarmerId(), rec.Sequence)
		}
	case *ledgerevents.PayoutAccountUpdated:
		_, err = tx.ExecContext(ctx, `UPDATE `+projection.Table(ctx, "ledger_farmers")+` SET payout_account = $1, version = $2 WHERE farmer_id = $3`,
			domain.PersonalText(e.GetPayoutAccount(), e.GetSealedPayoutAccount()), rec.Sequence, e.GetFarmerId())
	case *ledgerevents.FarmerErased:
		// Sealed values are unreadable without the key already; values of
		// events written before encryption were kept in clear: both go.
		_, err = tx.ExecContext(ctx, `UPDATE `+projection.Table(ctx, "ledger_farmers")+`
			SET name = $1, version = $2,
				phone = CASE WHEN phone = '' THEN '' ELSE $1 END,
				payout_account = CASE WHEN payout_account = '' THEN '' ELSE $1 END
			WHERE farmer_id = $3`,
			domain.Erased, rec.Sequence, e.GetFarmerId())
	case *ledgerevents.EntryPosted:
		err = applyEntry(ctx, tx, rec, e)
	}
	if err != nil {
		return fmt.Errorf("apply %s seq %d: %w", rec.Type, rec.Sequence, err)
	}
	return nil
}

func applyEntry(ctx context.Context, tx *sql.Tx, rec eventstore.Recorded, e *ledgerevents.EntryPosted) error {
	if err := domain.CheckBalanced(e.GetLines()); err != nil {
		return fmt.Errorf("entry %s: %w", e.GetEntryId(), err)
	}
	for i, l := range e.GetLines() {
		if _, err := tx.ExecContext(ctx, `INSERT INTO `+projection.Table(ctx, "ledger_journal")+`
			(entry_id, line_no, farmer_id, account, debit_fen, credit_fen, source_stream, source_seq, source_event_id, seq)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			e.GetEntryId(), i, e.GetFarmerId(), l.GetAccount(), l.GetDebitFen(), l.GetCreditFen(),
			e.GetSource().GetStream(), e.GetSource().GetSequence(), e.GetSource().GetEventId(), rec.Sequence); err != nil {
			return err
		}
	}
	d, err := domain.Effect(e.GetFarmerId(), e.GetLines())
	if err != nil {
		return fmt.Errorf("entry %s: %w", e.GetEntryId(), err)
	}
	// The new balance is summed here, with overflow checks, and written
	// whole: SQLite's "x = x + ?" would store an overflowing sum as a float
	// without a word.
	balances := projection.Table(ctx, "ledger_balances")
	b := domain.Balance{FarmerID: e.GetFarmerId()}
	err = tx.QueryRowContext(ctx, `SELECT purchases_fen, premiums_fen, held_fen, paid_fen FROM `+balances+` WHERE farmer_id = $1`,
		e.GetFarmerId()).Scan(projection.Exact(&b.PurchasesFen), projection.Exact(&b.PremiumsFen),
		projection.Exact(&b.HeldFen), projection.Exact(&b.PaidFen))
	if errors.Is(err, sql.ErrNoRows) {
		return nil // no such farmer in the read model: nothing to add to
	}
	if err != nil {
		return err
	}
	if b, err = b.Plus(d); err != nil {
		return fmt.Errorf("entry %s: %w", e.GetEntryId(), err)
	}
	_, err = tx.ExecContext(ctx, `UPDATE `+balances+`
		SET purchases_fen = $1, premiums_fen = $2, held_fen = $3, paid_fen = $4, seq = $5
		WHERE farmer_id = $6`, b.PurchasesFen, b.PremiumsFen, b.HeldFen, b.PaidFen, rec.Sequence, e.GetFarmerId())
	if err != nil || (d.ReceivableFen == 0 && d.ClawbackFen == 0) {
		return err
	}
	receivables := projection.Table(ctx, "ledger_receivables")
	var rec0, claw int64
	err = tx.QueryRowContext(ctx, `SELECT receivable_fen, clawback_fen FROM `+receivables+` WHERE farmer_id = $1`, e.GetFarmerId()).
		Scan(projection.Exact(&rec0), projection.Exact(&claw))
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	if rec0, err = money.Add(rec0, d.ReceivableFen); err == nil {
		claw, err = money.Add(claw, d.ClawbackFen)
	}
	if err != nil {
		return fmt.Errorf("entry %s: %w", e.GetEntryId(), err)
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO `+receivables+` (farmer_id, receivable_fen, clawback_fen, seq) VALUES ($1, $2, $3, $4)
		ON CONFLICT (farmer_id) DO UPDATE SET receivable_fen = excluded.receivable_fen, clawback_fen = excluded.clawback_fen, seq = excluded.seq`,
		e.GetFarmerId(), rec0, claw, rec.Sequence)
	return err
}

// BalanceReader reads the balances read model.
type BalanceReader struct{ db *projection.DB }

// NewBalanceReader returns a reader over db.
func NewBalanceReader(db *projection.DB) *BalanceReader { return &BalanceReader{db: db} }

// Balance returns a farmer's balance, or ErrNoBalance.
func (r *BalanceReader) Balance(ctx context.Context, farmerID string) (domain.Balance, error) {
	b := domain.Balance{FarmerID: farmerID}
	err := r.db.QueryRowContext(ctx, `SELECT b.purchases_fen, b.premiums_fen, b.held_fen, b.paid_fen,
			COALESCE(r.receivable_fen, 0), COALESCE(r.clawback_fen, 0)
		FROM ledger_balances b LEFT JOIN ledger_receivables r ON r.farmer_id = b.farmer_id WHERE b.farmer_id = $1`, farmerID).
		Scan(projection.Exact(&b.PurchasesFen), projection.Exact(&b.PremiumsFen), projection.Exact(&b.HeldFen), projection.Exact(&b.PaidFen),
			projection.Exact(&b.ReceivableFen), projection.Exact(&b.ClawbackFen))
	if errors.Is(err, sql.ErrNoRows) {
		return domain.Balance{}, fmt.Errorf("balance of %s: %w", farmerID, app.ErrNoBalance)
	}
	if err != nil {
		return domain.Balance{}, fmt.Errorf("balance of %s: %w", farmerID, err)
	}
	return b, nil
}
