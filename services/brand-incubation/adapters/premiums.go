package adapters

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	brandevents "github.com/furrow/furrow/proto/furrow/brand/events/v1"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/money"
	"github.com/furrow/furrow/pkg/projection"

	"github.com/furrow/furrow/services/brand-incubation/app"
	"github.com/furrow/furrow/services/brand-incubation/domain"
)

// PremiumsProjection keeps the premium read model: every sale line with
// what it earns now (which re-rating uses to find the reports a revision
// touches, and previews to compute their deltas), the premiums per farmer
// × brand × channel × month, a brand's months, and its farmers' enrolment
// periods for the dashboard.
//
// Each sale event carries the sale's full state after it, so Apply
// subtracts the sale's previous contribution (its row in brand_sales) from
// the monthly rows and adds the new one: a restatement that moves a sale
// to another month, or withdraws it, moves its grams and premium with it.
type PremiumsProjection struct{}

var _ projection.Versioned = PremiumsProjection{}

// Tables of the premium read model (logical names: views of the live copy).
const (
	tableSales         = "brand_sales"
	tableFarmerMonths  = "brand_farmer_months"
	tableBrandMonths   = "brand_months"
	tableEnrolPeriods  = "brand_enrolment_periods"
	premiumsProjection = "brand_premiums"
)

// Name implements projection.Projection.
func (PremiumsProjection) Name() string { return premiumsProjection }

// Stream implements projection.Projection.
func (PremiumsProjection) Stream() string { return domain.Stream }

// Subjects implements projection.Projection.
func (PremiumsProjection) Subjects() []string {
	return []string{"brand." + domain.TypeReport + ".>", "brand." + domain.TypeEnrolment + ".>"}
}

// Tables implements projection.Versioned.
func (PremiumsProjection) Tables() []string {
	return []string{tableSales, tableFarmerMonths, tableBrandMonths, tableEnrolPeriods}
}

// Migrate implements projection.Projection. sold_at is Unix nanoseconds;
// sold_on ("YYYY-MM-DD") and month ("YYYY-MM") are in CST and sort as text.
func (PremiumsProjection) Migrate(ctx context.Context, tx *sql.Tx) error {
	t := func(name string) string { return projection.Table(ctx, name) }
	metrics := `sales INTEGER NOT NULL,
			grams_sold BIGINT NOT NULL,
			grams_earning BIGINT NOT NULL,
			premium_fen BIGINT NOT NULL`
	for _, stmt := range []string{
		`CREATE TABLE IF NOT EXISTS ` + t(tableSales) + ` (
			sale_id TEXT PRIMARY KEY,
			report_id TEXT NOT NULL,
			line_id TEXT NOT NULL,
			brand_id TEXT NOT NULL,
			farmer_id TEXT NOT NULL,
			channel TEXT NOT NULL,
			delivery_id TEXT NOT NULL,
			sold_at BIGINT NOT NULL,
			sold_on TEXT NOT NULL,
			month TEXT NOT NULL,
			grams BIGINT NOT NULL,
			premium_fen BIGINT NOT NULL,
			earning INTEGER NOT NULL,
			rule_id TEXT NOT NULL,
			rule_version INTEGER NOT NULL,
			fen_per_kg BIGINT NOT NULL,
			withheld_reason INTEGER NOT NULL,
			seq BIGINT NOT NULL)`,
		`CREATE INDEX IF NOT EXISTS ` + t("brand_sales_rule") + ` ON ` + t(tableSales) + ` (brand_id, channel, rule_id, sold_on)`,
		`CREATE INDEX IF NOT EXISTS ` + t("brand_sales_report") + ` ON ` + t(tableSales) + ` (report_id)`,
		`CREATE TABLE IF NOT EXISTS ` + t(tableFarmerMonths) + ` (
			farmer_id TEXT NOT NULL,
			brand_id TEXT NOT NULL,
			channel TEXT NOT NULL,
			month TEXT NOT NULL,
			` + metrics + `,
			PRIMARY KEY (farmer_id, brand_id, channel, month))`,
		`CREATE INDEX IF NOT EXISTS ` + t("brand_farmer_months_brand") + ` ON ` + t(tableFarmerMonths) + ` (brand_id, month)`,
		`CREATE TABLE IF NOT EXISTS ` + t(tableBrandMonths) + ` (
			brand_id TEXT NOT NULL,
			month TEXT NOT NULL,
			` + metrics + `,
			PRIMARY KEY (brand_id, month))`,
		`CREATE TABLE IF NOT EXISTS ` + t(tableEnrolPeriods) + ` (
			brand_id TEXT NOT NULL,
			farmer_id TEXT NOT NULL,
			from_seq BIGINT NOT NULL,
			from_day TEXT NOT NULL,
			until_day TEXT NOT NULL,
			PRIMARY KEY (brand_id, farmer_id, from_seq))`,
	} {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("migrate %s: %w", premiumsProjection, err)
		}
	}
	return nil
}

