package adapters

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"

	procurementevents "github.com/furrow/furrow/proto/furrow/procurement/events/v1"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/money"
	"github.com/furrow/furrow/pkg/projection"

	"github.com/furrow/furrow/services/procurement/domain"
)

// PurchasesProjection keeps programmes, orders, deliveries and running
// totals in SQL, fed by the whole PROCUREMENT stream. Totals are kept per
// (scope, dimension, key): scope is a programme id, or allScope for every
// purchase (ad-hoc ones included); dimension is "total", "product" or
// "county". A correction changes the totals by the difference between the
// delivery as it was and as corrected, so they always equal the sum over
// the deliveries as last corrected, however often a delivery is corrected.
type PurchasesProjection struct{}

var _ projection.Versioned = PurchasesProjection{}

// Tables of the purchases read model (logical names: readers query them,
// views of the live copy).
const (
	tablePrograms   = "procurement_programs"
	tableOrders     = "procurement_orders"
	tableDeliveries = "procurement_deliveries"
	tableTotals     = "procurement_totals"
)

// Tables implements projection.Versioned: Migrate and Apply write a copy's
// own tables (projection.Table), and Apply reads only those, so a rebuild
// beside the live copy reproduces it exactly.
func (PurchasesProjection) Tables() []string {
	return []string{tablePrograms, tableOrders, tableDeliveries, tableTotals}
}

var _ projection.LateIndexed = PurchasesProjection{}

// LateIndexes implements projection.LateIndexed: Apply finds rows by their
// keys only, so a rebuild builds the readers' indexes of orders and
// deliveries at the end.
func (PurchasesProjection) LateIndexes() []string {
	return []string{"procurement_orders_program", "procurement_orders_farmer", "procurement_orders_county", "procurement_deliveries_farmer"}
}

// allScope is the totals scope of every purchase; no programme id can be
// "*" (ids are letters, digits, '-' and '_').
const allScope = "*"

// Totals dimensions.
const (
	dimTotal   = "total"
	dimProduct = "product"
	dimCounty  = "county"
)

// Name implements projection.Projection.
func (PurchasesProjection) Name() string { return "procurement_purchases" }

// Stream implements projection.Projection.
func (PurchasesProjection) Stream() string { return domain.Stream }

// Subjects implements projection.Projection: procurement's subjects, the
// whole stream but a message stored under another service's subject (a
// server's delivery someone addressed to one of ours: permissions cannot
// stop that, see deploy/README.md).
func (PurchasesProjection) Subjects() []string { return []string{domain.Subjects} }

// Migrate implements projection.Projection. Times are Unix nanoseconds
// (BIGINT), portable between SQLite and PostgreSQL.
func (PurchasesProjection) Migrate(ctx context.Context, tx *sql.Tx) error {
	t := func(name string) string { return projection.Table(ctx, name) }
	for _, stmt := range []string{
		`CREATE TABLE IF NOT EXISTS ` + t(tablePrograms) + ` (
			program_id TEXT PRIMARY KEY,
			name TEXT NOT NULL,
			budget_fen BIGINT NOT NULL,
			reserved_fen BIGINT NOT NULL,
			closed INTEGER NOT NULL,
			seq BIGINT NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS ` + t(tableOrders) + ` (
			order_id TEXT PRIMARY KEY,
			program_id TEXT NOT NULL,
			farmer_id TEXT NOT NULL,
			county TEXT NOT NULL,
			product TEXT NOT NULL,
			prices TEXT NOT NULL,
			ordered_grams BIGINT NOT NULL,
			tolerance_bp INTEGER NOT NULL,
			max_grams BIGINT NOT NULL,
			window_start BIGINT NOT NULL,
			window_end BIGINT NOT NULL,
			origin_warehouse TEXT NOT NULL,
			status TEXT NOT NULL,
			reserved_fen BIGINT NOT NULL,
			delivered_grams BIGINT NOT NULL,
			delivered_fen BIGINT NOT NULL,
			rejected_grams BIGINT NOT NULL,
			deliveries BIGINT NOT NULL,
			placed_seq BIGINT NOT NULL,
			seq BIGINT NOT NULL)`,
		// Index names are per schema, not per table: each copy names its own.
		`CREATE INDEX IF NOT EXISTS ` + t("procurement_orders_program") + ` ON ` + t(tableOrders) + ` (program_id, placed_seq)`,
		`CREATE INDEX IF NOT EXISTS ` + t("procurement_orders_farmer") + ` ON ` + t(tableOrders) + ` (farmer_id, placed_seq)`,
		`CREATE INDEX IF NOT EXISTS ` + t("procurement_orders_county") + ` ON ` + t(tableOrders) + ` (county, placed_seq)`,
		`CREATE TABLE IF NOT EXISTS ` + t(tableDeliveries) + ` (
			delivery_id TEXT PRIMARY KEY,
			order_id TEXT NOT NULL,
			program_id TEXT NOT NULL,
			farmer_id TEXT NOT NULL,
			county TEXT NOT NULL,
			product TEXT NOT NULL,
			grade TEXT NOT NULL,
			net_grams BIGINT NOT NULL,
			price_fen_per_kg BIGINT NOT NULL,
			amount_fen BIGINT NOT NULL,
			weighed_at BIGINT NOT NULL,
			warehouse TEXT NOT NULL,
			corrections INTEGER NOT NULL,
			recorded_seq BIGINT NOT NULL,
			seq BIGINT NOT NULL)`,
		`CREATE INDEX IF NOT EXISTS ` + t("procurement_deliveries_farmer") + ` ON ` + t(tableDeliveries) + ` (farmer_id, recorded_seq)`,
		`CREATE TABLE IF NOT EXISTS ` + t(tableTotals) + ` (
			scope TEXT NOT NULL,
			dimension TEXT NOT NULL,
			key TEXT NOT NULL,
			orders BIGINT NOT NULL,
			ordered_grams BIGINT NOT NULL,
			deliveries BIGINT NOT NULL,
			delivered_grams BIGINT NOT NULL,
			delivered_fen BIGINT NOT NULL,
			rejected_grams BIGINT NOT NULL,
			PRIMARY KEY (scope, dimension, key))`,
	} {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("migrate procurement_purchases: %w", err)
		}
	}
	return nil
}

