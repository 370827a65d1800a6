package adapters

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/furrow/furrow/pkg/money"
	"github.com/furrow/furrow/pkg/projection"

	"github.com/furrow/furrow/services/farmer-ledger/app"
	"github.com/furrow/furrow/services/farmer-ledger/domain"
)

// FinanceReader reads the finance read model (FinanceProjection's tables,
// through the views of their live copy).
type FinanceReader struct{ db *projection.DB }

var _ app.Finance = (*FinanceReader)(nil)

// NewFinanceReader returns a reader over db.
func NewFinanceReader(db *projection.DB) *FinanceReader { return &FinanceReader{db: db} }

const payoutColumns = `payout_id, farmer_id, request_id, amount_fen, currency, payout_account, status,
	provider_reference, failure_reason, requested_seq, requested_at, completed_at`

func scanPayout(row interface{ Scan(...any) error }) (app.PayoutView, error) {
	var (
		p                        app.PayoutView
		status                   string
		requestedAt, completedAt int64
		seq                      int64
	)
	if err := row.Scan(&p.ID, &p.FarmerID, &p.RequestID, &p.AmountFen, &p.Currency, &p.Account, &status,
		&p.ProviderRef, &p.Reason, &seq, &requestedAt, &completedAt); err != nil {
		return app.PayoutView{}, err
	}
	st, ok := domain.ParsePayoutStatus(status)
	if !ok {
		return app.PayoutView{}, fmt.Errorf("payout %s has unknown status %q", p.ID, status)
	}
	p.Status, p.RequestedSeq = st, uint64(seq)
	p.RequestedAt = fromNanos(requestedAt)
	p.CompletedAt = fromNanos(completedAt)
	return p, nil
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// Payout implements app.Finance.
func (r *FinanceReader) Payout(ctx context.Context, payoutID string) (app.PayoutView, error) {
	p, err := scanPayout(r.db.QueryRowContext(ctx, `SELECT `+payoutColumns+` FROM `+tablePayouts+` WHERE payout_id = $1`, payoutID))
	if errors.Is(err, sql.ErrNoRows) {
		return app.PayoutView{}, fmt.Errorf("payout %s: %w", payoutID, app.ErrNotFound)
	}
	if err != nil {
		return app.PayoutView{}, fmt.Errorf("payout %s: %w", payoutID, err)
	}
	return p, nil
}

// Payouts implements app.Finance.
func (r *FinanceReader) Payouts(ctx context.Context, f app.PayoutFilter) ([]app.PayoutView, error) {
	q := `SELECT ` + payoutColumns + ` FROM ` + tablePayouts + ` WHERE requested_seq > $1`
	args := []any{int64(f.AfterSeq)}
	if f.FarmerID != "" {
		args = append(args, f.FarmerID)
		q += fmt.Sprintf(` AND farmer_id = $%d`, len(args))
	}
	if f.Status != 0 {
		args = append(args, f.Status.String())
		q += fmt.Sprintf(` AND status = $%d`, len(args))
	}
	args = append(args, f.Limit)
	q += fmt.Sprintf(` ORDER BY requested_seq LIMIT $%d`, len(args))
	return r.queryPayouts(ctx, q, args...)
}

func (r *FinanceReader) queryPayouts(ctx context.Context, q string, args ...any) ([]app.PayoutView, error) {
	rows, err := r.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("payouts: %w", err)
	}
	defer rows.Close()
	var out []app.PayoutView
	for rows.Next() {
		p, err := scanPayout(rows)
		if err != nil {
			return nil, fmt.Errorf("payouts: %w", err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// idChunk bounds the placeholders of one IN list.
const idChunk = 500

// ReconciliationPayouts implements app.Finance.
func (r *FinanceReader) ReconciliationPayouts(ctx context.Context, period domain.Period, ids []string) ([]domain.LedgerPayout, error) {
	from, to := int64(1), int64(math.MaxInt64)
	if !period.From.IsZero() {
		from = period.From.UnixNano()
	}
	if !period.To.IsZero() {
		to = period.To.UnixNano()
	}
	found, err := r.queryPayouts(ctx, `SELECT `+payoutColumns+` FROM `+tablePayouts+`
		WHERE status IN ($1, $2) AND completed_at >= $3 AND completed_at < $4 ORDER BY requested_seq`,
		domain.PayoutStatusSettled.String(), domain.PayoutStatusFailed.String(), from, to)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, p := range found {
		seen[p.ID] = true
	}
	var missing []string
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			missing = append(missing, id)
		}
	}
	for len(missing) > 0 {
		chunk := missing[:min(idChunk, len(missing))]
		missing = missing[len(chunk):]
		ph := make([]string, len(chunk))
		args := make([]any, len(chunk))
		for i, id := range chunk {
			ph[i], args[i] = fmt.Sprintf("$%d", i+1), id
		}
		more, err := r.queryPayouts(ctx, `SELECT `+payoutColumns+` FROM `+tablePayouts+`
			WHERE payout_id IN (`+strings.Join(ph, ", ")+`)`, args...)
		if err != nil {
			return nil, err
		}
		found = append(found, more...)
	}
	out := make([]domain.LedgerPayout, len(found))
	for i, p := range found {
		out[i] = domain.LedgerPayout{
			ID: p.ID, FarmerID: p.FarmerID, AmountFen: p.AmountFen, Currency: p.Currency,
			Status: p.Status, ProviderRef: p.ProviderRef, CompletedAt: p.CompletedAt,
		}
	}
	return out, nil
}

// sumColumns sums a farmer's entries' effects.
const sumColumns = `COALESCE(SUM(payable_fen), 0), COALESCE(SUM(premium_fen), 0),
	COALESCE(SUM(held_fen), 0), COALESCE(SUM(paid_fen), 0)`

// sumDest scans sumColumns (and, with last, the last sequence) exactly:
// PostgreSQL's SUM of BIGINT is NUMERIC, and a sum beyond int64 is an error
// wrapping money.ErrOverflow, never a rounded or wrapped number.
func sumDest(b *domain.Balance, last *int64) []any {
	dest := []any{projection.Exact(&b.PurchasesFen), projection.Exact(&b.PremiumsFen),
		projection.Exact(&b.HeldFen), projection.Exact(&b.PaidFen)}
	if last != nil {
		dest = append(dest, last)
	}
	return dest
}

// querier is a database or a transaction.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// addReceivable adds to b the farmer's receivable and clawback accounts as
// the entries matching cond (on e, with $3 its bound) leave them: they are
// summed from the entries' lines, which hold them (the entries table keeps
// the four older accounts' effects in columns).
func addReceivable(ctx context.Context, q querier, b *domain.Balance, cond string, bound int64) error {
	var recDr, recCr, clawDr, clawCr int64
	err := q.QueryRowContext(ctx, `SELECT
			COALESCE(SUM(CASE WHEN l.account = $2 THEN l.debit_fen ELSE 0 END), 0),
			COALESCE(SUM(CASE WHEN l.account = $2 THEN l.credit_fen ELSE 0 END), 0),
			COALESCE(SUM(CASE WHEN l.account = $4 THEN l.debit_fen ELSE 0 END), 0),
			COALESCE(SUM(CASE WHEN l.account = $4 THEN l.credit_fen ELSE 0 END), 0)
		FROM `+tableEntryLines+` l JOIN `+tableEntries+` e ON e.entry_id = l.entry_id
		WHERE e.farmer_id = $1 AND (l.account = $2 OR l.account = $4) AND `+cond,
		b.FarmerID, domain.FarmerAccount(b.FarmerID, domain.FarmerReceivable), bound, domain.FarmerAccount(b.FarmerID, domain.FarmerClawback)).
		Scan(projection.Exact(&recDr), projection.Exact(&recCr), projection.Exact(&clawDr), projection.Exact(&clawCr))
	if err != nil {
		return projection.SumError(err)
	}
	if b.ReceivableFen, err = money.Sub(recDr, recCr); err == nil {
		b.ClawbackFen, err = money.Sub(clawCr, clawDr)
	}
	return err
}

// BalanceAt implements app.Finance.
func (r *FinanceReader) BalanceAt(ctx context.Context, farmerID string, at app.BalancePoint) (domain.Balance, uint64, error) {
	q := `SELECT ` + sumColumns + `, COALESCE(MAX(seq), 0) FROM ` + tableEntries + ` WHERE farmer_id = $1 AND `
	var bound int64
	cond := `e.seq <= $3`
	if at.Seq > 0 {
		q += `seq <= $2`
		bound = int64(at.Seq)
	} else {
		q += `posted_at <= $2`
		cond = `e.posted_at <= $3`
		bound = at.Time.UnixNano()
	}
	b := domain.Balance{FarmerID: farmerID}
	var last int64
	if err := r.db.QueryRowContext(ctx, q, farmerID, bound).Scan(sumDest(&b, &last)...); err != nil {
		return domain.Balance{}, 0, fmt.Errorf("balance of %s at %+v: %w", farmerID, at, projection.SumError(err))
	}
	if err := addReceivable(ctx, r.db, &b, cond, bound); err != nil {
		return domain.Balance{}, 0, fmt.Errorf("balance of %s at %+v: %w", farmerID, at, err)
	}
	return b, uint64(last), nil
}

// Statement implements app.Finance. It reads in one read-only transaction,
// so the opening, the entries and the closing are of one snapshot; the
// closing is summed by its own query, not from the entries.
func (r *FinanceReader) Statement(ctx context.Context, farmerID string, from, to time.Time) (app.Statement, error) {
	st := app.Statement{From: from, To: to}
	tx, err := r.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return app.Statement{}, fmt.Errorf("statement of %s: %w", farmerID, err)
	}
	defer tx.Rollback() // read-only
	fromN, toN := int64(math.MinInt64), to.UnixNano()
	if !from.IsZero() {
		fromN = from.UnixNano()
	}
	sum := func(before int64) (domain.Balance, error) {
		b := domain.Balance{FarmerID: farmerID}
		err := tx.QueryRowContext(ctx, `SELECT `+sumColumns+` FROM `+tableEntries+` WHERE farmer_id = $1 AND posted_at < $2`,
			farmerID, before).Scan(sumDest(&b, nil)...)
		if err != nil {
			return b, projection.SumError(err)
		}
		return b, addReceivable(ctx, tx, &b, `e.posted_at < $3`, before)
	}
	if st.Opening, err = sum(fromN); err != nil {
		return app.Statement{}, fmt.Errorf("statement of %s: opening: %w", farmerID, err)
	}
	rows, err := tx.QueryContext(ctx, `SELECT entry_id, seq, posted_at, description, source_stream, source_seq,
			source_event_id, source_type, payout_id, payable_fen, premium_fen, held_fen, paid_fen
		FROM `+tableEntries+` WHERE farmer_id = $1 AND posted_at >= $2 AND posted_at < $3 ORDER BY seq`, farmerID, fromN, toN)
	if err != nil {
		return app.Statement{}, fmt.Errorf("statement of %s: entries: %w", farmerID, err)
	}
	index := map[string]int{}
	for rows.Next() {
		var (
			e           app.StatementEntry
			seq, srcSeq int64
			posted      int64
		)
		e.Change.FarmerID = farmerID
		if err := rows.Scan(&e.EntryID, &seq, &posted, &e.Description, &e.Source.Stream, &srcSeq, &e.Source.EventID,
			&e.Source.EventType, &e.PayoutID, &e.Change.PurchasesFen, &e.Change.PremiumsFen, &e.Change.HeldFen, &e.Change.PaidFen); err != nil {
			rows.Close()
			return app.Statement{}, fmt.Errorf("statement of %s: entries: %w", farmerID, err)
		}
		e.Seq, e.Source.Sequence, e.PostedAt = uint64(seq), uint64(srcSeq), fromNanos(posted)
		index[e.EntryID] = len(st.Entries)
		st.Entries = append(st.Entries, e)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return app.Statement{}, fmt.Errorf("statement of %s: entries: %w", farmerID, err)
	}
	lines, err := tx.QueryContext(ctx, `SELECT l.entry_id, l.account, l.debit_fen, l.credit_fen
		FROM `+tableEntryLines+` l JOIN `+tableEntries+` e ON e.entry_id = l.entry_id
		WHERE e.farmer_id = $1 AND e.posted_at >= $2 AND e.posted_at < $3 ORDER BY e.seq, l.line_no`, farmerID, fromN, toN)
	if err != nil {
		return app.Statement{}, fmt.Errorf("statement of %s: lines: %w", farmerID, err)
	}
	for lines.Next() {
		var (
			id string
			l  app.JournalLine
		)
		if err := lines.Scan(&id, &l.Account, &l.DebitFen, &l.CreditFen); err != nil {
			lines.Close()
			return app.Statement{}, fmt.Errorf("statement of %s: lines: %w", farmerID, err)
		}
		if i, ok := index[id]; ok {
			e := &st.Entries[i]
			e.Lines = append(e.Lines, l)
			switch l.Account {
			case domain.FarmerAccount(farmerID, domain.FarmerReceivable):
				e.Change.ReceivableFen += l.DebitFen - l.CreditFen // one entry's lines: bounded
			case domain.FarmerAccount(farmerID, domain.FarmerClawback):
				e.Change.ClawbackFen += l.CreditFen - l.DebitFen
			}
		}
	}
	lines.Close()
	if err := lines.Err(); err != nil {
		return app.Statement{}, fmt.Errorf("statement of %s: lines: %w", farmerID, err)
	}
	if st.Closing, err = sum(toN); err != nil {
		return app.Statement{}, fmt.Errorf("statement of %s: closing: %w", farmerID, err)
	}
	return st, nil
}

// Accounts implements app.Finance.
func (r *FinanceReader) Accounts(ctx context.Context) ([]domain.AccountTotal, int64, error) {
	tx, err := r.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, 0, fmt.Errorf("accounts: %w", err)
	}
	defer tx.Rollback() // read-only
	rows, err := tx.QueryContext(ctx, `SELECT account, debit_fen, credit_fen FROM `+tableAccounts+` ORDER BY account`)
	if err != nil {
		return nil, 0, fmt.Errorf("accounts: %w", err)
	}
	defer rows.Close()
	var out []domain.AccountTotal
	for rows.Next() {
		var a domain.AccountTotal
		if err := rows.Scan(&a.Account, projection.Exact(&a.DebitFen), projection.Exact(&a.CreditFen)); err != nil {
			return nil, 0, fmt.Errorf("accounts: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("accounts: %w", err)
	}
	var entries int64
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+tableEntries).Scan(&entries); err != nil {
		return nil, 0, fmt.Errorf("accounts: entries: %w", err)
	}
	return out, entries, nil
}

// Resolutions implements app.Finance.
func (r *FinanceReader) Resolutions(ctx context.Context, breakIDs []string) (map[string]app.Resolution, error) {
	out := map[string]app.Resolution{}
	for len(breakIDs) > 0 {
		chunk := breakIDs[:min(idChunk, len(breakIDs))]
		breakIDs = breakIDs[len(chunk):]
		ph := make([]string, len(chunk))
		args := make([]any, len(chunk))
		for i, id := range chunk {
			ph[i], args[i] = fmt.Sprintf("$%d", i+1), id
		}
		rows, err := r.db.QueryContext(ctx, `SELECT break_id, decision, note, actor, resolved_at, seq FROM `+tableResolutions+`
			WHERE break_id IN (`+strings.Join(ph, ", ")+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("resolutions: %w", err)
		}
		for rows.Next() {
			var (
				res     app.Resolution
				at, seq int64
			)
			if err := rows.Scan(&res.BreakID, &res.Decision, &res.Note, &res.Actor, &at, &seq); err != nil {
				rows.Close()
				return nil, fmt.Errorf("resolutions: %w", err)
			}
			res.ResolvedAt, res.Seq = fromNanos(at), uint64(seq)
			out[res.BreakID] = res
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("resolutions: %w", err)
		}
	}
	return out, nil
}

// FarmerDirectory lists farmers from the balances read model's
// ledger_farmers table.
type FarmerDirectory struct{ db *projection.DB }

var _ app.Directory = (*FarmerDirectory)(nil)

// NewFarmerDirectory returns a directory over db.
func NewFarmerDirectory(db *projection.DB) *FarmerDirectory { return &FarmerDirectory{db: db} }

// Farmers implements app.Directory.
func (d *FarmerDirectory) Farmers(ctx context.Context, f app.FarmerFilter) ([]app.FarmerRow, error) {
	q := `SELECT farmer_id, name, county, cooperative, phone, payout_account FROM ledger_farmers WHERE farmer_id > $1`
	args := []any{f.AfterID}
	if f.County != "" {
		args = append(args, f.County)
		q += fmt.Sprintf(` AND county = $%d`, len(args))
	}
	if f.Cooperative != "" {
		args = append(args, f.Cooperative)
		q += fmt.Sprintf(` AND cooperative = $%d`, len(args))
	}
	args = append(args, f.Limit)
	q += fmt.Sprintf(` ORDER BY farmer_id LIMIT $%d`, len(args))
	rows, err := d.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list farmers: %w", err)
	}
	defer rows.Close()
	var out []app.FarmerRow
	for rows.Next() {
		var r app.FarmerRow
		if err := rows.Scan(&r.FarmerID, &r.Name, &r.County, &r.Cooperative, &r.Phone, &r.PayoutAccount); err != nil {
			return nil, fmt.Errorf("list farmers: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
