package app

import (
	"context"
	"fmt"
	"sync"

	procurementevents "github.com/furrow/furrow/proto/furrow/procurement/events/v1"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/ident"

	"github.com/furrow/furrow/services/procurement/domain"
)

// RecordDelivery is the command to record a weigh-in. With an OrderID it is
// a delivery against that order; without, an ad-hoc purchase at the stated
// price.
type RecordDelivery struct {
	RequestID   string
	Fingerprint string
	OrderID     string
	WeighIn     domain.WeighIn
	Meta        eventstore.Metadata
}

// Recorded is the outcome of RecordDelivery: the delivery as recorded.
type Recorded struct {
	Delivery *procurementevents.DeliveryRecorded
	Result   eventstore.AppendResult
}

// RecordDelivery records a weigh-in once per request id.
func (p *Procurement) RecordDelivery(ctx context.Context, cmd RecordDelivery) (_ Recorded, err error) {
	defer func() { err = reused(cmd.RequestID, err) }()
	if err := ident.CheckRequestID(cmd.RequestID); err != nil {
		return Recorded{}, err
	}
	if cmd.WeighIn.WeighedAt.IsZero() {
		cmd.WeighIn.WeighedAt = p.now()
	}
	if cmd.OrderID == "" {
		return p.recordAdHoc(ctx, cmd)
	}
	if err := ident.Check("order_id", cmd.OrderID); err != nil {
		return Recorded{}, err
	}
	key := "procurement.RecordDelivery:" + cmd.RequestID
	deliveryID := domain.OrderDeliveryID(cmd.OrderID, cmd.RequestID)
	// A lost race means another delivery (or a cancellation) changed the
	// order; deciding again on the reloaded order re-checks the quantity,
	// so retrying is safe.
	return retry(ctx, p.log, "record delivery", func() (Recorded, error) {
		order, seen, err := p.events.LoadOrder(ctx, cmd.OrderID)
		if err != nil {
			return Recorded{}, err
		}
		if res, ok, err := seen.Check(key, cmd.Fingerprint); ok || err != nil {
			if err != nil {
				return Recorded{}, err
			}
			return recordedAgain(order, deliveryID, res)
		}
		ev, err := order.RecordDelivery(deliveryID, cmd.WeighIn)
		if err != nil {
			return Recorded{}, err
		}
		res, err := p.events.Append(ctx, order, key, cmd.Fingerprint, cmd.Meta,
			domain.Change{Subject: domain.OrderSubject(order.ID(), domain.KindDeliveryRecorded), Event: ev})
		if err != nil {
			return Recorded{}, err
		}
		if res.Duplicate {
			if order, _, err = p.events.LoadOrder(ctx, cmd.OrderID); err != nil {
				return Recorded{}, err
			}
			return recordedAgain(order, deliveryID, res)
		}
		return Recorded{Delivery: ev, Result: res}, nil
	})
}

func recordedAgain(order *domain.Order, deliveryID string, res eventstore.AppendResult) (Recorded, error) {
	ev, ok := order.Recorded(deliveryID)
	if !ok {
		return Recorded{}, fmt.Errorf("record delivery %s: the request was applied but the delivery is not in the order", deliveryID)
	}
	return Recorded{Delivery: ev, Result: res}, nil
}

