package app

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
			// Reloaded from a replica that holds the earlier append.
			if err := eventstore.Reflecting(ctx, res.Last, func(ctx context.Context) (uint64, error) {
				var err error
				if order, _, err = p.events.LoadOrder(ctx, cmd.OrderID); err != nil {
					return 0, err
				}
				return order.Version(), nil
			}); err != nil {
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
		// Reloaded from a replica that holds the earlier append.
		if err := eventstore.Reflecting(ctx, res.Last, func(ctx context.Context) (uint64, error) {
			var err error
			if d, _, err = p.events.LoadDelivery(ctx, d.ID()); err != nil {
				return 0, err
			}
			return d.Version(), nil
		}); err != nil {
			return Recorded{}, err
		}
		ev = d.Recorded()
	}
	return Recorded{Delivery: ev, Result: res}, nil
}

// MaxLines is the most weigh-ins one RecordDeliveries call may carry.
const MaxLines = 1000

// lineWorkers bounds how many aggregates a RecordDeliveries call loads, or
// writes to line by line, at once.
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
// RecordDelivery: its own request id, idempotency and result, decided by
// the same rules.
//
// It is written for a warehouse's day, so it appends in bulk: lines are
// grouped by the aggregate they write to (an order, or an ad-hoc
// delivery), every aggregate is loaded once, and the calls proceed in
// rounds: each round decides the next line of every aggregate and appends
// them all together (Events.AppendMany: large atomic batches, each line
// with its own expectation and idempotency key), then folds each written
// event into its aggregate for the next round. The lines of one order are
// thus decided in the order given, on the order as the earlier lines left
// it, so which of two lines exceeds an order's quantity does not depend on
// scheduling. An aggregate that changed behind the call's back (a lost
// race) finishes its remaining lines one RecordDelivery at a time, which
// reloads and retries.
func (p *Procurement) RecordDeliveries(ctx context.Context, lines []RecordDelivery) ([]LineResult, error) {
	if err := CheckLines(len(lines)); err != nil {
		return nil, err
	}
	results := make([]LineResult, len(lines))
	cmds := slices.Clone(lines)
	var groups []*lineGroup
	byKey := map[string]*lineGroup{}
	for i := range cmds {
		c := &cmds[i]
		if err := ident.CheckRequestID(c.RequestID); err != nil {
			results[i].Err = err
			continue
		}
		if c.WeighIn.WeighedAt.IsZero() {
			c.WeighIn.WeighedAt = p.now()
		}
		key := "request:" + c.RequestID
		if c.OrderID != "" {
			if err := ident.Check("order_id", c.OrderID); err != nil {
				results[i].Err = err
				continue
			}
			key = "order:" + c.OrderID
		}
		g, ok := byKey[key]
		if !ok {
			g = &lineGroup{orderID: c.OrderID}
			if c.OrderID == "" {
				g.deliveryID = domain.DeliveryIDFor(c.RequestID)
			}
			byKey[key] = g
			groups = append(groups, g)
		}
		g.lines = append(g.lines, i)
	}
	farmers := p.loadGroups(ctx, cmds, groups)
	for {
		var (
			batch []lineAppend
			of    []*lineGroup
		)
		for _, g := range groups {
			if a, ok := p.nextAppend(g, cmds, farmers, results); ok {
				batch, of = append(batch, a), append(of, g)
			}
		}
		if len(batch) == 0 {
			break
		}
		appends := make([]Append, len(batch))
		for k, a := range batch {
			appends[k] = a.Append
		}
		for k, o := range p.events.AppendMany(ctx, appends) {
			g, a := of[k], batch[k]
			i := g.lines[g.next]
			switch {
			case o.Err == nil && !o.Result.Duplicate:
				results[i] = LineResult{Recorded: Recorded{Delivery: a.event, Result: o.Result}}
				g.written(a, o.Result)
				g.next++
			case o.Err == nil || errors.Is(o.Err, eventstore.ErrConflict):
				// The aggregate changed since it was loaded (or a
				// concurrent retry of this very line landed first):
				// reload and decide again, line by line.
				g.lineByLine = true
			default:
				results[i].Err = reused(cmds[i].RequestID, o.Err)
				g.next++
				g.lineByLine = true // its state is unknown now
			}
		}
	}
	p.finishLineByLine(ctx, cmds, groups, results)
	return results, nil
}

// lineGroup is the lines of one RecordDeliveries call that write to one
// aggregate, in the order given, and that aggregate as loaded and then
// written by the call. Only the calling goroutine touches it, except
// while loadGroups fills it in.
type lineGroup struct {
	orderID    string // an order's lines, or
	deliveryID string // an ad-hoc delivery's (lines sharing a request id)
	lines      []int  // indexes of the call's lines
	next       int    // lines[next] is the next line to decide

	order    *domain.Order
	delivery *domain.Delivery
	seen     *eventstore.Requests
	// lineByLine: finish lines[next:] one RecordDelivery at a time (a
	// failed load, a lost race).
	lineByLine bool
}

// lineAppend is one line's append and the event it carries.
type lineAppend struct {
	Append
	event *procurementevents.DeliveryRecorded
}

// farmerLookup is the outcome of one farmer lookup of an ad-hoc line.
type farmerLookup struct {
	farmer domain.Farmer
	known  bool
	err    error
}

