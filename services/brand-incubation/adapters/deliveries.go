package adapters

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	procurementevents "github.com/furrow/furrow/proto/furrow/procurement/events/v1"

	"github.com/furrow/furrow/pkg/consistency"
	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/projection"

	"github.com/furrow/furrow/services/brand-incubation/app"
)

// Procurement's stream and the event kind brand incubation follows there.
const (
	procurementStream              = "PROCUREMENT"
	procurementDeliveryRecords     = "procurement.*.*.delivery_recorded"
	procurementDeliveryCorrections = "procurement.*.*.delivery_corrected"
)

// DeliveriesProjection keeps, from procurement's DeliveryRecorded events,
// which farmer each delivery came from, so that a sales line may name the
// delivery instead of the farmer. It follows the event contract (the kind
// delivery_recorded, wherever procurement keeps the aggregate), not
// procurement's ids or tables.
type DeliveriesProjection struct{}

var _ projection.Versioned = DeliveriesProjection{}

const tableDeliveries = "brand_deliveries"

// Name implements projection.Projection.
func (DeliveriesProjection) Name() string { return "brand_deliveries" }

// Stream implements projection.Projection.
func (DeliveriesProjection) Stream() string { return procurementStream }

// Subjects implements projection.Projection.
func (DeliveriesProjection) Subjects() []string { return []string{procurementDeliveryRecords} }

// Tables implements projection.Versioned.
func (DeliveriesProjection) Tables() []string { return []string{tableDeliveries} }

// Migrate implements projection.Projection.
func (DeliveriesProjection) Migrate(ctx context.Context, tx *sql.Tx) error {
	_, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+projection.Table(ctx, tableDeliveries)+` (
		delivery_id TEXT PRIMARY KEY,
		farmer_id TEXT NOT NULL,
		product TEXT NOT NULL,
		seq BIGINT NOT NULL)`)
	if err != nil {
		return fmt.Errorf("migrate brand_deliveries: %w", err)
	}
	return nil
}

// Apply implements projection.Projection.
func (DeliveriesProjection) Apply(ctx context.Context, tx *sql.Tx, rec eventstore.Recorded) error {
	msg, err := eventstore.Decode(rec)
	if err != nil {
		return err
	}
	d, ok := msg.(*procurementevents.DeliveryRecorded)
	if !ok {
		return nil
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO `+projection.Table(ctx, tableDeliveries)+` (delivery_id, farmer_id, product, seq)
		VALUES ($1, $2, $3, $4) ON CONFLICT (delivery_id) DO NOTHING`,
		d.GetDeliveryId(), d.GetFarmerId(), d.GetProduct(), rec.Sequence)
	if err != nil {
		return fmt.Errorf("apply %s seq %d: %w", rec.Type, rec.Sequence, err)
	}
	return nil
}

// LotsProjection keeps, from procurement's DeliveryRecorded events, each
// delivered lot's farmer, product and grams as weighed in, and
// LotCorrectionsProjection the grams of its latest DeliveryCorrected: what a
// sales line naming the delivery may claim is the corrected grams, or the
// recorded ones. They are two projections because each follows one event
// kind of another service's stream: a consumer with one filter is one a
// NATS user may be allowed to create on that stream alone
// (deploy/nats/accounts.conf). LotsProjection supersedes
// DeliveriesProjection (kept so that its table stays current for readers
// of earlier versions); both follow the event contracts, not procurement's
// ids or tables.
type LotsProjection struct{}

var _ projection.Versioned = LotsProjection{}

const tableLots = "brand_lots"

// Name implements projection.Projection.
func (LotsProjection) Name() string { return "brand_lots" }

// Stream implements projection.Projection.
func (LotsProjection) Stream() string { return procurementStream }

// Subjects implements projection.Projection.
func (LotsProjection) Subjects() []string { return []string{procurementDeliveryRecords} }

// Tables implements projection.Versioned.
func (LotsProjection) Tables() []string { return []string{tableLots} }

// Migrate implements projection.Projection.
func (LotsProjection) Migrate(ctx context.Context, tx *sql.Tx) error {
	_, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+projection.Table(ctx, tableLots)+` (
		delivery_id TEXT PRIMARY KEY,
		farmer_id TEXT NOT NULL,
		product TEXT NOT NULL,
		net_grams BIGINT NOT NULL,
		seq BIGINT NOT NULL)`)
	if err != nil {
		return fmt.Errorf("migrate brand_lots: %w", err)
	}
	return nil
}

// Apply implements projection.Projection.
func (LotsProjection) Apply(ctx context.Context, tx *sql.Tx, rec eventstore.Recorded) error {
	msg, err := eventstore.Decode(rec)
	if err != nil {
		return err
	}
	d, ok := msg.(*procurementevents.DeliveryRecorded)
	if !ok {
		return nil
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO `+projection.Table(ctx, tableLots)+` (delivery_id, farmer_id, product, net_grams, seq)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (delivery_id) DO NOTHING`,
		d.GetDeliveryId(), d.GetFarmerId(), d.GetProduct(), d.GetNetGrams(), rec.Sequence)
	if err != nil {
		return fmt.Errorf("apply %s seq %d: %w", rec.Type, rec.Sequence, err)
	}
	return nil
}