// recordAdHoc records a delivery without an order, on an aggregate of its
// own (the issue-2 behaviour, kept for purchases outside any programme).
func (p *Procurement) recordAdHoc(ctx context.Context, cmd RecordDelivery) (Recorded, error) {
	key := "procurement.RecordDelivery:" + cmd.RequestID
	d, seen, err := p.events.LoadDelivery(ctx, domain.DeliveryIDFor(cmd.RequestID))
	if err != nil {
		return Recorded{}, err
	}
	if res, ok, err := seen.Check(key, cmd.Fingerprint); ok || err != nil {
		return Recorded{Delivery: d.Recorded(), Result: res}, err
	}
	w := cmd.WeighIn
	var (
		farmer domain.Farmer
		known  bool
	)
	if ident.Check("farmer_id", w.FarmerID) == nil {
		if farmer, known, err = p.farmers.Lookup(ctx, w.FarmerID); err != nil {
			return Recorded{}, err
		}
	}
	ev, err := d.Record(w, farmer, known)
	if err != nil {
		return Recorded{}, err
	}
	res, err := p.events.Append(ctx, d, key, cmd.Fingerprint, cmd.Meta,
		domain.Change{Subject: domain.DeliverySubject(d.ID(), domain.KindDeliveryRecorded), Event: ev})
	if err != nil {
		// A new aggregate conflicts only with a concurrent request of the
		// same id and other content; the store reports a same-content
		// retry as a duplicate.
		return Recorded{}, err
	}
	if res.Duplicate {
		if d, _, err = p.events.LoadDelivery(ctx, d.ID()); err != nil {
			return Recorded{}, err
		}
		ev = d.Recorded()
	}
	return Recorded{Delivery: ev, Result: res}, nil
}

// MaxLines is the most weigh-ins one RecordDeliveries call may carry.
const MaxLines = 1000

// lineWorkers bounds how many aggregates a RecordDeliveries call writes to
// at once.
const lineWorkers = 8

// CheckLines fails unless a RecordDeliveries call of n lines has 1 to
// MaxLines of them.
func CheckLines(n int) error {
	if n == 0 {
		return failure.Invalid("lines", "needs at least one weigh-in")
	}
	if n > MaxLines {
		return failure.Invalid("lines", "has %d weigh-ins; at most %d a call", n, MaxLines)
	}
	return nil
}

// LineResult is the outcome of one line of RecordDeliveries.
type LineResult struct {
	Recorded Recorded
	Err      error
}

// RecordDeliveries records a batch of weigh-ins, each as its own
// RecordDelivery: its own request id, idempotency and result. Lines are
// grouped by the aggregate they write to; groups run concurrently, and
// the lines of one group (one order) run in the order given, so which of
// two lines exceeds an order's quantity does not depend on scheduling.
func (p *Procurement) RecordDeliveries(ctx context.Context, lines []RecordDelivery) ([]LineResult, error) {
	if err := CheckLines(len(lines)); err != nil {
		return nil, err
	}
	groups := map[string][]int{}
	var order []string
	for i, l := range lines {
		g := "order:" + l.OrderID
		if l.OrderID == "" {
			g = "request:" + l.RequestID
		}
		if _, ok := groups[g]; !ok {
			order = append(order, g)
		}
		groups[g] = append(groups[g], i)
	}
	results := make([]LineResult, len(lines))
	sem := make(chan struct{}, lineWorkers)
	var wg sync.WaitGroup
	for _, g := range order {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			// Each index is written by exactly one goroutine.
			for _, i := range groups[g] {
				rec, err := p.RecordDelivery(ctx, lines[i])
				results[i] = LineResult{Recorded: rec, Err: err}
			}
		})
	}
	wg.Wait()
	return results, nil
}

// CorrectDelivery is the command to correct a recorded delivery.
type CorrectDelivery struct {
	RequestID   string
	Fingerprint string
	DeliveryID  string
	Correction  domain.Correction
	Meta        eventstore.Metadata
}

// Corrected is the outcome of CorrectDelivery.
type Corrected struct {
	Correction *procurementevents.DeliveryCorrected
	Result     eventstore.AppendResult
}

