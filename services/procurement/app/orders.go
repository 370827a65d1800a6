package app

import (
	"context"
	"fmt"

	procurementevents "github.com/furrow/furrow/proto/furrow/procurement/events/v1"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/ident"

	"github.com/furrow/furrow/services/procurement/domain"
)

// PlaceOrder is the command to place a purchase order.
type PlaceOrder struct {
	RequestID   string
	Fingerprint string
	Terms       domain.OrderTerms
	Meta        eventstore.Metadata
}

// OrderPlaced is the outcome of PlaceOrder.
type OrderPlaced struct {
	Order  *procurementevents.OrderPlaced
	Result eventstore.AppendResult
}

// PlaceOrder places an order and reserves its maximum value from the
// programme's budget, once per request id.
//
// Two aggregates change: the programme (the reservation) and the new order.
// They are written as one atomic batch, reservation first: JetStream checks
// the batch's expectation on its first message, so the batch lands only if
// the programme is still at the version the budget was checked against,
// and either both events land or neither does — there is no state in
// which budget is reserved for an order that does not exist, and nothing
// to recover after a crash. The order needs no expectation of its own: its
// id is derived from the request id, so only a retry of this very request
// could write to it, and retries are recognised by their idempotency key.
// A lost race (another order reserved first) reloads and re-decides: the
// budget check runs again on the new state, so it can never over-reserve.
func (p *Procurement) PlaceOrder(ctx context.Context, cmd PlaceOrder) (_ OrderPlaced, err error) {
	defer func() { err = reused(cmd.RequestID, err) }()
	if err := ident.CheckRequestID(cmd.RequestID); err != nil {
		return OrderPlaced{}, err
	}
	if err := cmd.Terms.Validate(); err != nil {
		return OrderPlaced{}, err
	}
	key := "procurement.PlaceOrder:" + cmd.RequestID
	orderID := domain.OrderIDFor(cmd.RequestID)
	var (
		farmer domain.Farmer
		known  bool
		looked bool
	)
	return retry(ctx, p.log, "place order", func() (OrderPlaced, error) {
		order, orderSeen, err := p.events.LoadOrder(ctx, orderID)
		if err != nil {
			return OrderPlaced{}, err
		}
		prog, progSeen, err := p.events.LoadProgram(ctx, cmd.Terms.ProgramID)
		if err != nil {
			return OrderPlaced{}, err
		}
		if res, ok, err := prior(key, cmd.Fingerprint, orderSeen, progSeen); ok || err != nil {
			if err != nil {
				return OrderPlaced{}, err
			}
			return p.placedOutcome(ctx, order, res)
		}
		if !prog.Opened() {
			return OrderPlaced{}, failure.NotFound("program_id", "programme %s does not exist", cmd.Terms.ProgramID)
		}
		if !looked {
			if farmer, known, err = p.farmers.Lookup(ctx, cmd.Terms.FarmerID); err != nil {
				return OrderPlaced{}, err
			}
			looked = true
		}
		if !known {
			return OrderPlaced{}, failure.NotFound("farmer_id", "farmer %s is not registered with the ledger", cmd.Terms.FarmerID)
		}
		changes, placed, err := domain.PlaceOrder(prog, order, cmd.Terms, farmer)
		if err != nil {
			return OrderPlaced{}, err
		}
		res, err := p.events.Append(ctx, prog, key, cmd.Fingerprint, cmd.Meta, changes...)
		if err != nil {
			return OrderPlaced{}, err
		}
		if res.Duplicate {
			// A concurrent retry of this request landed first; answer with
			// what it wrote, across both aggregates.
			return p.placedAgain(ctx, orderID, cmd.Terms.ProgramID, key, cmd.Fingerprint)
		}
		return OrderPlaced{Order: placed, Result: res}, nil
	})
}

func (p *Procurement) placedAgain(ctx context.Context, orderID, programID, key, fingerprint string) (OrderPlaced, error) {
	order, orderSeen, err := p.events.LoadOrder(ctx, orderID)
	if err != nil {
		return OrderPlaced{}, err
	}
	_, progSeen, err := p.events.LoadProgram(ctx, programID)
	if err != nil {
		return OrderPlaced{}, err
	}
	res, ok, err := prior(key, fingerprint, orderSeen, progSeen)
	if err != nil {
		return OrderPlaced{}, err
	}
	if !ok {
		return OrderPlaced{}, fmt.Errorf("place order %s: the store reported a duplicate that is not in the stream", orderID)
	}
	return p.placedOutcome(ctx, order, res)
}