// saleRow is a sale's state as brand_sales holds it.
type saleRow struct {
	SaleID, ReportID, LineID, BrandID, FarmerID, Channel, DeliveryID string
	SoldAt                                                           time.Time
	Grams, PremiumFen                                                int64
	Earning                                                          bool
	RuleID                                                           string
	RuleVersion                                                      int32
	FenPerKg                                                         int64
	Withheld                                                         int32
}

func (s saleRow) month() string { return domain.MonthOf(s.SoldAt).String() }

// Apply implements projection.Projection.
func (PremiumsProjection) Apply(ctx context.Context, tx *sql.Tx, rec eventstore.Recorded) error {
	msg, err := eventstore.Decode(rec)
	if err != nil {
		return err
	}
	t := func(name string) string { return projection.Table(ctx, name) }
	switch e := msg.(type) {
	case *brandevents.PremiumEarned:
		err = applySale(ctx, tx, t, rec.Sequence, saleRow{
			SaleID: e.GetSaleId(), ReportID: e.GetReportId(), LineID: e.GetLineId(), BrandID: e.GetBrandId(),
			FarmerID: e.GetFarmerId(), Channel: e.GetChannel(), DeliveryID: e.GetDeliveryId(), SoldAt: e.GetSoldAt().AsTime(),
			Grams: e.GetGrams(), PremiumFen: e.GetPremiumFen(), Earning: true,
			RuleID: e.GetRuleId(), RuleVersion: e.GetRuleVersion(), FenPerKg: e.GetFenPerKg(),
		})
	case *brandevents.PremiumAdjusted:
		err = applySale(ctx, tx, t, rec.Sequence, saleRow{
			SaleID: e.GetSaleId(), ReportID: e.GetReportId(), LineID: e.GetLineId(), BrandID: e.GetBrandId(),
			FarmerID: e.GetFarmerId(), Channel: e.GetChannel(), DeliveryID: e.GetDeliveryId(), SoldAt: e.GetSoldAt().AsTime(),
			Grams: e.GetGrams(), PremiumFen: e.GetPremiumFen(), Earning: e.GetWithheldReason() == 0,
			RuleID: e.GetRuleId(), RuleVersion: e.GetRuleVersion(), FenPerKg: e.GetFenPerKg(), Withheld: e.GetWithheldReason(),
		})
	case *brandevents.SaleRestated:
		err = applySale(ctx, tx, t, rec.Sequence, saleRow{
			SaleID: e.GetSaleId(), ReportID: e.GetReportId(), LineID: e.GetLineId(), BrandID: e.GetBrandId(),
			FarmerID: e.GetFarmerId(), Channel: e.GetChannel(), DeliveryID: e.GetDeliveryId(), SoldAt: e.GetSoldAt().AsTime(),
			Grams: e.GetGrams(), PremiumFen: e.GetPremiumFen(), Earning: e.GetWithheldReason() == 0,
			RuleID: e.GetRuleId(), RuleVersion: e.GetRuleVersion(), FenPerKg: e.GetFenPerKg(), Withheld: e.GetWithheldReason(),
		})
	case *brandevents.PremiumWithheld:
		err = applySale(ctx, tx, t, rec.Sequence, saleRow{
			SaleID: e.GetSaleId(), ReportID: e.GetReportId(), LineID: e.GetLineId(), BrandID: e.GetBrandId(),
			FarmerID: e.GetFarmerId(), Channel: e.GetChannel(), DeliveryID: e.GetDeliveryId(), SoldAt: e.GetSoldAt().AsTime(),
			Grams: e.GetGrams(), Withheld: e.GetReason(),
		})
	case *brandevents.FarmerEnrolled:
		_, err = tx.ExecContext(ctx, `INSERT INTO `+t(tableEnrolPeriods)+` (brand_id, farmer_id, from_seq, from_day, until_day)
			VALUES ($1, $2, $3, $4, '') ON CONFLICT (brand_id, farmer_id, from_seq) DO NOTHING`,
			e.GetBrandId(), e.GetFarmerId(), rec.Sequence, e.GetEnrolledFrom())
	case *brandevents.FarmerSuspended:
		_, err = tx.ExecContext(ctx, `UPDATE `+t(tableEnrolPeriods)+` SET until_day = $1
			WHERE brand_id = $2 AND farmer_id = $3 AND until_day = ''`,
			e.GetSuspendedFrom(), e.GetBrandId(), e.GetFarmerId())
	}
	if err != nil {
		return fmt.Errorf("apply %s seq %d: %w", rec.Type, rec.Sequence, err)
	}
	return nil
}