// Apply implements projection.Projection.
func (PurchasesProjection) Apply(ctx context.Context, tx *sql.Tx, rec eventstore.Recorded) error {
	msg, err := eventstore.Decode(rec)
	if err != nil {
		return err
	}
	seq := int64(rec.Sequence)
	switch e := msg.(type) {
	case *procurementevents.ProgramOpened:
		err = applyProgramOpened(ctx, tx, seq, e)
	case *procurementevents.ProgramClosed:
		err = exec(ctx, tx, `UPDATE `+projection.Table(ctx, tablePrograms)+` SET closed = 1, seq = $1 WHERE program_id = $2`, seq, e.GetProgramId())
	case *procurementevents.BudgetReserved:
		err = applyReserved(ctx, tx, seq, e.GetProgramId(), e.GetAmountFen())
	case *procurementevents.BudgetReleased:
		var release int64
		if release, err = money.Sub(0, e.GetAmountFen()); err == nil {
			err = applyReserved(ctx, tx, seq, e.GetProgramId(), release)
		}
	case *procurementevents.OrderPlaced:
		err = applyOrderPlaced(ctx, tx, seq, e)
	case *procurementevents.OrderCancelled:
		err = applyOrderCancelled(ctx, tx, seq, e)
	case *procurementevents.DeliveryRecorded:
		err = applyDeliveryRecorded(ctx, tx, seq, e)
	case *procurementevents.DeliveryCorrected:
		err = applyDeliveryCorrected(ctx, tx, seq, e)
	}
	if err != nil {
		return fmt.Errorf("apply %s seq %d: %w", rec.Type, rec.Sequence, err)
	}
	return nil
}

func exec(ctx context.Context, tx *sql.Tx, query string, args ...any) error {
	_, err := tx.ExecContext(ctx, query, args...)
	return err
}

// Every running total below is read, summed in Go with overflow checks,
// and written whole: SQLite's "x = x + ?" would store an overflowing sum
// as a float without a word (PostgreSQL fails with "bigint out of range",
// which does not say which total). An overflow fails the event, and the
// runner stops the projection at it, unhealthy and visible.

// applyReserved moves a programme's reserved budget by fen.
func applyReserved(ctx context.Context, tx *sql.Tx, seq int64, programID string, fen int64) error {
	table := projection.Table(ctx, tablePrograms)
	var reserved int64
	err := tx.QueryRowContext(ctx, `SELECT reserved_fen FROM `+table+` WHERE program_id = $1`, programID).Scan(projection.Exact(&reserved))
	if errors.Is(err, sql.ErrNoRows) {
		return nil // no such programme in the read model: nothing to move
	}
	if err != nil {
		return err
	}
	if reserved, err = money.Add(reserved, fen); err != nil {
		return fmt.Errorf("programme %s: reserved budget: %w", programID, err)
	}
	return exec(ctx, tx, `UPDATE `+table+` SET reserved_fen = $1, seq = $2 WHERE program_id = $3`, reserved, seq, programID)
}

