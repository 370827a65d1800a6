package adapters

import (
	"context"
	"database/sql"
	"fmt"

	brandevents "github.com/furrow/furrow/proto/furrow/brand/events/v1"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/projection"

	"github.com/furrow/furrow/services/brand-incubation/app"
	"github.com/furrow/furrow/services/brand-incubation/domain"
)

// CatalogProjection keeps brands, channels and enrolments in SQL for the
// list queries. Commands never read it: they decide on aggregates loaded
// from the stream.
type CatalogProjection struct{}

var _ projection.Versioned = CatalogProjection{}

// Tables of the catalogue (logical names: views of the live copy).
const (
	tableBrands     = "brand_brands"
	tableChannels   = "brand_channels"
	tableEnrolments = "brand_enrolments"
)

// Name implements projection.Projection.
func (CatalogProjection) Name() string { return "brand_catalog" }

// Stream implements projection.Projection.
func (CatalogProjection) Stream() string { return domain.Stream }

// Subjects implements projection.Projection.
func (CatalogProjection) Subjects() []string {
	return []string{"brand." + domain.TypeBrand + ".>", "brand." + domain.TypeChannel + ".>", "brand." + domain.TypeEnrolment + ".>"}
}

// Tables implements projection.Versioned.
func (CatalogProjection) Tables() []string {
	return []string{tableBrands, tableChannels, tableEnrolments}
}

// Migrate implements projection.Projection.
func (CatalogProjection) Migrate(ctx context.Context, tx *sql.Tx) error {
	t := func(name string) string { return projection.Table(ctx, name) }
	for _, stmt := range []string{
		`CREATE TABLE IF NOT EXISTS ` + t(tableBrands) + ` (
			brand_id TEXT PRIMARY KEY,
			kind INTEGER NOT NULL,
			name TEXT NOT NULL,
			county TEXT NOT NULL,
			product_category TEXT NOT NULL,
			stage INTEGER NOT NULL,
			stage_since TEXT NOT NULL,
			registered_on TEXT NOT NULL,
			version BIGINT NOT NULL)`,
		`CREATE INDEX IF NOT EXISTS ` + t("brand_brands_county") + ` ON ` + t(tableBrands) + ` (county, brand_id)`,
		`CREATE TABLE IF NOT EXISTS ` + t(tableChannels) + ` (
			channel_id TEXT PRIMARY KEY,
			name TEXT NOT NULL,
			version BIGINT NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS ` + t(tableEnrolments) + ` (
			brand_id TEXT NOT NULL,
			farmer_id TEXT NOT NULL,
			status INTEGER NOT NULL,
			enrolled_from TEXT NOT NULL,
			suspended_from TEXT NOT NULL,
			certificate TEXT NOT NULL,
			version BIGINT NOT NULL,
			PRIMARY KEY (brand_id, farmer_id))`,
	} {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("migrate brand_catalog: %w", err)
		}
	}
	return nil
}

// Apply implements projection.Projection.
func (CatalogProjection) Apply(ctx context.Context, tx *sql.Tx, rec eventstore.Recorded) error {
	msg, err := eventstore.Decode(rec)
	if err != nil {
		return err
	}
	t := func(name string) string { return projection.Table(ctx, name) }
	switch e := msg.(type) {
	case *brandevents.BrandRegistered:
		_, err = tx.ExecContext(ctx, `INSERT INTO `+t(tableBrands)+`
			(brand_id, kind, name, county, product_category, stage, stage_since, registered_on, version)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
			ON CONFLICT (brand_id) DO NOTHING`,
			e.GetBrandId(), e.GetKind(), e.GetName(), e.GetCounty(), e.GetProductCategory(),
			domain.StageIncubating, e.GetRegisteredOn(), e.GetRegisteredOn(), rec.Sequence)
	case *brandevents.BrandStageChanged:
		_, err = tx.ExecContext(ctx, `UPDATE `+t(tableBrands)+` SET stage = $1, stage_since = $2, version = $3 WHERE brand_id = $4`,
			e.GetStage(), e.GetEffectiveOn(), rec.Sequence, e.GetBrandId())
	case *brandevents.ChannelRegistered:
		_, err = tx.ExecContext(ctx, `INSERT INTO `+t(tableChannels)+` (channel_id, name, version) VALUES ($1, $2, $3)
			ON CONFLICT (channel_id) DO NOTHING`, e.GetChannelId(), e.GetName(), rec.Sequence)
	case *brandevents.FarmerEnrolled:
		_, err = tx.ExecContext(ctx, `INSERT INTO `+t(tableEnrolments)+`
			(brand_id, farmer_id, status, enrolled_from, suspended_from, certificate, version)
			VALUES ($1, $2, $3, $4, '', $5, $6)
			ON CONFLICT (brand_id, farmer_id) DO UPDATE SET status = excluded.status,
				enrolled_from = excluded.enrolled_from, certificate = excluded.certificate, version = excluded.version`,
			e.GetBrandId(), e.GetFarmerId(), app.StatusEnrolled, e.GetEnrolledFrom(), e.GetCertificate(), rec.Sequence)
	case *brandevents.FarmerSuspended:
		_, err = tx.ExecContext(ctx, `UPDATE `+t(tableEnrolments)+` SET status = $1, suspended_from = $2, version = $3
			WHERE brand_id = $4 AND farmer_id = $5`,
			app.StatusSuspended, e.GetSuspendedFrom(), rec.Sequence, e.GetBrandId(), e.GetFarmerId())
	}
	if err != nil {
		return fmt.Errorf("apply %s seq %d: %w", rec.Type, rec.Sequence, err)
	}
	return nil
}