// applySale moves a sale's contribution to the monthly rows from its
// previous state to next, and records next.
func applySale(ctx context.Context, tx *sql.Tx, t func(string) string, seq uint64, next saleRow) error {
	prev, found, err := loadSale(ctx, tx, t(tableSales), next.SaleID)
	if err != nil {
		return err
	}
	if found {
		if err := contribute(ctx, tx, t, prev, -1); err != nil {
			return err
		}
	}
	if err := contribute(ctx, tx, t, next, 1); err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO `+t(tableSales)+`
		(sale_id, report_id, line_id, brand_id, farmer_id, channel, delivery_id, sold_at, sold_on, month,
		 grams, premium_fen, earning, rule_id, rule_version, fen_per_kg, withheld_reason, seq)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
		ON CONFLICT (sale_id) DO UPDATE SET delivery_id = excluded.delivery_id, sold_at = excluded.sold_at,
			sold_on = excluded.sold_on, month = excluded.month, grams = excluded.grams, premium_fen = excluded.premium_fen,
			earning = excluded.earning, rule_id = excluded.rule_id, rule_version = excluded.rule_version,
			fen_per_kg = excluded.fen_per_kg, withheld_reason = excluded.withheld_reason, seq = excluded.seq`,
		next.SaleID, next.ReportID, next.LineID, next.BrandID, next.FarmerID, next.Channel, next.DeliveryID,
		next.SoldAt.UnixNano(), domain.DateOf(next.SoldAt).String(), next.month(),
		next.Grams, next.PremiumFen, boolInt(next.Earning), next.RuleID, next.RuleVersion, next.FenPerKg, next.Withheld, seq)
	return err
}

func loadSale(ctx context.Context, tx *sql.Tx, table, saleID string) (saleRow, bool, error) {
	s := saleRow{SaleID: saleID}
	var soldAt, earning int64
	err := tx.QueryRowContext(ctx, `SELECT report_id, line_id, brand_id, farmer_id, channel, delivery_id, sold_at,
		grams, premium_fen, earning, rule_id, rule_version, fen_per_kg, withheld_reason
		FROM `+table+` WHERE sale_id = $1`, saleID).
		Scan(&s.ReportID, &s.LineID, &s.BrandID, &s.FarmerID, &s.Channel, &s.DeliveryID, &soldAt,
			&s.Grams, &s.PremiumFen, &earning, &s.RuleID, &s.RuleVersion, &s.FenPerKg, &s.Withheld)
	if errors.Is(err, sql.ErrNoRows) {
		return saleRow{}, false, nil
	}
	s.SoldAt, s.Earning = time.Unix(0, soldAt), earning == 1
	return s, err == nil, err
}

// monthly are the counters of a month row, or a change to them.
type monthly struct{ sales, grams, earning, premium int64 }

// plus returns m + d, or an error wrapping money.ErrOverflow naming the
// counter.
func (m monthly) plus(d monthly) (monthly, error) {
	var err error
	for _, c := range []struct {
		name string
		sum  *int64
		add  int64
	}{{"sales", &m.sales, d.sales}, {"grams_sold", &m.grams, d.grams}, {"grams_earning", &m.earning, d.earning}, {"premium_fen", &m.premium, d.premium}} {
		if *c.sum, err = money.Add(*c.sum, c.add); err != nil {
			return monthly{}, fmt.Errorf("%s: %w", c.name, err)
		}
	}
	return m, nil
}

// contribute adds (sign 1) or removes (sign -1) a sale's grams and premium
// to its farmer's and its brand's month, and drops rows left empty. The
// new totals are summed here, with overflow checks, and written whole:
// SQLite's "x = x + ?" would store an overflowing sum as a float without a
// word. An overflow fails the event, and the runner stops the projection
// at it.
func contribute(ctx context.Context, tx *sql.Tx, t func(string) string, s saleRow, sign int64) error {
	var d monthly
	if s.Grams > 0 {
		d.sales = 1
	}
	d.grams, d.premium = s.Grams, s.PremiumFen
	if s.Earning {
		d.earning = s.Grams
	}
	if sign < 0 {
		// Subtracting is adding the negation; a stored sale's amounts are
		// never math.MinInt64, but the check costs nothing.
		for _, v := range []*int64{&d.sales, &d.grams, &d.earning, &d.premium} {
			n, err := money.Mul(*v, -1)
			if err != nil {
				return fmt.Errorf("sale %s: %w", s.SaleID, err)
			}
			*v = n
		}
	}
	upsert := func(table, keyCols, keyParams, where string, key ...any) error {
		var cur monthly
		err := tx.QueryRowContext(ctx, `SELECT sales, grams_sold, grams_earning, premium_fen FROM `+table+` WHERE `+where, key...).
			Scan(projection.Exact(&cur.sales), projection.Exact(&cur.grams), projection.Exact(&cur.earning), projection.Exact(&cur.premium))
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		next, err := cur.plus(d)
		if err != nil {
			return err
		}
		if next == (monthly{}) {
			_, err = tx.ExecContext(ctx, `DELETE FROM `+table+` WHERE `+where, key...)
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO `+table+` (`+keyCols+`, sales, grams_sold, grams_earning, premium_fen)
			VALUES (`+keyParams+`)
			ON CONFLICT (`+keyCols+`) DO UPDATE SET sales = excluded.sales, grams_sold = excluded.grams_sold,
				grams_earning = excluded.grams_earning, premium_fen = excluded.premium_fen`,
			append(key, next.sales, next.grams, next.earning, next.premium)...)
		return err
	}
	if err := upsert(t(tableFarmerMonths), "farmer_id, brand_id, channel, month", "$1, $2, $3, $4, $5, $6, $7, $8",
		"farmer_id = $1 AND brand_id = $2 AND channel = $3 AND month = $4",
		s.FarmerID, s.BrandID, s.Channel, s.month()); err != nil {
		return fmt.Errorf("farmer month of %s: %w", s.SaleID, err)
	}
	if err := upsert(t(tableBrandMonths), "brand_id, month", "$1, $2, $3, $4, $5, $6",
		"brand_id = $1 AND month = $2", s.BrandID, s.month()); err != nil {
		return fmt.Errorf("brand month of %s: %w", s.SaleID, err)
	}
	return nil
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// PremiumsReader reads the premium read model.
type PremiumsReader struct{ db *projection.DB }