// loadGroups loads every group's aggregate and looks up the farmers of the
// ad-hoc lines. Ad-hoc deliveries (nearly all new) and farmers are read in
// bulk; orders, and whatever the bulk reads could not answer, one by one,
// lineWorkers at a time. A group whose load fails goes line by line (each
// line loads again and reports its own error).
func (p *Procurement) loadGroups(ctx context.Context, cmds []RecordDelivery, groups []*lineGroup) map[string]farmerLookup {
	var (
		ids    []string
		adHoc  []*lineGroup
		single []func()
	)
	farmers := map[string]farmerLookup{}
	for _, g := range groups {
		if g.orderID != "" {
			single = append(single, func() {
				var err error
				g.order, g.seen, err = p.events.LoadOrder(ctx, g.orderID)
				g.lineByLine = err != nil
			})
			continue
		}
		adHoc = append(adHoc, g)
		for _, i := range g.lines {
			id := cmds[i].WeighIn.FarmerID
			if _, ok := farmers[id]; !ok && ident.Check("farmer_id", id) == nil {
				farmers[id] = farmerLookup{}
				ids = append(ids, id)
			}
		}
	}
	if len(adHoc) > 0 {
		dids := make([]string, len(adHoc))
		for k, g := range adHoc {
			dids[k] = g.deliveryID
		}
		ds, seen, err := p.events.LoadDeliveries(ctx, dids)
		for k, g := range adHoc {
			if err == nil {
				g.delivery, g.seen = ds[k], seen[k]
				continue
			}
			p.log.DebugContext(ctx, "bulk load of deliveries failed; loading one by one", "error", err)
			single = append(single, func() {
				var err error
				g.delivery, g.seen, err = p.events.LoadDelivery(ctx, g.deliveryID)
				g.lineByLine = err != nil
			})
		}
	}
	var mu sync.Mutex // guards farmers while the workers run
	if len(ids) > 0 {
		known, err := p.farmers.LookupMany(ctx, ids)
		for _, id := range ids {
			if err == nil {
				f, ok := known[id]
				farmers[id] = farmerLookup{farmer: f, known: ok}
				continue
			}
			single = append(single, func() {
				farmer, known, err := p.farmers.Lookup(ctx, id)
				mu.Lock()
				farmers[id] = farmerLookup{farmer: farmer, known: known, err: err}
				mu.Unlock()
			})
		}
	}
	tasks := make(chan func())
	var wg sync.WaitGroup
	for range min(lineWorkers, len(single)) {
		wg.Go(func() {
			for task := range tasks {
				task()
			}
		})
	}
	for _, task := range single {
		tasks <- task
	}
	close(tasks)
	wg.Wait()
	return farmers
}

// nextAppend decides g's lines until one needs an append, which it
// returns; lines answered without one (a retry of a recorded line, a
// refused weigh-in) get their results on the way.
func (p *Procurement) nextAppend(g *lineGroup, cmds []RecordDelivery, farmers map[string]farmerLookup, results []LineResult) (lineAppend, bool) {
	for ; g.next < len(g.lines) && !g.lineByLine; g.next++ {
		i := g.lines[g.next]
		c := cmds[i]
		key := "procurement.RecordDelivery:" + c.RequestID
		res, seen, err := g.seen.Check(key, c.Fingerprint)
		err = reused(c.RequestID, err)
		if g.order != nil {
			deliveryID := domain.OrderDeliveryID(g.orderID, c.RequestID)
			if seen || err != nil {
				if err == nil {
					results[i].Recorded, err = recordedAgain(g.order, deliveryID, res)
				}
				results[i].Err = err
				continue
			}
			ev, err := g.order.RecordDelivery(deliveryID, c.WeighIn)
			if err != nil {
				results[i].Err = err
				continue
			}
			return lineAppend{event: ev, Append: Append{Expect: g.order, Key: key, Fingerprint: c.Fingerprint, Meta: c.Meta,
				Changes: []domain.Change{{Subject: domain.OrderSubject(g.orderID, domain.KindDeliveryRecorded), Event: ev}}}}, true
		}
		d := g.delivery
		if seen || err != nil {
			results[i] = LineResult{Recorded: Recorded{Delivery: d.Recorded(), Result: res}, Err: err}
			continue
		}
		f := farmers[c.WeighIn.FarmerID]
		if f.err != nil {
			results[i].Err = f.err
			continue
		}
		ev, err := d.Record(c.WeighIn, f.farmer, f.known)
		if err != nil {
			results[i].Err = err
			continue
		}
		return lineAppend{event: ev, Append: Append{Expect: d, Key: key, Fingerprint: c.Fingerprint, Meta: c.Meta,
			Changes: []domain.Change{{Subject: domain.DeliverySubject(d.ID(), domain.KindDeliveryRecorded), Event: ev}}}}, true
	}
	return lineAppend{}, false
}

// written folds a line's appended event into the group's aggregate and
// notes its idempotency key, as loading it again would.
func (g *lineGroup) written(a lineAppend, res eventstore.AppendResult) {
	if g.order != nil {
		g.order.Apply(res.Last, a.event)
	} else {
		g.delivery.Apply(res.Last, a.event)
	}
	g.seen.Record(eventstore.Recorded{Stream: res.Stream, Sequence: res.Last, ID: res.EventIDs[0],
		IdempotencyKey: a.Key, Fingerprint: a.Fingerprint})
}

// finishLineByLine records the lines the rounds left, one RecordDelivery
// at a time per group, groups running concurrently.
func (p *Procurement) finishLineByLine(ctx context.Context, cmds []RecordDelivery, groups []*lineGroup, results []LineResult) {
	sem := make(chan struct{}, lineWorkers)
	var wg sync.WaitGroup
	for _, g := range groups {
		if g.next >= len(g.lines) {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			// Each index is written by exactly one goroutine.
			for _, i := range g.lines[g.next:] {
				rec, err := p.RecordDelivery(ctx, cmds[i])
				results[i] = LineResult{Recorded: rec, Err: err}
			}
		})
	}
	wg.Wait()
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
