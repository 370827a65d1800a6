package adapters

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	brandevents "github.com/furrow/furrow/proto/furrow/brand/events/v1"
	procurementevents "github.com/furrow/furrow/proto/furrow/procurement/events/v1"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/projection"

	"github.com/furrow/furrow/services/farmer-ledger/app"
)

// The trace read models. The ledger is where a lot's money ends (its
// payable, its premiums, the payouts that carried them), so it keeps the
// rest of a lot's life beside its own journal: TraceLotsProjection follows
// procurement's deliveries and corrections, TraceSalesProjection brand
// incubation's premium events (earned, withheld, adjusted), each in its own
// table, joined at query time with the finance read model's entries (whose
// source_event_id is the upstream event's id). Each follows the event
// contracts, never another service's tables.
//
// Each projection follows one subject filter of another service's stream:
// a consumer with one filter is one a NATS user may be allowed to create on
// that stream alone (deploy/nats/accounts.conf). So deliveries and their
// corrections are two projections (two tables, read together), and the
// sale events one projection of brand.report.> (whose other event,
// SalesReported, it skips).
const (
	tableTraceDeliveries  = "ledger_trace_deliveries"
	tableTraceCorrections = "ledger_trace_corrections"
	tableTraceSales       = "ledger_trace_sale_events"
)

// TraceLotsProjection keeps every DeliveryRecorded (Kind "recorded") or,
// as the corrections projection, every DeliveryCorrected ("corrected").
type TraceLotsProjection struct {
	// Kind is "recorded" or "corrected".
	Kind string
}

// TraceDeliveriesProjection and TraceCorrectionsProjection are the two
// lot projections.
var (
	TraceDeliveriesProjection  = TraceLotsProjection{Kind: "recorded"}
	TraceCorrectionsProjection = TraceLotsProjection{Kind: "corrected"}
)

var _ projection.Versioned = TraceLotsProjection{}

func (p TraceLotsProjection) table() string {
	if p.Kind == "corrected" {
		return tableTraceCorrections
	}
	return tableTraceDeliveries
}

// Name implements projection.Projection.
func (p TraceLotsProjection) Name() string { return p.table() }

// Stream implements projection.Projection.
func (TraceLotsProjection) Stream() string { return "PROCUREMENT" }

// Subjects implements projection.Projection.
func (p TraceLotsProjection) Subjects() []string {
	return []string{"procurement.*.*.delivery_" + p.Kind}
}

// Tables implements projection.Versioned.
func (p TraceLotsProjection) Tables() []string { return []string{p.table()} }

// Migrate implements projection.Projection.
func (p TraceLotsProjection) Migrate(ctx context.Context, tx *sql.Tx) error {
	t := func(n string) string { return projection.Table(ctx, n) }
	for _, stmt := range []string{
		`CREATE TABLE IF NOT EXISTS ` + t(p.table()) + ` (
			event_id TEXT PRIMARY KEY,
			seq BIGINT NOT NULL,
			delivery_id TEXT NOT NULL,
			farmer_id TEXT NOT NULL,
			correction_number INTEGER NOT NULL,
			product TEXT NOT NULL,
			grade TEXT NOT NULL,
			net_grams BIGINT NOT NULL,
			price_fen_per_kg BIGINT NOT NULL,
			amount_fen BIGINT NOT NULL,
			reversed_fen BIGINT NOT NULL,
			reason TEXT NOT NULL,
			weighed_at BIGINT NOT NULL,
			warehouse TEXT NOT NULL,
			county TEXT NOT NULL,
			distribution_centre TEXT NOT NULL)`,
		`CREATE INDEX IF NOT EXISTS ` + t(p.table()+"_delivery") + ` ON ` + t(p.table()) + ` (delivery_id, seq)`,
		`CREATE INDEX IF NOT EXISTS ` + t(p.table()+"_farmer") + ` ON ` + t(p.table()) + ` (farmer_id, seq)`,
	} {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("migrate %s: %w", p.table(), err)
		}
	}
	return nil
}