var _ app.Premiums = (*PremiumsReader)(nil)

// NewPremiumsReader returns a reader over db.
func NewPremiumsReader(db *projection.DB) *PremiumsReader { return &PremiumsReader{db: db} }

// EarningReports implements app.Premiums.
func (r *PremiumsReader) EarningReports(ctx context.Context, brandID, channel, ruleID string, from domain.Date) ([]string, error) {
	rows, err := r.db.QueryContext(ctx, `SELECT DISTINCT report_id FROM `+tableSales+`
		WHERE brand_id = $1 AND channel = $2 AND rule_id = $3 AND (earning = 1 OR withheld_reason = $5) AND sold_on >= $4
		ORDER BY report_id`, brandID, channel, ruleID, from.String(), domain.WithheldNoRule)
	if err != nil {
		return nil, fmt.Errorf("reports earning under %s/%s/%s: %w", brandID, channel, ruleID, err)
	}
	return collect(rows, func(rows *sql.Rows) (string, error) {
		var id string
		return id, rows.Scan(&id)
	})
}

// EarningSales implements app.Premiums.
func (r *PremiumsReader) EarningSales(ctx context.Context, brandID, channel, ruleID string, from domain.Date) ([]domain.SaleView, error) {
	rows, err := r.db.QueryContext(ctx, `SELECT sale_id, farmer_id, sold_on, grams, premium_fen, rule_id, rule_version, fen_per_kg
		FROM `+tableSales+`
		WHERE brand_id = $1 AND channel = $2 AND rule_id = $3 AND earning = 1 AND sold_on >= $4
		ORDER BY sale_id`, brandID, channel, ruleID, from.String())
	if err != nil {
		return nil, fmt.Errorf("sales earning under %s/%s/%s: %w", brandID, channel, ruleID, err)
	}
	return collect(rows, func(rows *sql.Rows) (domain.SaleView, error) {
		var s domain.SaleView
		var soldOn string
		err := rows.Scan(&s.SaleID, &s.FarmerID, &soldOn, &s.Grams, &s.PremiumFen, &s.Rate.RuleID, &s.Rate.Version, &s.Rate.FenPerKg)
		if err == nil {
			s.SoldOn, err = domain.ParseDate("sold_on", soldOn)
		}
		return s, err
	})
}