func applyProgramOpened(ctx context.Context, tx *sql.Tx, seq int64, e *procurementevents.ProgramOpened) error {
	if err := exec(ctx, tx, `INSERT INTO `+projection.Table(ctx, tablePrograms)+` (program_id, name, budget_fen, reserved_fen, closed, seq)
		VALUES ($1, $2, $3, 0, 0, $4) ON CONFLICT (program_id) DO NOTHING`,
		e.GetProgramId(), e.GetName(), e.GetBudgetFen(), seq); err != nil {
		return err
	}
	// Zero rows for every product and county, so progress lists them all
	// before anything is delivered.
	keys := []totalsKey{{e.GetProgramId(), dimTotal, ""}}
	for _, p := range e.GetProducts() {
		keys = append(keys, totalsKey{e.GetProgramId(), dimProduct, p})
	}
	for _, c := range e.GetCounties() {
		keys = append(keys, totalsKey{e.GetProgramId(), dimCounty, c})
	}
	return bump(ctx, tx, totals{}, keys...)
}

func applyOrderPlaced(ctx context.Context, tx *sql.Tx, seq int64, e *procurementevents.OrderPlaced) error {
	if err := exec(ctx, tx, `INSERT INTO `+projection.Table(ctx, tableOrders)+` (order_id, program_id, farmer_id, county, product, prices,
			ordered_grams, tolerance_bp, max_grams, window_start, window_end, origin_warehouse, status,
			reserved_fen, delivered_grams, delivered_fen, rejected_grams, deliveries, placed_seq, seq)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 0, 0, 0, 0, $15, $15)
		ON CONFLICT (order_id) DO NOTHING`,
		e.GetOrderId(), e.GetProgramId(), e.GetFarmerId(), e.GetCounty(), e.GetProduct(), encodePrices(e.GetPrices()),
		e.GetOrderedGrams(), e.GetToleranceBp(), e.GetMaxGrams(),
		e.GetWindowStart().AsTime().UnixNano(), e.GetWindowEnd().AsTime().UnixNano(), e.GetOriginWarehouse(),
		string(domain.OrderOpen), e.GetReservedFen(), seq); err != nil {
		return err
	}
	return bump(ctx, tx, totals{orders: 1, orderedGrams: e.GetOrderedGrams()},
		orderKeys(e.GetProgramId(), e.GetProduct(), e.GetCounty())...)
}

func applyOrderCancelled(ctx context.Context, tx *sql.Tx, seq int64, e *procurementevents.OrderCancelled) error {
	var product, county string
	var ordered, reserved int64
	err := tx.QueryRowContext(ctx, `SELECT product, county, ordered_grams, reserved_fen FROM `+projection.Table(ctx, tableOrders)+` WHERE order_id = $1`,
		e.GetOrderId()).Scan(&product, &county, projection.Exact(&ordered), projection.Exact(&reserved))
	if err != nil {
		return fmt.Errorf("order %s: %w", e.GetOrderId(), err)
	}
	if reserved, err = money.Sub(reserved, e.GetReleasedFen()); err != nil {
		return fmt.Errorf("order %s: reserved budget: %w", e.GetOrderId(), err)
	}
	if err := exec(ctx, tx, `UPDATE `+projection.Table(ctx, tableOrders)+` SET status = $1, reserved_fen = $2, seq = $3
		WHERE order_id = $4`, string(domain.OrderCancelled), reserved, seq, e.GetOrderId()); err != nil {
		return err
	}
	// Ordered grams count orders that still stand.
	d, err := totals{}.minus(totals{orderedGrams: ordered})
	if err != nil {
		return fmt.Errorf("order %s: %w", e.GetOrderId(), err)
	}
	return bump(ctx, tx, d, orderKeys(e.GetProgramId(), product, county)...)
}

// delivered is one delivery's share of the totals.
func delivered(grade string, grams, amount int64) totals {
	if grade == domain.GradeRejected {
		return totals{rejectedGrams: grams, deliveredFen: amount}
	}
	return totals{deliveredGrams: grams, deliveredFen: amount}
}