// Apply implements projection.Projection.
func (p TraceLotsProjection) Apply(ctx context.Context, tx *sql.Tx, rec eventstore.Recorded) error {
	msg, err := eventstore.Decode(rec)
	if err != nil {
		return err
	}
	var r app.LotEvent
	switch e := msg.(type) {
	case *procurementevents.DeliveryRecorded:
		r = app.LotEvent{DeliveryID: e.GetDeliveryId(), FarmerID: e.GetFarmerId(), Product: e.GetProduct(), Grade: e.GetGrade(),
			NetGrams: e.GetNetGrams(), PriceFenPerKg: e.GetPriceFenPerKg(), AmountFen: e.GetAmountFen(),
			WeighedAt: e.GetWeighedAt().AsTime(), Warehouse: e.GetWarehouse(), County: e.GetCounty(),
			Centre: e.GetDistributionCentre()}
	case *procurementevents.DeliveryCorrected:
		r = app.LotEvent{DeliveryID: e.GetDeliveryId(), FarmerID: e.GetFarmerId(), Product: e.GetProduct(), Grade: e.GetGrade(),
			NetGrams: e.GetNetGrams(), PriceFenPerKg: e.GetPriceFenPerKg(), AmountFen: e.GetAmountFen(),
			Correction: e.GetCorrectionNumber(), ReversedFen: e.GetReversedAmountFen(), Reason: e.GetReason()}
	default:
		return nil
	}
	weighed := int64(0)
	if !r.WeighedAt.IsZero() {
		weighed = r.WeighedAt.UnixNano()
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO `+projection.Table(ctx, p.table())+` (event_id, seq, delivery_id, farmer_id,
		correction_number, product, grade, net_grams, price_fen_per_kg, amount_fen, reversed_fen, reason, weighed_at, warehouse, county,
		distribution_centre)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) ON CONFLICT (event_id) DO NOTHING`,
		rec.ID, rec.Sequence, r.DeliveryID, r.FarmerID, r.Correction, r.Product, r.Grade, r.NetGrams, r.PriceFenPerKg,
		r.AmountFen, r.ReversedFen, r.Reason, weighed, r.Warehouse, r.County, r.Centre)
	if err != nil {
		return fmt.Errorf("apply %s seq %d: %w", rec.Type, rec.Sequence, err)
	}
	return nil
}

// TraceSalesProjection keeps every premium event of brand incubation
// (earned, withheld, adjusted) and every restatement of a sale that changed
// no premium.
type TraceSalesProjection struct{}

var _ projection.Versioned = TraceSalesProjection{}

// Name implements projection.Projection.
func (TraceSalesProjection) Name() string { return "ledger_trace_sales" }

// Stream implements projection.Projection.
func (TraceSalesProjection) Stream() string { return "BRAND" }

// Subjects implements projection.Projection: every report's events (the
// premium events and restatements; Apply skips the SalesReported headers).
func (TraceSalesProjection) Subjects() []string { return []string{"brand.report.>"} }

// Tables implements projection.Versioned.
func (TraceSalesProjection) Tables() []string { return []string{tableTraceSales} }

// Migrate implements projection.Projection.
func (TraceSalesProjection) Migrate(ctx context.Context, tx *sql.Tx) error {
	t := func(n string) string { return projection.Table(ctx, n) }
	for _, stmt := range []string{
		`CREATE TABLE IF NOT EXISTS ` + t(tableTraceSales) + ` (
			event_id TEXT PRIMARY KEY,
			seq BIGINT NOT NULL,
			kind TEXT NOT NULL,
			sale_id TEXT NOT NULL,
			report_id TEXT NOT NULL,
			line_id TEXT NOT NULL,
			delivery_id TEXT NOT NULL,
			farmer_id TEXT NOT NULL,
			brand_id TEXT NOT NULL,
			channel TEXT NOT NULL,
			grams BIGINT NOT NULL,
			sold_at BIGINT NOT NULL,
			rule_id TEXT NOT NULL,
			rule_version INTEGER NOT NULL,
			fen_per_kg BIGINT NOT NULL,
			premium_fen BIGINT NOT NULL,
			delta_fen BIGINT NOT NULL,
			cause INTEGER NOT NULL,
			withheld_reason INTEGER NOT NULL,
			reason TEXT NOT NULL)`,
		`CREATE INDEX IF NOT EXISTS ` + t("ledger_trace_sale_events_delivery") + ` ON ` + t(tableTraceSales) + ` (delivery_id, seq)`,
		`CREATE INDEX IF NOT EXISTS ` + t("ledger_trace_sale_events_farmer") + ` ON ` + t(tableTraceSales) + ` (farmer_id, seq)`,
	} {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("migrate ledger_trace_sales: %w", err)
		}
	}
	return nil
}

// Apply implements projection.Projection.
func (TraceSalesProjection) Apply(ctx context.Context, tx *sql.Tx, rec eventstore.Recorded) error {
	msg, err := eventstore.Decode(rec)
	if err != nil {
		return err
	}
	var s app.SaleEvent
	switch e := msg.(type) {
	case *brandevents.PremiumEarned:
		s = app.SaleEvent{Kind: "earned", SaleID: e.GetSaleId(), ReportID: e.GetReportId(), LineID: e.GetLineId(),
			DeliveryID: e.GetDeliveryId(), FarmerID: e.GetFarmerId(), BrandID: e.GetBrandId(), Channel: e.GetChannel(),
			Grams: e.GetGrams(), SoldAt: e.GetSoldAt().AsTime(), RuleID: e.GetRuleId(), RuleVersion: e.GetRuleVersion(),
			FenPerKg: e.GetFenPerKg(), PremiumFen: e.GetPremiumFen(), DeltaFen: e.GetPremiumFen()}
	case *brandevents.PremiumWithheld:
		s = app.SaleEvent{Kind: "withheld", SaleID: e.GetSaleId(), ReportID: e.GetReportId(), LineID: e.GetLineId(),
			DeliveryID: e.GetDeliveryId(), FarmerID: e.GetFarmerId(), BrandID: e.GetBrandId(), Channel: e.GetChannel(),
			Grams: e.GetGrams(), SoldAt: e.GetSoldAt().AsTime(), Withheld: e.GetReason(), Reason: e.GetDetail()}
	case *brandevents.PremiumAdjusted:
		s = app.SaleEvent{Kind: "adjusted", SaleID: e.GetSaleId(), ReportID: e.GetReportId(), LineID: e.GetLineId(),
			DeliveryID: e.GetDeliveryId(), FarmerID: e.GetFarmerId(), BrandID: e.GetBrandId(), Channel: e.GetChannel(),
			Grams: e.GetGrams(), SoldAt: e.GetSoldAt().AsTime(), RuleID: e.GetRuleId(), RuleVersion: e.GetRuleVersion(),
			FenPerKg: e.GetFenPerKg(), PremiumFen: e.GetPremiumFen(), DeltaFen: e.GetDeltaFen(), Cause: e.GetCause(),
			Withheld: e.GetWithheldReason(), Reason: e.GetReason()}
	case *brandevents.SaleRestated:
		s = app.SaleEvent{Kind: "restated", SaleID: e.GetSaleId(), ReportID: e.GetReportId(), LineID: e.GetLineId(),
			DeliveryID: e.GetDeliveryId(), FarmerID: e.GetFarmerId(), BrandID: e.GetBrandId(), Channel: e.GetChannel(),
			Grams: e.GetGrams(), SoldAt: e.GetSoldAt().AsTime(), RuleID: e.GetRuleId(), RuleVersion: e.GetRuleVersion(),
			FenPerKg: e.GetFenPerKg(), PremiumFen: e.GetPremiumFen(), Withheld: e.GetWithheldReason(), Reason: e.GetReason()}
	default:
		return nil
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO `+projection.Table(ctx, tableTraceSales)+` (event_id, seq, kind, sale_id, report_id,
		line_id, delivery_id, farmer_id, brand_id, channel, grams, sold_at, rule_id, rule_version, fen_per_kg, premium_fen, delta_fen,
		cause, withheld_reason, reason)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20) ON CONFLICT (event_id) DO NOTHING`,
		rec.ID, rec.Sequence, s.Kind, s.SaleID, s.ReportID, s.LineID, s.DeliveryID, s.FarmerID, s.BrandID, s.Channel, s.Grams,
		s.SoldAt.UnixNano(), s.RuleID, s.RuleVersion, s.FenPerKg, s.PremiumFen, s.DeltaFen, s.Cause, s.Withheld, s.Reason)
	if err != nil {
		return fmt.Errorf("apply %s seq %d: %w", rec.Type, rec.Sequence, err)
	}
	return nil
}