// placedOutcome answers a retried PlaceOrder. The order may have been
// loaded just before the first attempt's batch landed; then it is reloaded.
func (p *Procurement) placedOutcome(ctx context.Context, order *domain.Order, res eventstore.AppendResult) (OrderPlaced, error) {
	if order.Placed() == nil {
		var err error
		if order, _, err = p.events.LoadOrder(ctx, order.ID()); err != nil {
			return OrderPlaced{}, err
		}
		if order.Placed() == nil {
			return OrderPlaced{}, fmt.Errorf("place order %s: reservation found without its order", order.ID())
		}
	}
	return OrderPlaced{Order: order.Placed(), Result: res}, nil
}

// CancelOrder is the command to cancel an order.
type CancelOrder struct {
	RequestID   string
	Fingerprint string
	OrderID     string
	Reason      string
	Meta        eventstore.Metadata
}

// OrderCancelled is the outcome of CancelOrder.
type OrderCancelled struct {
	Cancelled *procurementevents.OrderCancelled
	Result    eventstore.AppendResult
}

// CancelOrder cancels an order and releases the unused part of its
// reservation, once per request id. Like PlaceOrder it writes one atomic
// batch to two aggregates; here the order goes first and carries the
// expectation, because the amount released depends on what was delivered:
// a delivery landing meanwhile makes the batch fail, and the cancellation
// is decided again on the new state.
func (p *Procurement) CancelOrder(ctx context.Context, cmd CancelOrder) (_ OrderCancelled, err error) {
	defer func() { err = reused(cmd.RequestID, err) }()
	if err := ident.CheckRequestID(cmd.RequestID); err != nil {
		return OrderCancelled{}, err
	}
	if err := ident.Check("order_id", cmd.OrderID); err != nil {
		return OrderCancelled{}, err
	}
	key := "procurement.CancelOrder:" + cmd.RequestID
	return retry(ctx, p.log, "cancel order", func() (OrderCancelled, error) {
		order, seen, err := p.events.LoadOrder(ctx, cmd.OrderID)
		if err != nil {
			return OrderCancelled{}, err
		}
		if _, ok, err := seen.Check(key, cmd.Fingerprint); ok || err != nil {
			if err != nil {
				return OrderCancelled{}, err
			}
			return p.cancelledAgain(ctx, order, key, cmd.Fingerprint)
		}
		changes, cancelled, err := order.Cancel(cmd.Reason)
		if err != nil {
			return OrderCancelled{}, err
		}
		res, err := p.events.Append(ctx, order, key, cmd.Fingerprint, cmd.Meta, changes...)
		if err != nil {
			return OrderCancelled{}, err
		}
		if res.Duplicate {
			if order, _, err = p.events.LoadOrder(ctx, cmd.OrderID); err != nil {
				return OrderCancelled{}, err
			}
			return p.cancelledAgain(ctx, order, key, cmd.Fingerprint)
		}
		return OrderCancelled{Cancelled: cancelled, Result: res}, nil
	})
}

// cancelledAgain answers a retried CancelOrder with the first attempt's
// outcome and the position of its whole batch.
func (p *Procurement) cancelledAgain(ctx context.Context, order *domain.Order, key, fingerprint string) (OrderCancelled, error) {
	order, orderSeen, err := p.events.LoadOrder(ctx, order.ID())
	if err != nil {
		return OrderCancelled{}, err
	}
	_, progSeen, err := p.events.LoadProgram(ctx, order.Placed().GetProgramId())
	if err != nil {
		return OrderCancelled{}, err
	}
	res, ok, err := prior(key, fingerprint, orderSeen, progSeen)
	if err != nil {
		return OrderCancelled{}, err
	}
	if !ok {
		return OrderCancelled{}, fmt.Errorf("cancel order %s: the store reported a duplicate that is not in the stream", order.ID())
	}
	return OrderCancelled{Cancelled: &procurementevents.OrderCancelled{
		OrderId: order.ID(), ProgramId: order.Placed().GetProgramId(), ReleasedFen: order.Placed().GetReservedFen() - order.ReservedFen(),
	}, Result: res}, nil
}

// Order returns an order, as its events say now.
func (p *Procurement) Order(ctx context.Context, orderID string) (*domain.Order, error) {
	if err := ident.Check("order_id", orderID); err != nil {
		return nil, err
	}
	o, _, err := p.events.LoadOrder(ctx, orderID)
	if err != nil {
		return nil, err
	}
	if o.Placed() == nil {
		return nil, failure.NotFound("order_id", "order %s does not exist", orderID)
	}
	return o, nil
}