func applyDeliveryRecorded(ctx context.Context, tx *sql.Tx, seq int64, e *procurementevents.DeliveryRecorded) error {
	if err := exec(ctx, tx, `INSERT INTO `+projection.Table(ctx, tableDeliveries)+` (delivery_id, order_id, program_id, farmer_id, county,
			product, grade, net_grams, price_fen_per_kg, amount_fen, weighed_at, warehouse, corrections, recorded_seq, seq)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 0, $13, $13)
		ON CONFLICT (delivery_id) DO NOTHING`,
		e.GetDeliveryId(), e.GetOrderId(), e.GetProgramId(), e.GetFarmerId(), e.GetCounty(), e.GetProduct(),
		e.GetGrade(), e.GetNetGrams(), e.GetPriceFenPerKg(), e.GetAmountFen(), e.GetWeighedAt().AsTime().UnixNano(),
		e.GetWarehouse(), seq); err != nil {
		return err
	}
	d := delivered(e.GetGrade(), e.GetNetGrams(), e.GetAmountFen())
	d.deliveries = 1
	return applyDelta(ctx, tx, seq, e.GetOrderId(), e.GetProgramId(), e.GetProduct(), e.GetCounty(), d)
}

func applyDeliveryCorrected(ctx context.Context, tx *sql.Tx, seq int64, e *procurementevents.DeliveryCorrected) error {
	var (
		orderID, programID, product, county, grade string
		grams, amount                              int64
	)
	// The delivery as this copy has it so far, not as the live copy (the
	// bare name) has it: a shadow replaying the stream must subtract the
	// delivery as it was before this correction, not after the last one.
	err := tx.QueryRowContext(ctx, `SELECT order_id, program_id, product, county, grade, net_grams, amount_fen
		FROM `+projection.Table(ctx, tableDeliveries)+` WHERE delivery_id = $1`, e.GetDeliveryId()).
		Scan(&orderID, &programID, &product, &county, &grade, projection.Exact(&grams), projection.Exact(&amount))
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("correction of delivery %s, which is not in the read model", e.GetDeliveryId())
	}
	if err != nil {
		return err
	}
	if err := exec(ctx, tx, `UPDATE `+projection.Table(ctx, tableDeliveries)+` SET grade = $1, net_grams = $2, price_fen_per_kg = $3,
			amount_fen = $4, corrections = $5, seq = $6 WHERE delivery_id = $7`,
		e.GetGrade(), e.GetNetGrams(), e.GetPriceFenPerKg(), e.GetAmountFen(), e.GetCorrectionNumber(), seq,
		e.GetDeliveryId()); err != nil {
		return err
	}
	d, err := delivered(e.GetGrade(), e.GetNetGrams(), e.GetAmountFen()).minus(delivered(grade, grams, amount))
	if err != nil {
		return fmt.Errorf("correction of delivery %s: %w", e.GetDeliveryId(), err)
	}
	return applyDelta(ctx, tx, seq, orderID, programID, product, county, d)
}

// applyDelta adds a change in deliveries to the order (if any) and the totals.
func applyDelta(ctx context.Context, tx *sql.Tx, seq int64, orderID, programID, product, county string, d totals) error {
	if orderID != "" {
		orders := projection.Table(ctx, tableOrders)
		var o totals
		err := tx.QueryRowContext(ctx, `SELECT delivered_grams, rejected_grams, delivered_fen, deliveries FROM `+orders+` WHERE order_id = $1`,
			orderID).Scan(projection.Exact(&o.deliveredGrams), projection.Exact(&o.rejectedGrams), projection.Exact(&o.deliveredFen), projection.Exact(&o.deliveries))
		switch {
		case errors.Is(err, sql.ErrNoRows): // no such order in the read model: nothing to add to
		case err != nil:
			return fmt.Errorf("order %s: %w", orderID, err)
		default:
			if o, err = o.plus(d); err != nil {
				return fmt.Errorf("order %s: %w", orderID, err)
			}
			if err := exec(ctx, tx, `UPDATE `+orders+` SET delivered_grams = $1, rejected_grams = $2, delivered_fen = $3, deliveries = $4,
					seq = $5 WHERE order_id = $6`,
				o.deliveredGrams, o.rejectedGrams, o.deliveredFen, o.deliveries, seq, orderID); err != nil {
				return err
			}
		}
		if err := exec(ctx, tx, `UPDATE `+projection.Table(ctx, tableOrders)+`
			SET status = CASE WHEN delivered_grams >= ordered_grams THEN $1 ELSE $2 END
			WHERE order_id = $3 AND status <> $4`,
			string(domain.OrderFulfilled), string(domain.OrderOpen), orderID, string(domain.OrderCancelled)); err != nil {
			return err
		}
	}
	keys := []totalsKey{{allScope, dimCounty, county}}
	if programID != "" {
		keys = orderKeys(programID, product, county)
	}
	return bump(ctx, tx, d, keys...)
}