// TraceReader reads the trace read models and the finance read model's
// entries.
type TraceReader struct{ db *projection.DB }

var _ app.Traces = (*TraceReader)(nil)

// NewTraceReader returns a reader over db.
func NewTraceReader(db *projection.DB) *TraceReader { return &TraceReader{db: db} }

const lotColumns = `event_id, seq, delivery_id, farmer_id, correction_number, product, grade, net_grams, price_fen_per_kg,
	amount_fen, reversed_fen, reason, weighed_at, warehouse, county, distribution_centre`

func scanLots(rows *sql.Rows, err error) ([]app.LotEvent, error) {
	if err != nil {
		return nil, err
	}
	return collect(rows, func(rows *sql.Rows) (app.LotEvent, error) {
		var (
			r       app.LotEvent
			seq     int64
			weighed int64
		)
		err := rows.Scan(&r.EventID, &seq, &r.DeliveryID, &r.FarmerID, &r.Correction, &r.Product, &r.Grade, &r.NetGrams,
			&r.PriceFenPerKg, &r.AmountFen, &r.ReversedFen, &r.Reason, &weighed, &r.Warehouse, &r.County, &r.Centre)
		r.Seq = uint64(seq)
		if weighed != 0 {
			r.WeighedAt = time.Unix(0, weighed).UTC()
		}
		return r, err
	})
}

