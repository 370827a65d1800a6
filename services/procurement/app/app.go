// Package app holds procurement's command and query handlers.
package app

import (
	"context"
	"errors"
	"time"

	"google.golang.org/protobuf/proto"

	procurementevents "github.com/furrow/furrow/proto/furrow/procurement/events/v1"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/ident"

	"github.com/furrow/furrow/services/procurement/domain"
)

// Deliveries loads and appends delivery aggregates.
type Deliveries interface {
	Load(ctx context.Context, id string) (*domain.Delivery, *eventstore.Requests, error)
	Append(ctx context.Context, d *domain.Delivery, kind string, ev proto.Message, key, fingerprint string, md eventstore.Metadata) (eventstore.AppendResult, error)
}

// Farmers says whether a farmer is registered.
type Farmers interface {
	Known(ctx context.Context, farmerID string) (bool, error)
}

// Procurement is procurement's application service.
type Procurement struct {
	deliveries Deliveries
	farmers    Farmers
	now        func() time.Time
}

// New returns the application service.
func New(deliveries Deliveries, farmers Farmers) *Procurement {
	return &Procurement{deliveries: deliveries, farmers: farmers, now: time.Now}
}

// RecordDelivery is the command to record a weigh-in.
type RecordDelivery struct {
	RequestID   string
	Fingerprint string
	WeighIn     domain.WeighIn
	Meta        eventstore.Metadata
}

// Recorded is the outcome of RecordDelivery.
type Recorded struct {
	Delivery *procurementevents.DeliveryRecorded
	Result   eventstore.AppendResult
}

// RecordDelivery records a weigh-in once per request id.
func (p *Procurement) RecordDelivery(ctx context.Context, cmd RecordDelivery) (Recorded, error) {
	if err := ident.CheckRequestID(cmd.RequestID); err != nil {
		return Recorded{}, err
	}
	key := "procurement.RecordDelivery:" + cmd.RequestID
	d, seen, err := p.deliveries.Load(ctx, domain.DeliveryIDFor(cmd.RequestID))
	if err != nil {
		return Recorded{}, err
	}
	if res, ok, err := seen.Check(key, cmd.Fingerprint); ok || err != nil {
		return Recorded{Delivery: d.Recorded(), Result: res}, err
	}
	w := cmd.WeighIn
	if w.WeighedAt.IsZero() {
		w.WeighedAt = p.now()
	}
	known := false
	if ident.Check("farmer_id", w.FarmerID) == nil {
		if known, err = p.farmers.Known(ctx, w.FarmerID); err != nil {
			return Recorded{}, err
		}
	}
	ev, err := d.Record(w, known)
	if err != nil {
		return Recorded{}, err
	}
	res, err := p.deliveries.Append(ctx, d, domain.KindDeliveryRecorded, ev, key, cmd.Fingerprint, cmd.Meta)
	if errors.Is(err, eventstore.ErrConflict) {
		return Recorded{}, failure.Conflict(err)
	}
	if err != nil {
		return Recorded{}, err
	}
	if res.Duplicate {
		// A concurrent retry of the same request landed first.
		if d, _, err = p.deliveries.Load(ctx, d.ID()); err != nil {
			return Recorded{}, err
		}
		ev = d.Recorded()
	}
	return Recorded{Delivery: ev, Result: res}, nil
}

// Delivery returns a recorded delivery.
func (p *Procurement) Delivery(ctx context.Context, id string) (*domain.Delivery, error) {
	if err := ident.Check("delivery_id", id); err != nil {
		return nil, err
	}
	d, _, err := p.deliveries.Load(ctx, id)
	if err != nil {
		return nil, err
	}
	if d.Recorded() == nil {
		return nil, failure.NotFound("delivery_id", "delivery %s does not exist", id)
	}
	return d, nil
}