// CorrectDelivery appends a correction (reversal and replacement) of a
// delivery, once per request id. A delivery against an order is corrected
// on the order, which checks that the corrected delivery still fits it.
// A lost race reloads and re-decides: the correction states absolute
// values, and the reversal is taken from the reloaded state, so the
// payable always follows the last correction.
func (p *Procurement) CorrectDelivery(ctx context.Context, cmd CorrectDelivery) (_ Corrected, err error) {
	defer func() { err = reused(cmd.RequestID, err) }()
	if err := ident.CheckRequestID(cmd.RequestID); err != nil {
		return Corrected{}, err
	}
	if err := ident.Check("delivery_id", cmd.DeliveryID); err != nil {
		return Corrected{}, err
	}
	key := "procurement.CorrectDelivery:" + cmd.RequestID
	orderID, onOrder := domain.OrderOfDelivery(cmd.DeliveryID)
	return retry(ctx, p.log, "correct delivery", func() (Corrected, error) {
		var (
			agg     Aggregate
			subject string
			seen    *eventstore.Requests
			again   func(seq uint64) (*procurementevents.DeliveryCorrected, bool)
			decide  func() (*procurementevents.DeliveryCorrected, error)
		)
		if onOrder {
			order, s, err := p.events.LoadOrder(ctx, orderID)
			if err != nil {
				return Corrected{}, err
			}
			agg, seen, subject = order, s, domain.OrderSubject(orderID, domain.KindDeliveryCorrected)
			again = func(seq uint64) (*procurementevents.DeliveryCorrected, bool) {
				return order.CorrectionAt(cmd.DeliveryID, seq)
			}
			decide = func() (*procurementevents.DeliveryCorrected, error) {
				return order.CorrectDelivery(cmd.DeliveryID, cmd.Correction)
			}
		} else {
			d, s, err := p.events.LoadDelivery(ctx, cmd.DeliveryID)
			if err != nil {
				return Corrected{}, err
			}
			agg, seen, subject = d, s, domain.DeliverySubject(cmd.DeliveryID, domain.KindDeliveryCorrected)
			again = d.CorrectionAt
			decide = func() (*procurementevents.DeliveryCorrected, error) { return d.Correct(cmd.Correction) }
		}
		if res, ok, err := seen.Check(key, cmd.Fingerprint); ok || err != nil {
			if err != nil {
				return Corrected{}, err
			}
			ev, found := again(res.Last)
			if !found {
				return Corrected{}, fmt.Errorf("correct delivery %s: the request was applied but its correction is not found", cmd.DeliveryID)
			}
			return Corrected{Correction: ev, Result: res}, nil
		}
		ev, err := decide()
		if err != nil {
			return Corrected{}, err
		}
		res, err := p.events.Append(ctx, agg, key, cmd.Fingerprint, cmd.Meta, domain.Change{Subject: subject, Event: ev})
		if err != nil {
			return Corrected{}, err
		}
		if res.Duplicate {
			// A concurrent retry of this request landed first: go round
			// once more, which finds it by its key.
			return Corrected{}, fmt.Errorf("correct delivery %s: %w", cmd.DeliveryID, eventstore.ErrConflict)
		}
		return Corrected{Correction: ev, Result: res}, nil
	})
}

// Delivery returns a delivery as last corrected, as its events say now.
func (p *Procurement) Delivery(ctx context.Context, deliveryID string) (domain.DeliveryView, error) {
	if err := ident.Check("delivery_id", deliveryID); err != nil {
		return domain.DeliveryView{}, err
	}
	notFound := failure.NotFound("delivery_id", "delivery %s does not exist", deliveryID)
	if orderID, ok := domain.OrderOfDelivery(deliveryID); ok {
		o, _, err := p.events.LoadOrder(ctx, orderID)
		if err != nil {
			return domain.DeliveryView{}, err
		}
		v, ok := o.Delivery(deliveryID)
		if !ok {
			return domain.DeliveryView{}, notFound
		}
		return v, nil
	}
	d, _, err := p.events.LoadDelivery(ctx, deliveryID)
	if err != nil {
		return domain.DeliveryView{}, err
	}
	v, ok := d.View()
	if !ok {
		return domain.DeliveryView{}, notFound
	}
	return v, nil
}