const saleColumns = `event_id, seq, kind, sale_id, report_id, line_id, delivery_id, farmer_id, brand_id, channel, grams, sold_at,
	rule_id, rule_version, fen_per_kg, premium_fen, delta_fen, cause, withheld_reason, reason`

func scanSales(rows *sql.Rows, err error) ([]app.SaleEvent, error) {
	if err != nil {
		return nil, err
	}
	return collect(rows, func(rows *sql.Rows) (app.SaleEvent, error) {
		var (
			s         app.SaleEvent
			seq, sold int64
		)
		err := rows.Scan(&s.EventID, &seq, &s.Kind, &s.SaleID, &s.ReportID, &s.LineID, &s.DeliveryID, &s.FarmerID, &s.BrandID,
			&s.Channel, &s.Grams, &sold, &s.RuleID, &s.RuleVersion, &s.FenPerKg, &s.PremiumFen, &s.DeltaFen, &s.Cause, &s.Withheld, &s.Reason)
		s.Seq, s.SoldAt = uint64(seq), time.Unix(0, sold).UTC()
		return s, err
	})
}

// lotEvents selects both lot tables' rows matching cond ($1), in stream
// order.
func lotEvents(cond string) string {
	return `SELECT ` + lotColumns + ` FROM ` + tableTraceDeliveries + ` WHERE ` + cond + `
		UNION ALL SELECT ` + lotColumns + ` FROM ` + tableTraceCorrections + ` WHERE ` + cond + ` ORDER BY seq`
}