// FarmerPremiums implements app.Premiums.
func (r *PremiumsReader) FarmerPremiums(ctx context.Context, f app.PremiumFilter) ([]app.FarmerPremiumRow, error) {
	rows, err := r.db.QueryContext(ctx, `SELECT farmer_id, brand_id, channel, month, sales, grams_sold, grams_earning, premium_fen
		FROM `+tableFarmerMonths+`
		WHERE ($1 = '' OR farmer_id = $1) AND ($2 = '' OR brand_id = $2) AND ($3 = '' OR channel = $3)
			AND ($4 = '' OR month >= $4) AND ($5 = '' OR month <= $5)
			AND (farmer_id, brand_id, channel, month) > ($6, $7, $8, $9)
		ORDER BY farmer_id, brand_id, channel, month LIMIT $10`,
		f.FarmerID, f.BrandID, f.Channel, f.From, f.To, f.After.FarmerID, f.After.BrandID, f.After.Channel, f.After.Month, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("farmer premiums: %w", err)
	}
	return collect(rows, func(rows *sql.Rows) (app.FarmerPremiumRow, error) {
		var p app.FarmerPremiumRow
		err := rows.Scan(&p.FarmerID, &p.BrandID, &p.Channel, &p.Month, &p.Sales, &p.GramsSold, &p.GramsEarning, &p.PremiumFen)
		return p, err
	})
}

// BrandMonths implements app.Premiums.
func (r *PremiumsReader) BrandMonths(ctx context.Context, brandID string) ([]app.BrandMonthRow, error) {
	rows, err := r.db.QueryContext(ctx, `SELECT month, sales, grams_sold, grams_earning, premium_fen
		FROM `+tableBrandMonths+` WHERE brand_id = $1 ORDER BY month`, brandID)
	if err != nil {
		return nil, fmt.Errorf("months of %s: %w", brandID, err)
	}
	return collect(rows, func(rows *sql.Rows) (app.BrandMonthRow, error) {
		var m app.BrandMonthRow
		err := rows.Scan(&m.Month, &m.Sales, &m.GramsSold, &m.GramsEarning, &m.PremiumFen)
		return m, err
	})
}

// EnrolmentPeriods implements app.Premiums.
func (r *PremiumsReader) EnrolmentPeriods(ctx context.Context, brandID string) ([]app.EnrolmentPeriod, error) {
	rows, err := r.db.QueryContext(ctx, `SELECT farmer_id, from_day, until_day FROM `+tableEnrolPeriods+`
		WHERE brand_id = $1 ORDER BY farmer_id, from_seq`, brandID)
	if err != nil {
		return nil, fmt.Errorf("enrolment periods of %s: %w", brandID, err)
	}
	return collect(rows, func(rows *sql.Rows) (app.EnrolmentPeriod, error) {
		var p app.EnrolmentPeriod
		var from, until string
		if err := rows.Scan(&p.FarmerID, &from, &until); err != nil {
			return p, err
		}
		var err error
		if p.From, err = domain.ParseDate("from_day", from); err != nil {
			return p, err
		}
		if p.Open = until == ""; !p.Open {
			p.Until, err = domain.ParseDate("until_day", until)
		}
		return p, err
	})
}
