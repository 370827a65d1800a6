package adapters

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/projection"

	"github.com/furrow/furrow/services/procurement/app"
	"github.com/furrow/furrow/services/procurement/domain"
)

// ReadModel answers procurement's queries from its projections. A query
// reading several tables does so in one read-only transaction, so it sees
// one consistent state of the projections.
type ReadModel struct{ db *projection.DB }

var _ app.ReadModel = (*ReadModel)(nil)

// NewReadModel returns a reader over db.
func NewReadModel(db *projection.DB) *ReadModel { return &ReadModel{db: db} }

func (r *ReadModel) snapshot(ctx context.Context, what string, fn func(tx *sql.Tx) error) error {
	tx, err := r.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer tx.Rollback() // read-only: nothing to keep
	if err := fn(tx); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

const totalsColumns = `key, orders, ordered_grams, deliveries, delivered_grams, delivered_fen, rejected_grams`

func scanTotals(rows *sql.Rows) ([]app.Progress, error) {
	defer rows.Close()
	var out []app.Progress
	for rows.Next() {
		var p app.Progress
		if err := rows.Scan(&p.Key, &p.Orders, &p.OrderedGrams, &p.Deliveries, &p.DeliveredGrams, &p.DeliveredFen, &p.RejectedGrams); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// ProgramProgress implements app.ReadModel.
func (r *ReadModel) ProgramProgress(ctx context.Context, programID string) (app.ProgramProgress, error) {
	pp := app.ProgramProgress{ProgramID: programID}
	err := r.snapshot(ctx, "progress of programme "+programID, func(tx *sql.Tx) error {
		var closed int
		err := tx.QueryRowContext(ctx, `SELECT name, budget_fen, reserved_fen, closed FROM procurement_programs
			WHERE program_id = $1`, programID).Scan(&pp.Name, &pp.BudgetFen, &pp.ReservedFen, &closed)
		if errors.Is(err, sql.ErrNoRows) {
			return app.ErrNotProjected
		}
		if err != nil {
			return err
		}
		pp.Closed = closed != 0
		rows, err := tx.QueryContext(ctx, `SELECT dimension, `+totalsColumns+` FROM procurement_totals
			WHERE scope = $1 ORDER BY dimension, key`, programID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				dim string
				p   app.Progress
			)
			if err := rows.Scan(&dim, &p.Key, &p.Orders, &p.OrderedGrams, &p.Deliveries, &p.DeliveredGrams, &p.DeliveredFen, &p.RejectedGrams); err != nil {
				return err
			}
			switch dim {
			case dimTotal:
				pp.Total = p
			case dimProduct:
				pp.ByProduct = append(pp.ByProduct, p)
			case dimCounty:
				pp.ByCounty = append(pp.ByCounty, p)
			}
		}
		return rows.Err()
	})
	return pp, err
}

const orderColumns = `order_id, program_id, farmer_id, county, product, prices, ordered_grams, tolerance_bp, max_grams,
	window_start, window_end, origin_warehouse, status, reserved_fen, delivered_grams, delivered_fen, rejected_grams,
	deliveries, placed_seq, seq`

// Orders implements app.ReadModel: keyset paging on the placing sequence,
// so pages stay stable while orders are being placed.
func (r *ReadModel) Orders(ctx context.Context, f app.OrderFilter, page app.Page) ([]app.OrderRow, uint64, error) {
	after, err := cursor(page.Cursor)
	if err != nil {
		return nil, 0, err
	}
	var (
		where []string
		args  []any
	)
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	add("placed_seq > $%d", after)
	if f.ProgramID != "" {
		add("program_id = $%d", f.ProgramID)
	}
	if f.FarmerID != "" {
		add("farmer_id = $%d", f.FarmerID)
	}
	if f.County != "" {
		add("county = $%d", f.County)
	}
	if f.Status != "" {
		add("status = $%d", string(f.Status))
	}
	args = append(args, page.Size+1)
	query := `SELECT ` + orderColumns + ` FROM procurement_orders WHERE ` + strings.Join(where, " AND ") +
		fmt.Sprintf(` ORDER BY placed_seq LIMIT $%d`, len(args))
	var (
		out  []app.OrderRow
		last []int64
	)
	err = r.snapshot(ctx, "list orders", func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, query, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				o                      app.OrderRow
				prices, status         string
				start, end, placed, sq int64
			)
			if err := rows.Scan(&o.OrderID, &o.ProgramID, &o.FarmerID, &o.County, &o.Product, &prices, &o.OrderedGrams,
				&o.ToleranceBP, &o.MaxGrams, &start, &end, &o.OriginWarehouse, &status, &o.ReservedFen, &o.DeliveredGrams,
				&o.DeliveredFen, &o.RejectedGrams, &o.Deliveries, &placed, &sq); err != nil {
				return err
			}
			if o.Prices, err = decodePrices(prices); err != nil {
				return err
			}
			o.WindowStart, o.WindowEnd = time.Unix(0, start).UTC(), time.Unix(0, end).UTC()
			o.Status, o.Version = domain.OrderStatus(status), uint64(sq)
			out = append(out, o)
			last = append(last, placed)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, 0, err
	}
	var next uint64
	if len(out) > page.Size {
		out = out[:page.Size]
		next = uint64(last[page.Size-1])
	}
	return out, next, nil
}

// FarmerDeliveries implements app.ReadModel: newest first, keyset paging
// on the recording sequence.
func (r *ReadModel) FarmerDeliveries(ctx context.Context, farmerID string, page app.Page) ([]domain.DeliveryView, uint64, error) {
	before, err := cursor(page.Cursor)
	if err != nil {
		return nil, 0, err
	}
	if before == 0 {
		before = 1<<63 - 1
	}
	var (
		out  []domain.DeliveryView
		last []int64
	)
	err = r.snapshot(ctx, "deliveries of farmer "+farmerID, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT delivery_id, order_id, program_id, farmer_id, county, product, grade,
				net_grams, price_fen_per_kg, amount_fen, weighed_at, warehouse, corrections, recorded_seq, seq
			FROM procurement_deliveries WHERE farmer_id = $1 AND recorded_seq < $2
			ORDER BY recorded_seq DESC LIMIT $3`, farmerID, before, page.Size+1)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				d                domain.DeliveryView
				at, recorded, sq int64
			)
			if err := rows.Scan(&d.DeliveryID, &d.OrderID, &d.ProgramID, &d.FarmerID, &d.County, &d.Product, &d.Grade,
				&d.NetGrams, &d.PriceFenPerKg, &d.AmountFen, &at, &d.Warehouse, &d.Corrections, &recorded, &sq); err != nil {
				return err
			}
			d.WeighedAt, d.Version = time.Unix(0, at).UTC(), uint64(sq)
			out = append(out, d)
			last = append(last, recorded)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, 0, err
	}
	var next uint64
	if len(out) > page.Size {
		out = out[:page.Size]
		next = uint64(last[page.Size-1])
	}
	return out, next, nil
}

// CountyTotals implements app.ReadModel: what was bought in each county,
// and how many farmers of it are registered with the ledger (from
// procurement's own copy of the registrations).
func (r *ReadModel) CountyTotals(ctx context.Context) ([]app.CountyTotals, error) {
	var out []app.CountyTotals
	err := r.snapshot(ctx, "county totals", func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT `+totalsColumns+` FROM procurement_totals
			WHERE scope = $1 AND dimension = $2`, allScope, dimCounty)
		if err != nil {
			return err
		}
		bought, err := scanTotals(rows)
		if err != nil {
			return err
		}
		byCounty := map[string]*app.CountyTotals{}
		get := func(county string) *app.CountyTotals {
			c, ok := byCounty[county]
			if !ok {
				c = &app.CountyTotals{County: county, Progress: app.Progress{Key: county}}
				byCounty[county] = c
			}
			return c
		}
		for _, p := range bought {
			get(p.Key).Progress = p
		}
		rows, err = tx.QueryContext(ctx, `SELECT county, COUNT(*) FROM procurement_farmers GROUP BY county`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				county string
				n      int64
			)
			if err := rows.Scan(&county, &n); err != nil {
				return err
			}
			get(county).Farmers = n
		}
		if err := rows.Err(); err != nil {
			return err
		}
		for _, c := range byCounty {
			out = append(out, *c)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b app.CountyTotals) int { return strings.Compare(a.County, b.County) })
	return out, nil
}

// cursor is a page cursor as the BIGINT sequence columns hold it.
func cursor(seq uint64) (int64, error) {
	if seq > math.MaxInt64 {
		return 0, failure.Invalid("page_token", "is not a token this list returned (sequence %d out of range)", seq)
	}
	return int64(seq), nil
}