// LotEvents implements app.Traces.
func (r *TraceReader) LotEvents(ctx context.Context, deliveryID string) ([]app.LotEvent, error) {
	out, err := scanLots(r.db.QueryContext(ctx, lotEvents(`delivery_id = $1`), deliveryID))
	if err != nil {
		return nil, fmt.Errorf("trace of lot %s: %w", deliveryID, err)
	}
	return out, nil
}

// FarmerLotEvents implements app.Traces.
func (r *TraceReader) FarmerLotEvents(ctx context.Context, farmerID string) ([]app.LotEvent, error) {
	out, err := scanLots(r.db.QueryContext(ctx, lotEvents(`farmer_id = $1`), farmerID))
	if err != nil {
		return nil, fmt.Errorf("trace of farmer %s: %w", farmerID, err)
	}
	return out, nil
}

// SaleEvents implements app.Traces.
func (r *TraceReader) SaleEvents(ctx context.Context, deliveryID string) ([]app.SaleEvent, error) {
	out, err := scanSales(r.db.QueryContext(ctx, `SELECT `+saleColumns+` FROM `+tableTraceSales+` WHERE delivery_id = $1 ORDER BY seq`, deliveryID))
	if err != nil {
		return nil, fmt.Errorf("trace of lot %s: %w", deliveryID, err)
	}
	return out, nil
}

// FarmerSaleEvents implements app.Traces.
func (r *TraceReader) FarmerSaleEvents(ctx context.Context, farmerID string) ([]app.SaleEvent, error) {
	out, err := scanSales(r.db.QueryContext(ctx, `SELECT `+saleColumns+` FROM `+tableTraceSales+` WHERE farmer_id = $1 ORDER BY seq`, farmerID))
	if err != nil {
		return nil, fmt.Errorf("trace of farmer %s: %w", farmerID, err)
	}
	return out, nil
}

// FarmerEntries implements app.Traces: the farmer's entries in ledger
// order, with their effect on what the farmer accrued and was paid.
func (r *TraceReader) FarmerEntries(ctx context.Context, farmerID string) ([]app.TraceEntry, error) {
	rows, err := r.db.QueryContext(ctx, `SELECT entry_id, seq, source_event_id, payout_id, payable_fen, premium_fen, paid_fen
		FROM `+tableEntries+` WHERE farmer_id = $1 ORDER BY seq`, farmerID)
	if err != nil {
		return nil, fmt.Errorf("entries of farmer %s: %w", farmerID, err)
	}
	return collect(rows, func(rows *sql.Rows) (app.TraceEntry, error) {
		var (
			e   app.TraceEntry
			seq int64
		)
		err := rows.Scan(&e.EntryID, &seq, &e.SourceEventID, &e.PayoutID, &e.PayableFen, &e.PremiumFen, &e.PaidFen)
		e.Seq = uint64(seq)
		return e, err
	})
}

// PayoutAmounts implements app.Traces: the amount of each of the farmer's payouts.
func (r *TraceReader) PayoutAmounts(ctx context.Context, farmerID string) (map[string]int64, error) {
	rows, err := r.db.QueryContext(ctx, `SELECT payout_id, amount_fen FROM `+tablePayouts+` WHERE farmer_id = $1`, farmerID)
	if err != nil {
		return nil, fmt.Errorf("payouts of farmer %s: %w", farmerID, err)
	}
	type row struct {
		id  string
		fen int64
	}
	all, err := collect(rows, func(rows *sql.Rows) (row, error) {
		var r row
		return r, rows.Scan(&r.id, &r.fen)
	})
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(all))
	for _, r := range all {
		out[r.id] = r.fen
	}
	return out, nil
}

// collect scans every row with scan and closes rows.
func collect[T any](rows *sql.Rows, scan func(*sql.Rows) (T, error)) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
