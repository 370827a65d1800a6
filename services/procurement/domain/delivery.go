// Package domain holds procurement's aggregates and rules. It does no I/O;
// aggregates are rebuilt only from their events.
package domain

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	procurementevents "github.com/furrow/furrow/proto/furrow/procurement/events/v1"

	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/ident"
	"github.com/furrow/furrow/pkg/money"
)

// Stream is procurement's event stream and Subjects the subjects it holds.
const (
	Stream   = "PROCUREMENT"
	Subjects = "procurement.>"
)

// DeliverySubject is the subject of a delivery's event of the given kind.
func DeliverySubject(deliveryID, kind string) string {
	return "procurement.delivery." + deliveryID + "." + kind
}

// DeliveryAggregate is the subject filter covering a delivery's events.
func DeliveryAggregate(deliveryID string) string { return "procurement.delivery." + deliveryID + ".>" }

// Event kinds (the last subject token).
const (
	KindDeliveryRecorded = "delivery_recorded"
)

// DeliveryIDFor derives a delivery's id from the client request that
// records it, so every retry of the request addresses the same aggregate.
func DeliveryIDFor(requestID string) string {
	sum := sha256.Sum256([]byte("procurement.RecordDelivery:" + requestID))
	return "D" + hex.EncodeToString(sum[:10])
}

// Delivery is a weigh-in, rebuilt from its events.
type Delivery struct {
	id       string
	recorded *procurementevents.DeliveryRecorded
	version  uint64
}

// NewDelivery returns the empty aggregate for id, ready to replay events.
func NewDelivery(id string) *Delivery { return &Delivery{id: id} }

// Apply folds one recorded event into the aggregate.
func (d *Delivery) Apply(seq uint64, ev proto.Message) {
	d.version = seq
	if e, ok := ev.(*procurementevents.DeliveryRecorded); ok {
		d.recorded = e
	}
}

// ID returns the delivery id.
func (d *Delivery) ID() string { return d.id }

// Version is the stream sequence of the delivery's last event.
func (d *Delivery) Version() uint64 { return d.version }

// Recorded returns the recorded weigh-in, or nil when there is none.
func (d *Delivery) Recorded() *procurementevents.DeliveryRecorded { return d.recorded }

// WeighIn is what a warehouse reports for one delivery.
type WeighIn struct {
	FarmerID      string
	Product       string
	Grade         string
	NetGrams      int64
	PriceFenPerKg int64
	WeighedAt     time.Time
}

// Record validates a weigh-in and returns its event with the amount payable
// (grams × price / 1000, rounded half-to-even). farmerKnown says whether the
// farmer has been registered with the ledger.
func (d *Delivery) Record(w WeighIn, farmerKnown bool) (*procurementevents.DeliveryRecorded, error) {
	if err := ident.Check("farmer_id", w.FarmerID); err != nil {
		return nil, err
	}
	if w.Product == "" {
		return nil, failure.Invalid("product", "is required")
	}
	if w.NetGrams <= 0 {
		return nil, failure.Invalid("net_grams", "must be positive, got %d", w.NetGrams)
	}
	if w.PriceFenPerKg < 0 {
		return nil, failure.Invalid("price_fen_per_kg", "must not be negative, got %d", w.PriceFenPerKg)
	}
	amount, err := money.Amount(w.NetGrams, w.PriceFenPerKg)
	if errors.Is(err, money.ErrOverflow) {
		return nil, failure.Invalid("price_fen_per_kg", "%d g at %d fen/kg overflows the amount", w.NetGrams, w.PriceFenPerKg)
	}
	if err != nil {
		return nil, failure.Invalid("net_grams", "%v", err)
	}
	if !farmerKnown {
		return nil, failure.Invalid("farmer_id", "farmer %s is not registered with the ledger", w.FarmerID)
	}
	if d.recorded != nil {
		return nil, failure.AlreadyExists("request_id", "delivery %s is already recorded", d.id)
	}
	return &procurementevents.DeliveryRecorded{
		DeliveryId:    d.id,
		FarmerId:      w.FarmerID,
		Product:       w.Product,
		Grade:         w.Grade,
		NetGrams:      w.NetGrams,
		PriceFenPerKg: w.PriceFenPerKg,
		AmountFen:     amount,
		WeighedAt:     timestamppb.New(w.WeighedAt),
	}, nil
}