// LotCorrectionsProjection keeps each delivery's latest correction (see
// LotsProjection).
type LotCorrectionsProjection struct{}

var _ projection.Versioned = LotCorrectionsProjection{}

const tableLotCorrections = "brand_lot_corrections"

// Name implements projection.Projection.
func (LotCorrectionsProjection) Name() string { return "brand_lot_corrections" }

// Stream implements projection.Projection.
func (LotCorrectionsProjection) Stream() string { return procurementStream }

// Subjects implements projection.Projection.
func (LotCorrectionsProjection) Subjects() []string { return []string{procurementDeliveryCorrections} }

// Tables implements projection.Versioned.
func (LotCorrectionsProjection) Tables() []string { return []string{tableLotCorrections} }

// Migrate implements projection.Projection.
func (LotCorrectionsProjection) Migrate(ctx context.Context, tx *sql.Tx) error {
	_, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+projection.Table(ctx, tableLotCorrections)+` (
		delivery_id TEXT PRIMARY KEY,
		net_grams BIGINT NOT NULL,
		correction_number INTEGER NOT NULL,
		seq BIGINT NOT NULL)`)
	if err != nil {
		return fmt.Errorf("migrate brand_lot_corrections: %w", err)
	}
	return nil
}

// Apply implements projection.Projection. A correction replaces the grams
// only when it is later than the one kept (corrections of a delivery are
// numbered 1, 2, …).
func (LotCorrectionsProjection) Apply(ctx context.Context, tx *sql.Tx, rec eventstore.Recorded) error {
	msg, err := eventstore.Decode(rec)
	if err != nil {
		return err
	}
	c, ok := msg.(*procurementevents.DeliveryCorrected)
	if !ok {
		return nil
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO `+projection.Table(ctx, tableLotCorrections)+` (delivery_id, net_grams, correction_number, seq)
		VALUES ($1, $2, $3, $4) ON CONFLICT (delivery_id) DO UPDATE
		SET net_grams = excluded.net_grams, correction_number = excluded.correction_number, seq = excluded.seq
		WHERE `+projection.Table(ctx, tableLotCorrections)+`.correction_number < excluded.correction_number`,
		c.GetDeliveryId(), c.GetNetGrams(), c.GetCorrectionNumber(), rec.Sequence)
	if err != nil {
		return fmt.Errorf("apply %s seq %d: %w", rec.Type, rec.Sequence, err)
	}
	return nil
}

// Waiter is the part of a projection runner DeliveryDirectory needs.
type Waiter interface {
	WaitFor(ctx context.Context, seq uint64) error
}

// DeliveryDirectory answers which farmer a delivery came from and how many
// grams it delivered, from the lots projections.
type DeliveryDirectory struct {
	db      *projection.DB
	store   *eventstore.Store
	runners []Waiter
}

var _ app.Deliveries = (*DeliveryDirectory)(nil)

// NewDeliveryDirectory returns a directory over the lots projections
// (LotsProjection and LotCorrectionsProjection: their runners) in db;
// store reads procurement's stream head.
func NewDeliveryDirectory(db *projection.DB, store *eventstore.Store, runners ...Waiter) *DeliveryDirectory {
	return &DeliveryDirectory{db: db, store: store, runners: runners}
}

// Lot implements app.Deliveries. It first waits until the projection
// reflects procurement's stream as it is now, so a delivery recorded (or
// corrected) before the call is always seen as it is.
func (d *DeliveryDirectory) Lot(ctx context.Context, deliveryID string) (app.Lot, bool, error) {
	head, err := streamHead(ctx, d.store, procurementStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return app.Lot{}, false, nil // no procurement here: no deliveries
	}
	if err != nil {
		return app.Lot{}, false, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, consistency.DefaultTimeout)
		defer cancel()
	}
	for _, r := range d.runners {
		if err := r.WaitFor(ctx, head); err != nil {
			return app.Lot{}, false, fmt.Errorf("delivery %s: %w", deliveryID, err)
		}
	}
	lot := app.Lot{DeliveryID: deliveryID}
	err = d.db.QueryRowContext(ctx, `SELECT l.farmer_id, l.product, COALESCE(c.net_grams, l.net_grams)
		FROM `+tableLots+` l LEFT JOIN `+tableLotCorrections+` c ON c.delivery_id = l.delivery_id
		WHERE l.delivery_id = $1`, deliveryID).
		Scan(&lot.FarmerID, &lot.Product, &lot.Grams)
	if errors.Is(err, sql.ErrNoRows) {
		return app.Lot{}, false, nil
	}
	if err != nil {
		return app.Lot{}, false, fmt.Errorf("delivery %s: %w", deliveryID, err)
	}
	return lot, true, nil
}
