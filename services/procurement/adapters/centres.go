package adapters

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	procurementevents "github.com/furrow/furrow/proto/furrow/procurement/events/v1"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/money"
	"github.com/furrow/furrow/pkg/projection"

	"github.com/furrow/furrow/services/procurement/app"
	"github.com/furrow/furrow/services/procurement/domain"
)

// CentresProjection keeps what each county distribution centre weighed
// in: per centre, county, day (CST), product and grade, the deliveries,
// grams and payable, as corrections leave them. A delivery whose event
// names no centre (every one written before the field existed) counts
// under app.UnknownCentre.
type CentresProjection struct{}

var _ projection.Versioned = CentresProjection{}

const (
	tableCentreDeliveries = "procurement_centre_deliveries"
	tableCentreIntake     = "procurement_centre_intake"
)

// Name implements projection.Projection.
func (CentresProjection) Name() string { return "procurement_centres" }

// Stream implements projection.Projection.
func (CentresProjection) Stream() string { return domain.Stream }

// Subjects implements projection.Projection.
func (CentresProjection) Subjects() []string {
	return []string{"procurement.*.*.delivery_recorded", "procurement.*.*.delivery_corrected"}
}

// Tables implements projection.Versioned.
func (CentresProjection) Tables() []string { return []string{tableCentreDeliveries, tableCentreIntake} }

// Migrate implements projection.Projection.
func (CentresProjection) Migrate(ctx context.Context, tx *sql.Tx) error {
	t := func(n string) string { return projection.Table(ctx, n) }
	for _, stmt := range []string{
		`CREATE TABLE IF NOT EXISTS ` + t(tableCentreDeliveries) + ` (
			delivery_id TEXT PRIMARY KEY,
			centre TEXT NOT NULL,
			county TEXT NOT NULL,
			day TEXT NOT NULL,
			product TEXT NOT NULL,
			grade TEXT NOT NULL,
			net_grams BIGINT NOT NULL,
			amount_fen BIGINT NOT NULL,
			correction_number INTEGER NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS ` + t(tableCentreIntake) + ` (
			centre TEXT NOT NULL,
			county TEXT NOT NULL,
			day TEXT NOT NULL,
			product TEXT NOT NULL,
			grade TEXT NOT NULL,
			deliveries BIGINT NOT NULL,
			net_grams BIGINT NOT NULL,
			amount_fen BIGINT NOT NULL,
			PRIMARY KEY (centre, county, day, product, grade))`,
		`CREATE INDEX IF NOT EXISTS ` + t("procurement_centre_intake_day") + ` ON ` + t(tableCentreIntake) + ` (county, day)`,
	} {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("migrate procurement_centres: %w", err)
		}
	}
	return nil
}

// centreRow is a delivery as the intake counts it.
type centreRow struct {
	centre, county, day, product, grade string
	grams, amount                       int64
	correction                          int32
}

// cst is China Standard Time: a delivery's day is its weigh-in's day there.
var cst = time.FixedZone("CST", 8*60*60)