// totals are the counters of one totals row, or a change to them.
type totals struct {
	orders, orderedGrams, deliveries, deliveredGrams, deliveredFen, rejectedGrams int64
}

// fields lists t's counters, in one order, for the arithmetic below.
func (t *totals) fields() []*int64 {
	return []*int64{&t.orders, &t.orderedGrams, &t.deliveries, &t.deliveredGrams, &t.deliveredFen, &t.rejectedGrams}
}

// names are the counters' column names, in the order of fields.
var names = []string{"orders", "ordered_grams", "deliveries", "delivered_grams", "delivered_fen", "rejected_grams"}

// combine applies op to each pair of counters, naming the one that
// overflows.
func (t totals) combine(o totals, op func(a, b int64) (int64, error)) (totals, error) {
	out := t
	dst, src := out.fields(), o.fields()
	for i := range dst {
		v, err := op(*dst[i], *src[i])
		if err != nil {
			return totals{}, fmt.Errorf("%s: %w", names[i], err)
		}
		*dst[i] = v
	}
	return out, nil
}

func (t totals) plus(o totals) (totals, error)  { return t.combine(o, money.Add) }
func (t totals) minus(o totals) (totals, error) { return t.combine(o, money.Sub) }

type totalsKey struct{ scope, dimension, key string }

// orderKeys are the totals rows an order of programID counts in.
func orderKeys(programID, product, county string) []totalsKey {
	return []totalsKey{
		{programID, dimTotal, ""},
		{programID, dimProduct, product},
		{programID, dimCounty, county},
		{allScope, dimCounty, county},
	}
}

// bump adds d to each row, creating it when missing.
func bump(ctx context.Context, tx *sql.Tx, d totals, keys ...totalsKey) error {
	table := projection.Table(ctx, tableTotals)
	for _, k := range keys {
		var cur totals
		f := cur.fields()
		err := tx.QueryRowContext(ctx, `SELECT orders, ordered_grams, deliveries, delivered_grams, delivered_fen, rejected_grams
			FROM `+table+` WHERE scope = $1 AND dimension = $2 AND key = $3`, k.scope, k.dimension, k.key).
			Scan(projection.Exact(f[0]), projection.Exact(f[1]), projection.Exact(f[2]), projection.Exact(f[3]), projection.Exact(f[4]), projection.Exact(f[5]))
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("totals %s/%s/%s: %w", k.scope, k.dimension, k.key, err)
		}
		next, err := cur.plus(d)
		if err != nil {
			return fmt.Errorf("totals %s/%s/%s: %w", k.scope, k.dimension, k.key, err)
		}
		if err := exec(ctx, tx, `INSERT INTO `+table+` (scope, dimension, key, orders, ordered_grams,
				deliveries, delivered_grams, delivered_fen, rejected_grams)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
			ON CONFLICT (scope, dimension, key) DO UPDATE SET
				orders = excluded.orders,
				ordered_grams = excluded.ordered_grams,
				deliveries = excluded.deliveries,
				delivered_grams = excluded.delivered_grams,
				delivered_fen = excluded.delivered_fen,
				rejected_grams = excluded.rejected_grams`,
			k.scope, k.dimension, k.key, next.orders, next.orderedGrams, next.deliveries, next.deliveredGrams, next.deliveredFen,
			next.rejectedGrams); err != nil {
			return fmt.Errorf("totals %s/%s/%s: %w", k.scope, k.dimension, k.key, err)
		}
	}
	return nil
}

// encodePrices writes a price table as "A=680,B=520": grades are ids
// (letters, digits, '-', '_'), so neither separator can occur in one.
func encodePrices(ps []*procurementevents.GradePrice) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = p.GetGrade() + "=" + strconv.FormatInt(p.GetPriceFenPerKg(), 10)
	}
	return strings.Join(parts, ",")
}

func decodePrices(s string) ([]domain.GradePrice, error) {
	if s == "" {
		return nil, nil
	}
	var out []domain.GradePrice
	for part := range strings.SplitSeq(s, ",") {
		grade, price, ok := strings.Cut(part, "=")
		n, err := strconv.ParseInt(price, 10, 64)
		if !ok || err != nil {
			return nil, fmt.Errorf("price table %q: bad entry %q", s, part)
		}
		out = append(out, domain.GradePrice{Grade: grade, PriceFenPerKg: n})
	}
	return out, nil
}