// CatalogReader reads the catalogue.
type CatalogReader struct{ db *projection.DB }

var _ app.Catalog = (*CatalogReader)(nil)

// NewCatalogReader returns a reader over db.
func NewCatalogReader(db *projection.DB) *CatalogReader { return &CatalogReader{db: db} }

// Brands implements app.Catalog.
func (r *CatalogReader) Brands(ctx context.Context, f app.BrandFilter) ([]app.BrandRow, error) {
	rows, err := r.db.QueryContext(ctx, `SELECT brand_id, kind, name, county, product_category, stage, stage_since, registered_on, version
		FROM `+tableBrands+`
		WHERE ($1 = '' OR county = $1) AND ($2 = 0 OR kind = $2) AND ($3 = 0 OR stage = $3) AND brand_id > $4
		ORDER BY brand_id LIMIT $5`, f.County, f.Kind, f.Stage, f.After, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("list brands: %w", err)
	}
	return collect(rows, func(rows *sql.Rows) (app.BrandRow, error) {
		var b app.BrandRow
		var v int64
		err := rows.Scan(&b.BrandID, &b.Kind, &b.Name, &b.County, &b.ProductCategory, &b.Stage, &b.StageSince, &b.RegisteredOn, &v)
		b.Version = uint64(v)
		return b, err
	})
}

// Channels implements app.Catalog.
func (r *CatalogReader) Channels(ctx context.Context) ([]app.ChannelRow, error) {
	rows, err := r.db.QueryContext(ctx, `SELECT channel_id, name FROM `+tableChannels+` ORDER BY channel_id`)
	if err != nil {
		return nil, fmt.Errorf("list channels: %w", err)
	}
	return collect(rows, func(rows *sql.Rows) (app.ChannelRow, error) {
		var c app.ChannelRow
		err := rows.Scan(&c.ChannelID, &c.Name)
		return c, err
	})
}

// BrandFarmers implements app.Catalog.
func (r *CatalogReader) BrandFarmers(ctx context.Context, f app.FarmerFilter) ([]app.BrandFarmerRow, error) {
	rows, err := r.db.QueryContext(ctx, `SELECT brand_id, farmer_id, status, enrolled_from, suspended_from, certificate, version
		FROM `+tableEnrolments+`
		WHERE brand_id = $1 AND ($2 = 0 OR status = $2) AND farmer_id > $3
		ORDER BY farmer_id LIMIT $4`, f.BrandID, f.Status, f.After, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("list farmers of %s: %w", f.BrandID, err)
	}
	return collect(rows, func(rows *sql.Rows) (app.BrandFarmerRow, error) {
		var b app.BrandFarmerRow
		var v int64
		err := rows.Scan(&b.BrandID, &b.FarmerID, &b.Status, &b.EnrolledFrom, &b.SuspendedFrom, &b.Certificate, &v)
		b.Version = uint64(v)
		return b, err
	})
}

// collect scans every row with scan and closes rows.
func collect[T any](rows *sql.Rows, scan func(*sql.Rows) (T, error)) ([]T, error) {
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