// Apply implements projection.Projection. A correction moves the delivery
// from the row it was counted in (its grade may change) to its new one;
// corrections are applied once each, in order.
func (CentresProjection) Apply(ctx context.Context, tx *sql.Tx, rec eventstore.Recorded) error {
	msg, err := eventstore.Decode(rec)
	if err != nil {
		return err
	}
	t := func(n string) string { return projection.Table(ctx, n) }
	switch e := msg.(type) {
	case *procurementevents.DeliveryRecorded:
		centre := e.GetDistributionCentre()
		if centre == "" {
			centre = app.UnknownCentre
		}
		r := centreRow{centre: centre, county: e.GetCounty(), day: e.GetWeighedAt().AsTime().In(cst).Format(time.DateOnly),
			product: e.GetProduct(), grade: e.GetGrade(), grams: e.GetNetGrams(), amount: e.GetAmountFen()}
		res, err := tx.ExecContext(ctx, `INSERT INTO `+t(tableCentreDeliveries)+` (delivery_id, centre, county, day, product, grade,
			net_grams, amount_fen, correction_number) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0) ON CONFLICT (delivery_id) DO NOTHING`,
			e.GetDeliveryId(), r.centre, r.county, r.day, r.product, r.grade, r.grams, r.amount)
		if err == nil {
			if n, _ := res.RowsAffected(); n == 1 {
				err = addIntake(ctx, tx, t, r, 1)
			}
		}
		if err != nil {
			return fmt.Errorf("apply %s seq %d: %w", rec.Type, rec.Sequence, err)
		}
	case *procurementevents.DeliveryCorrected:
		var old centreRow
		err := tx.QueryRowContext(ctx, `SELECT centre, county, day, product, grade, net_grams, amount_fen, correction_number
			FROM `+t(tableCentreDeliveries)+` WHERE delivery_id = $1`, e.GetDeliveryId()).
			Scan(&old.centre, &old.county, &old.day, &old.product, &old.grade, &old.grams, &old.amount, &old.correction)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && old.correction >= e.GetCorrectionNumber()) {
			return nil // a delivery this read model never saw, or a correction applied already
		}
		next := old
		next.grade, next.grams, next.amount, next.correction = e.GetGrade(), e.GetNetGrams(), e.GetAmountFen(), e.GetCorrectionNumber()
		if err == nil {
			err = addIntake(ctx, tx, t, old, -1)
		}
		if err == nil {
			err = addIntake(ctx, tx, t, next, 1)
		}
		if err == nil {
			_, err = tx.ExecContext(ctx, `UPDATE `+t(tableCentreDeliveries)+` SET grade = $1, net_grams = $2, amount_fen = $3,
				correction_number = $4 WHERE delivery_id = $5`, next.grade, next.grams, next.amount, next.correction, e.GetDeliveryId())
		}
		if err != nil {
			return fmt.Errorf("apply %s seq %d: %w", rec.Type, rec.Sequence, err)
		}
	}
	return nil
}

// addIntake adds (sign 1) or removes (sign -1) a delivery to its intake
// row, summing in Go with overflow checks.
func addIntake(ctx context.Context, tx *sql.Tx, t func(string) string, r centreRow, sign int64) error {
	var n, grams, amount int64
	err := tx.QueryRowContext(ctx, `SELECT deliveries, net_grams, amount_fen FROM `+t(tableCentreIntake)+`
		WHERE centre = $1 AND county = $2 AND day = $3 AND product = $4 AND grade = $5`,
		r.centre, r.county, r.day, r.product, r.grade).Scan(projection.Exact(&n), projection.Exact(&grams), projection.Exact(&amount))
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	n += sign
	if grams, err = money.Add(grams, sign*r.grams); err == nil {
		amount, err = money.Add(amount, sign*r.amount)
	}
	if err != nil {
		return fmt.Errorf("intake of %s on %s: %w", r.centre, r.day, err)
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO `+t(tableCentreIntake)+` (centre, county, day, product, grade, deliveries, net_grams, amount_fen)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (centre, county, day, product, grade)
		DO UPDATE SET deliveries = excluded.deliveries, net_grams = excluded.net_grams, amount_fen = excluded.amount_fen`,
		r.centre, r.county, r.day, r.product, r.grade, n, grams, amount)
	return err
}

// CentreReader reads the centres read model.
type CentreReader struct{ db *projection.DB }

var _ app.CentreReader = (*CentreReader)(nil)

// NewCentreReader returns a reader over db.
func NewCentreReader(db *projection.DB) *CentreReader { return &CentreReader{db: db} }

// Intake implements app.CentreReader: the rows of the selected days and
// county (every centre: the shares need the county's totals), ordered by
// centre, day, product and grade.
func (r *CentreReader) Intake(ctx context.Context, county, dayFrom, dayTo string) ([]app.CentreIntake, error) {
	q := `SELECT centre, county, day, product, grade, deliveries, net_grams, amount_fen FROM ` + tableCentreIntake + ` WHERE deliveries > 0`
	var args []any
	for _, c := range []struct{ cond, v string }{{"county = ", county}, {"day >= ", dayFrom}, {"day <= ", dayTo}} {
		if c.v != "" {
			args = append(args, c.v)
			q += fmt.Sprintf(" AND %s$%d", c.cond, len(args))
		}
	}
	rows, err := r.db.QueryContext(ctx, q+` ORDER BY county, centre, day, product, grade`, args...)
	if err != nil {
		return nil, fmt.Errorf("centre intake: %w", err)
	}
	defer rows.Close()
	var out []app.CentreIntake
	for rows.Next() {
		var c app.CentreIntake
		if err := rows.Scan(&c.Centre, &c.County, &c.Day, &c.Product, &c.Grade, &c.Deliveries,
			projection.Exact(&c.NetGrams), projection.Exact(&c.AmountFen)); err != nil {
			return nil, fmt.Errorf("centre intake: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}
