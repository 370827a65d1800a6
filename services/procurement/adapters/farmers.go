package adapters

import (
	"context"
	"database/sql"
	"fmt"

	ledgerevents "github.com/furrow/furrow/proto/furrow/ledger/events/v1"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/projection"

	"github.com/furrow/furrow/services/procurement/app"
	"github.com/furrow/furrow/services/procurement/domain"
)

// LedgerStream is the ledger's stream, whose FarmerRegistered events tell
// procurement which farmers exist.
const LedgerStream = "LEDGER"

// farmerRegistered is the subject filter of every farmer registration.
const farmerRegistered = "ledger.farmer.*.farmer_registered"

// LedgerFarmers finds a farmer by reading its registration event from the
// ledger's stream: the ledger's events are its public contract, and the
// stream is always current, unlike a projection, so a command never
// refuses a farmer registered a moment ago.
type LedgerFarmers struct{ store *eventstore.Store }

var _ app.Farmers = (*LedgerFarmers)(nil)

// NewLedgerFarmers returns a directory over store.
func NewLedgerFarmers(store *eventstore.Store) *LedgerFarmers { return &LedgerFarmers{store: store} }

// Lookup returns the registered farmer, or false.
func (l *LedgerFarmers) Lookup(ctx context.Context, farmerID string) (domain.Farmer, bool, error) {
	evs, err := l.store.Load(ctx, LedgerStream, "ledger.farmer."+farmerID+".farmer_registered", 0)
	if err != nil {
		return domain.Farmer{}, false, fmt.Errorf("look up farmer %s: %w", farmerID, err)
	}
	if len(evs) == 0 {
		return domain.Farmer{}, false, nil
	}
	msg, err := eventstore.Decode(evs[0])
	if err != nil {
		return domain.Farmer{}, false, fmt.Errorf("look up farmer %s: %w", farmerID, err)
	}
	r, ok := msg.(*ledgerevents.FarmerRegistered)
	if !ok {
		return domain.Farmer{}, false, fmt.Errorf("look up farmer %s: %s is a %s", farmerID, evs[0].Subject, evs[0].Type)
	}
	return domain.Farmer{ID: r.GetFarmerId(), Name: r.GetName(), County: r.GetCounty(), Cooperative: r.GetCooperative()}, true, nil
}

// LookupMany returns those of farmerIDs that are registered, reading their
// registrations in a few batched requests.
func (l *LedgerFarmers) LookupMany(ctx context.Context, farmerIDs []string) (map[string]domain.Farmer, error) {
	subjects := make([]string, len(farmerIDs))
	for i, id := range farmerIDs {
		subjects[i] = "ledger.farmer." + id + ".farmer_registered"
	}
	evs, err := l.store.Lasts(ctx, LedgerStream, subjects)
	if err != nil {
		return nil, fmt.Errorf("look up %d farmers: %w", len(farmerIDs), err)
	}
	out := make(map[string]domain.Farmer, len(evs))
	for _, ev := range evs {
		msg, err := eventstore.Decode(ev)
		if err != nil {
			return nil, fmt.Errorf("look up farmers: %w", err)
		}
		r, ok := msg.(*ledgerevents.FarmerRegistered)
		if !ok {
			return nil, fmt.Errorf("look up farmers: %s is a %s", ev.Subject, ev.Type)
		}
		out[r.GetFarmerId()] = domain.Farmer{ID: r.GetFarmerId(), Name: r.GetName(), County: r.GetCounty(), Cooperative: r.GetCooperative()}
	}
	return out, nil
}

// FarmersProjection keeps procurement's own list of the farmers registered
// with the ledger (name, county, cooperative), fed by the ledger's
// FarmerRegistered events: procurement never reads the ledger's tables.
// County totals count farmers from it.
type FarmersProjection struct{}

var _ projection.Versioned = FarmersProjection{}

// tableFarmers is the farmers table's logical name: readers query it, a
// view of the live copy.
const tableFarmers = "procurement_farmers"

// Tables implements projection.Versioned: Migrate and Apply write a copy's
// own table (projection.Table), so the projection can be rebuilt beside
// its live copy and swapped.
func (FarmersProjection) Tables() []string { return []string{tableFarmers} }

var _ projection.LateIndexed = FarmersProjection{}

// LateIndexes implements projection.LateIndexed: Apply writes farmers by
// id, so a rebuild builds the county index at the end.
func (FarmersProjection) LateIndexes() []string { return []string{"procurement_farmers_county"} }

// Name implements projection.Projection.
func (FarmersProjection) Name() string { return "procurement_farmers" }

// Stream implements projection.Projection.
func (FarmersProjection) Stream() string { return LedgerStream }

// Subjects implements projection.Projection.
func (FarmersProjection) Subjects() []string { return []string{farmerRegistered} }

// Migrate implements projection.Projection.
func (FarmersProjection) Migrate(ctx context.Context, tx *sql.Tx) error {
	farmers := projection.Table(ctx, tableFarmers)
	for _, stmt := range []string{
		`CREATE TABLE IF NOT EXISTS ` + farmers + ` (
			farmer_id TEXT PRIMARY KEY,
			name TEXT NOT NULL,
			county TEXT NOT NULL,
			cooperative TEXT NOT NULL,
			seq BIGINT NOT NULL)`,
		// Index names are per schema, not per table: each copy names its own.
		`CREATE INDEX IF NOT EXISTS ` + projection.Table(ctx, "procurement_farmers_county") + ` ON ` + farmers + ` (county)`,
	} {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("migrate procurement_farmers: %w", err)
		}
	}
	return nil
}

// Apply implements projection.Projection.
func (FarmersProjection) Apply(ctx context.Context, tx *sql.Tx, rec eventstore.Recorded) error {
	msg, err := eventstore.Decode(rec)
	if err != nil {
		return err
	}
	e, ok := msg.(*ledgerevents.FarmerRegistered)
	if !ok {
		return nil // only registrations are on the filter; anything else is not ours
	}
	// A farmer is registered once; DO NOTHING keeps the first registration
	// should the ledger ever repeat one.
	_, err = tx.ExecContext(ctx, `INSERT INTO `+projection.Table(ctx, tableFarmers)+` (farmer_id, name, county, cooperative, seq)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (farmer_id) DO NOTHING`,
		e.GetFarmerId(), e.GetName(), e.GetCounty(), e.GetCooperative(), rec.Sequence)
	if err != nil {
		return fmt.Errorf("apply %s seq %d: %w", rec.Type, rec.Sequence, err)
	}
	return nil
}
