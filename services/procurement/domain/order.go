package domain

import (
	"errors"
	"fmt"
	"maps"
	"math/bits"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	procurementevents "github.com/furrow/furrow/proto/furrow/procurement/events/v1"

	"github.com/furrow/furrow/pkg/cowmap"
	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/ident"
	"github.com/furrow/furrow/pkg/money"
)

// GradeRejected is the grade of produce weighed in but not bought: it is
// recorded (the farmer brought it) and pays nothing.
const GradeRejected = "REJECTED"

// Limits on order terms.
const (
	maxGrades = 20
	// MaxToleranceBP is the largest over-delivery tolerance, in basis
	// points: an order accepts at most twice what it ordered.
	MaxToleranceBP = 10_000
	basisPoints    = 10_000
)

// OrderStatus is where an order stands.
type OrderStatus string

// Order statuses. Fulfilled is derived (accepted grams reached the ordered
// quantity); it still takes deliveries up to the tolerance.
const (
	OrderOpen      OrderStatus = "open"
	OrderFulfilled OrderStatus = "fulfilled"
	OrderCancelled OrderStatus = "cancelled"
)

// GradePrice is one row of an order's price table.
type GradePrice struct {
	Grade         string
	PriceFenPerKg int64
}

// OrderTerms are what PlaceOrder is given.
type OrderTerms struct {
	ProgramID       string
	FarmerID        string
	Product         string
	Prices          []GradePrice
	OrderedGrams    int64
	ToleranceBP     int32
	WindowStart     time.Time
	WindowEnd       time.Time
	OriginWarehouse string
}

// Validate checks the terms on their own, before anything is loaded.
func (t OrderTerms) Validate() error {
	if err := ident.Check("program_id", t.ProgramID); err != nil {
		return err
	}
	if err := ident.Check("farmer_id", t.FarmerID); err != nil {
		return err
	}
	if err := ident.Check("product", t.Product); err != nil {
		return err
	}
	if len(t.Prices) == 0 {
		return failure.Invalid("prices", "needs at least one grade")
	}
	if len(t.Prices) > maxGrades {
		return failure.Invalid("prices", "has %d grades; at most %d", len(t.Prices), maxGrades)
	}
	seen := map[string]bool{}
	for i, p := range t.Prices {
		field := fmt.Sprintf("prices[%d]", i)
		if err := ident.Check(field+".grade", p.Grade); err != nil {
			return err
		}
		if strings.EqualFold(p.Grade, GradeRejected) {
			return failure.Invalid(field+".grade", "%s is reserved for produce that is not bought", GradeRejected)
		}
		if seen[p.Grade] {
			return failure.Invalid(field+".grade", "grade %q is listed twice", p.Grade)
		}
		seen[p.Grade] = true
		if p.PriceFenPerKg <= 0 {
			return failure.Invalid(field+".price_fen_per_kg", "must be positive, got %d", p.PriceFenPerKg)
		}
	}
	if t.OrderedGrams <= 0 {
		return failure.Invalid("ordered_grams", "must be positive, got %d", t.OrderedGrams)
	}
	if t.ToleranceBP < 0 || t.ToleranceBP > MaxToleranceBP {
		return failure.Invalid("tolerance_bp", "must be 0 to %d, got %d", MaxToleranceBP, t.ToleranceBP)
	}
	if err := checkPeriod("window_start", "window_end", t.WindowStart, t.WindowEnd); err != nil {
		return err
	}
	if err := ident.Check("origin_warehouse", t.OriginWarehouse); err != nil {
		return err
	}
	_, _, err := t.limits()
	return err
}

// limits returns the most grams the order accepts (ordered plus the
// tolerance, rounded down) and the most it can cost: those grams at the
// highest price of the table, which is what it reserves from the budget.
func (t OrderTerms) limits() (maxGrams, maxValue int64, err error) {
	// ordered × bp fits in 128 bits; the extra grams, at most ordered, fit
	// in an int64 whenever the product's high word is zero.
	hi, lo := bits.Mul64(uint64(t.OrderedGrams), uint64(t.ToleranceBP))
	if hi != 0 {
		return 0, 0, failure.Invalid("ordered_grams", "%d g with %d bp tolerance overflows", t.OrderedGrams, t.ToleranceBP)
	}
	maxGrams, err = money.Add(t.OrderedGrams, int64(lo/basisPoints))
	if err != nil {
		return 0, 0, failure.Invalid("ordered_grams", "%d g with %d bp tolerance overflows", t.OrderedGrams, t.ToleranceBP)
	}
	var top int64
	for _, p := range t.Prices {
		top = max(top, p.PriceFenPerKg)
	}
	maxValue, err = money.Amount(maxGrams, top)
	if errors.Is(err, money.ErrOverflow) {
		return 0, 0, failure.Invalid("prices", "%d g at %d fen/kg overflows the order's value", maxGrams, top)
	}
	if err != nil {
		return 0, 0, failure.Invalid("prices", "%v", err)
	}
	return maxGrams, maxValue, nil
}

// PlaceOrder decides a new order under prog with farmer, who must be
// registered with the ledger. It returns two changes, in the order they
// must be appended: the reservation on the programme first (it carries the
// expectation of the programme's version, so a concurrent reservation
// makes the append fail rather than overspend), then the order.
func PlaceOrder(prog *Program, order *Order, t OrderTerms, farmer Farmer) ([]Change, *procurementevents.OrderPlaced, error) {
	if err := t.Validate(); err != nil {
		return nil, nil, err
	}
	if !prog.Opened() {
		return nil, nil, failure.NotFound("program_id", "programme %s does not exist", t.ProgramID)
	}
	if order.placed != nil {
		return nil, nil, failure.AlreadyExists("request_id", "order %s is already placed", order.id)
	}
	terms := prog.Terms()
	if !prog.buys(t.Product) {
		return nil, nil, failure.Invalid("product", "programme %s does not buy %q; it buys %s",
			prog.id, t.Product, strings.Join(terms.GetProducts(), ", "))
	}
	if !prog.serves(farmer.County) {
		return nil, nil, failure.Invalid("farmer_id", "farmer %s is in county %q, which programme %s does not serve",
			farmer.ID, farmer.County, prog.id)
	}
	start, end := terms.GetPeriodStart().AsTime(), terms.GetPeriodEnd().AsTime()
	if t.WindowStart.Before(start) || t.WindowEnd.After(end) {
		return nil, nil, failure.Invalid("window_start", "delivery window %s to %s is not within programme %s's period %s to %s",
			stamp(t.WindowStart), stamp(t.WindowEnd), prog.id, stamp(start), stamp(end))
	}
	if prog.Closed() {
		return nil, nil, failure.FailedPrecondition("programme %s is closed: it takes no orders", prog.id)
	}
	if prog.overflow != nil {
		return nil, nil, failure.Overflow(prog.overflow, "programme %s's budget overflowed in the stream: it takes no orders", prog.id)
	}
	maxGrams, maxValue, err := t.limits()
	if err != nil {
		return nil, nil, err
	}
	if avail := prog.AvailableFen(); maxValue > avail {
		return nil, nil, failure.FailedPrecondition("over budget: the order needs %d fen reserved (%d g at up to its highest price), programme %s has %d fen of %d left",
			maxValue, maxGrams, prog.id, avail, terms.GetBudgetFen())
	}
	prices := make([]*procurementevents.GradePrice, len(t.Prices))
	for i, p := range t.Prices {
		prices[i] = &procurementevents.GradePrice{Grade: p.Grade, PriceFenPerKg: p.PriceFenPerKg}
	}
	slices.SortFunc(prices, func(a, b *procurementevents.GradePrice) int { return strings.Compare(a.Grade, b.Grade) })
	placed := &procurementevents.OrderPlaced{
		OrderId: order.id, ProgramId: prog.id, FarmerId: t.FarmerID, County: farmer.County,
		Product: t.Product, Prices: prices, OrderedGrams: t.OrderedGrams, ToleranceBp: t.ToleranceBP,
		MaxGrams: maxGrams, ReservedFen: maxValue,
		WindowStart: timestamppb.New(t.WindowStart), WindowEnd: timestamppb.New(t.WindowEnd),
		OriginWarehouse: t.OriginWarehouse,
	}
	return []Change{
		{Subject: ProgramSubject(prog.id, KindBudgetReserved), Event: &procurementevents.BudgetReserved{
			ProgramId: prog.id, OrderId: order.id, AmountFen: maxValue}},
		{Subject: OrderSubject(order.id, KindOrderPlaced), Event: placed},
	}, placed, nil
}

// Order is a purchase order and the deliveries weighed in against it,
// rebuilt from its events.
//
// Deliveries against an order are events of the order, not of a delivery
// aggregate of their own: the order is the consistency boundary of its
// quantity and value. Appending each delivery and correction with an
// expectation of the order's version makes two concurrent weigh-ins (or a
// weigh-in and a cancellation) serialise on the order, so the ordered
// quantity can never be exceeded by a race. A delivery id starts with its
// order's id (OrderDeliveryID), so GetDelivery and CorrectDelivery find the
// order from the delivery id alone.
type Order struct {
	id        string
	placed    *procurementevents.OrderPlaced
	prices    map[string]int64
	cancelled bool
	released  int64
	// totals over the deliveries, as last corrected.
	totals orderTotals
	// overflow, when set, says why totals stopped following the events:
	// one took a total beyond int64. The domain never writes such an
	// event (fits checks every change), but a stream written before it
	// checked may hold one. The order then refuses every change rather
	// than decide on a wrapped number.
	overflow error
	// deliveries grows with every delivery and is copied on every load of
	// a cached order, so it is a cowmap of line values.
	deliveries cowmap.Map[string, line]
	version    uint64
}

// NewOrder returns the empty aggregate for id, ready to replay events.
func NewOrder(id string) *Order {
	return &Order{id: id, prices: map[string]int64{}}
}

// Apply folds one recorded event into the aggregate.
func (o *Order) Apply(seq uint64, ev proto.Message) {
	o.version = seq
	switch e := ev.(type) {
	case *procurementevents.OrderPlaced:
		o.placed = e
		for _, p := range e.GetPrices() {
			o.prices[p.GetGrade()] = p.GetPriceFenPerKg()
		}
	case *procurementevents.OrderCancelled:
		o.cancelled = true
		o.released = e.GetReleasedFen()
	case *procurementevents.DeliveryRecorded:
		l := newLine(seq, e)
		o.deliveries.Set(e.GetDeliveryId(), *l)
		o.recount(nil, l, seq)
	case *procurementevents.DeliveryCorrected:
		if l, ok := o.deliveries.Get(e.GetDeliveryId()); ok {
			old := l
			l.correct(seq, e)
			o.deliveries.Set(e.GetDeliveryId(), l)
			o.recount(&old, &l, seq)
		}
	}
}

// recount replaces old's share of the totals (nil: none) by repl's, unless
// that overflows: then the totals stay and the order remembers why.
func (o *Order) recount(old, repl *line, seq uint64) {
	if o.overflow != nil {
		return
	}
	t, err := o.totals.replace(old, repl)
	if err != nil {
		o.overflow = fmt.Errorf("delivery %s at %s:%d: %w", repl.recorded.GetDeliveryId(), Stream, seq, err)
		return
	}
	o.totals = t
}

// Clone returns a deep copy of the order: applying events to either never
// changes the other. The deliveries are a cowmap, so a clone costs about
// the square root of their number. The events the order keeps (OrderPlaced,
// DeliveryRecorded, DeliveryCorrected) are shared: an event is a fact,
// never modified.
func (o *Order) Clone() *Order {
	c := *o
	c.prices = maps.Clone(o.prices)
	c.deliveries = o.deliveries.Clone()
	return &c
}

// orderTotals are an order's totals over its deliveries: accepted and
// rejected grams, and the amount payable.
type orderTotals struct {
	accepted, rejected, value int64
}

// replace returns t with old's share (nil: none) replaced by repl's, or an
// error wrapping money.ErrOverflow. Accepted grams and value are bounded by
// the order's terms once fits passed; rejected grams are bounded only here.
func (t orderTotals) replace(old, repl *line) (orderTotals, error) {
	var err error
	if old != nil {
		if t, err = t.add(old, -1); err != nil {
			return orderTotals{}, err
		}
	}
	return t.add(repl, 1)
}

// add adds (sign 1) or removes (sign -1) a delivery's share.
func (t orderTotals) add(l *line, sign int64) (orderTotals, error) {
	grams, err := money.Mul(sign, l.grams)
	if err != nil {
		return orderTotals{}, err
	}
	amount, err := money.Mul(sign, l.amount)
	if err != nil {
		return orderTotals{}, err
	}
	if l.grade == GradeRejected {
		if t.rejected, err = money.Add(t.rejected, grams); err != nil {
			return orderTotals{}, fmt.Errorf("rejected grams: %w", err)
		}
	} else if t.accepted, err = money.Add(t.accepted, grams); err != nil {
		return orderTotals{}, fmt.Errorf("accepted grams: %w", err)
	}
	if t.value, err = money.Add(t.value, amount); err != nil {
		return orderTotals{}, fmt.Errorf("value: %w", err)
	}
	return t, nil
}

// refuseIfOverflowed fails once the order's totals overflowed in the stream.
func (o *Order) refuseIfOverflowed() error {
	if o.overflow != nil {
		return failure.Overflow(o.overflow, "order %s's totals overflowed in the stream: it takes no changes", o.id)
	}
	return nil
}

// ID returns the order id.
func (o *Order) ID() string { return o.id }

// Filter is the subject filter covering the order's events.
func (o *Order) Filter() string { return OrderAggregate(o.id) }

// Version is the stream sequence of the order's last event (0: none).
func (o *Order) Version() uint64 { return o.version }

// Placed returns the order's terms as placed (nil before).
func (o *Order) Placed() *procurementevents.OrderPlaced { return o.placed }

// Status says where the order stands.
func (o *Order) Status() OrderStatus {
	switch {
	case o.cancelled:
		return OrderCancelled
	case o.totals.accepted >= o.placed.GetOrderedGrams():
		return OrderFulfilled
	}
	return OrderOpen
}

// ReservedFen is what the order holds reserved from the programme's
// budget: its reservation, less what a cancellation released.
func (o *Order) ReservedFen() int64 { return o.placed.GetReservedFen() - o.released }

// DeliveredGrams is the accepted weight, as corrected.
func (o *Order) DeliveredGrams() int64 { return o.totals.accepted }

// RejectedGrams is the weight graded REJECTED, as corrected.
func (o *Order) RejectedGrams() int64 { return o.totals.rejected }

// DeliveredFen is the amount payable for the deliveries, as corrected.
func (o *Order) DeliveredFen() int64 { return o.totals.value }

// Deliveries counts the deliveries recorded against the order.
func (o *Order) Deliveries() int { return o.deliveries.Len() }

// Delivery returns one of the order's deliveries as last corrected.
func (o *Order) Delivery(deliveryID string) (DeliveryView, bool) {
	l, ok := o.deliveries.Get(deliveryID)
	if !ok {
		return DeliveryView{}, false
	}
	return l.view(), true
}

// Recorded returns one of the order's deliveries as first recorded.
func (o *Order) Recorded(deliveryID string) (*procurementevents.DeliveryRecorded, bool) {
	l, ok := o.deliveries.Get(deliveryID)
	if !ok {
		return nil, false
	}
	return l.recorded, true
}

// CorrectionAt returns the correction of one of the order's deliveries
// written at seq.
func (o *Order) CorrectionAt(deliveryID string, seq uint64) (*procurementevents.DeliveryCorrected, bool) {
	l, ok := o.deliveries.Get(deliveryID)
	if !ok {
		return nil, false
	}
	return l.correctionAt(seq)
}

// Cancel returns the changes that cancel the order and release the unused
// part of its reservation, in the order they must be appended: the
// cancellation first (it carries the expectation of the order's version,
// so a concurrent delivery makes the append fail instead of releasing
// money that was just spent), then the release on the programme. The
// release needs no expectation of the programme: it only gives budget
// back, and the order's expectation already guarantees it happens once.
func (o *Order) Cancel(reason string) ([]Change, *procurementevents.OrderCancelled, error) {
	if o.placed == nil {
		return nil, nil, failure.NotFound("order_id", "order %s does not exist", o.id)
	}
	if o.cancelled {
		return nil, nil, failure.FailedPrecondition("order %s is already cancelled", o.id)
	}
	if err := o.refuseIfOverflowed(); err != nil {
		return nil, nil, err
	}
	// Deliveries never take the value beyond the reservation, so this is
	// never negative; max guards the invariant rather than trusting it.
	release := max(o.ReservedFen()-o.totals.value, 0)
	cancelled := &procurementevents.OrderCancelled{
		OrderId: o.id, ProgramId: o.placed.GetProgramId(), Reason: strings.TrimSpace(reason), ReleasedFen: release,
	}
	return []Change{
		{Subject: OrderSubject(o.id, KindOrderCancelled), Event: cancelled},
		{Subject: ProgramSubject(o.placed.GetProgramId(), KindBudgetReleased), Event: &procurementevents.BudgetReleased{
			ProgramId: o.placed.GetProgramId(), OrderId: o.id, AmountFen: release}},
	}, cancelled, nil
}

// WeighIn is what a warehouse reports for one delivery.
type WeighIn struct {
	FarmerID      string
	Product       string
	Grade         string
	NetGrams      int64
	PriceFenPerKg int64
	WeighedAt     time.Time
	Warehouse     string
	// DistributionCentre is the county distribution centre that weighed it
	// in (an id); optional.
	DistributionCentre string
}

// checkCentre validates an optional distribution centre id.
func checkCentre(id string) error {
	if id == "" {
		return nil
	}
	return ident.Check("distribution_centre", id)
}

// RecordDelivery decides a weigh-in against the order: the price comes
// from the order's price table by grade, the weigh-in must fall within the
// delivery window, and the accepted weight may not go beyond the ordered
// quantity plus the tolerance, nor the value beyond the reservation.
func (o *Order) RecordDelivery(deliveryID string, w WeighIn) (*procurementevents.DeliveryRecorded, error) {
	if w.NetGrams <= 0 {
		return nil, failure.Invalid("net_grams", "must be positive, got %d", w.NetGrams)
	}
	if o.placed == nil {
		return nil, failure.NotFound("order_id", "order %s does not exist", o.id)
	}
	p := o.placed
	if w.FarmerID != "" && w.FarmerID != p.GetFarmerId() {
		return nil, failure.Invalid("farmer_id", "order %s is with farmer %s, not %s", o.id, p.GetFarmerId(), w.FarmerID)
	}
	if w.Product != "" && w.Product != p.GetProduct() {
		return nil, failure.Invalid("product", "order %s is for %s, not %s", o.id, p.GetProduct(), w.Product)
	}
	if w.PriceFenPerKg != 0 {
		return nil, failure.Invalid("price_fen_per_kg", "comes from order %s's price table; leave it unset", o.id)
	}
	price, err := o.price("grade", w.Grade)
	if err != nil {
		return nil, err
	}
	warehouse := w.Warehouse
	if warehouse == "" {
		warehouse = p.GetOriginWarehouse()
	}
	if err := ident.Check("warehouse", warehouse); err != nil {
		return nil, err
	}
	if err := checkCentre(w.DistributionCentre); err != nil {
		return nil, err
	}
	if err := o.inWindow(w.WeighedAt); err != nil {
		return nil, err
	}
	if o.cancelled {
		return nil, failure.FailedPrecondition("order %s is cancelled: it takes no deliveries", o.id)
	}
	if o.deliveries.Has(deliveryID) {
		return nil, failure.AlreadyExists("request_id", "delivery %s is already recorded", deliveryID)
	}
	add := &line{grams: w.NetGrams, grade: w.Grade, price: price}
	if err := o.fits(nil, add); err != nil {
		return nil, err
	}
	return &procurementevents.DeliveryRecorded{
		DeliveryId: deliveryID, FarmerId: p.GetFarmerId(), Product: p.GetProduct(), Grade: w.Grade,
		NetGrams: w.NetGrams, PriceFenPerKg: price, AmountFen: add.amount,
		WeighedAt: timestamppb.New(w.WeighedAt), OrderId: o.id, ProgramId: p.GetProgramId(),
		Warehouse: warehouse, County: p.GetCounty(), DistributionCentre: w.DistributionCentre,
	}, nil
}

// Correction replaces a delivery's weight and grade (and, for an ad-hoc
// delivery, its price).
type Correction struct {
	NetGrams int64
	Grade    string
	// PriceFenPerKg is for ad-hoc deliveries; nil keeps the price.
	PriceFenPerKg *int64
	Reason        string
}

func (c Correction) validate() error {
	if c.NetGrams <= 0 {
		return failure.Invalid("net_grams", "must be positive, got %d", c.NetGrams)
	}
	if strings.TrimSpace(c.Reason) == "" {
		return failure.Invalid("reason", "is required: say why the delivery is corrected")
	}
	return nil
}

// CorrectDelivery decides a correction of one of the order's deliveries.
// The corrected delivery must still fit the order (quantity and value),
// also when the order has been cancelled since: a cancelled order keeps
// reserved exactly what was delivered, so a correction may lower its value
// but not raise it.
func (o *Order) CorrectDelivery(deliveryID string, c Correction) (*procurementevents.DeliveryCorrected, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	if c.PriceFenPerKg != nil {
		return nil, failure.Invalid("price_fen_per_kg", "comes from order %s's price table; leave it unset", o.id)
	}
	old, ok := o.deliveries.Get(deliveryID)
	if o.placed == nil || !ok {
		return nil, failure.NotFound("delivery_id", "delivery %s does not exist", deliveryID)
	}
	price, err := o.price("grade", c.Grade)
	if err != nil {
		return nil, err
	}
	if c.NetGrams == old.grams && c.Grade == old.grade {
		return nil, failure.Invalid("net_grams", "the correction changes nothing: delivery %s is already %d g of grade %s",
			deliveryID, old.grams, old.grade)
	}
	repl := &line{grams: c.NetGrams, grade: c.Grade, price: price}
	if err := o.fits(&old, repl); err != nil {
		return nil, err
	}
	return old.correction(repl, c.Reason), nil
}

// price returns the price of grade in the order's table (0 for REJECTED).
func (o *Order) price(field, grade string) (int64, error) {
	if grade == GradeRejected {
		return 0, nil
	}
	if p, ok := o.prices[grade]; ok {
		return p, nil
	}
	grades := make([]string, 0, len(o.prices)+1)
	for _, p := range o.placed.GetPrices() {
		grades = append(grades, p.GetGrade())
	}
	grades = append(grades, GradeRejected)
	if grade == "" {
		return 0, failure.Invalid(field, "is required against an order: one of %s", strings.Join(grades, ", "))
	}
	return 0, failure.Invalid(field, "%q is not in order %s's price table: one of %s", grade, o.id, strings.Join(grades, ", "))
}

func (o *Order) inWindow(at time.Time) error {
	start, end := o.placed.GetWindowStart().AsTime(), o.placed.GetWindowEnd().AsTime()
	if at.Before(start) || !at.Before(end) {
		return failure.Invalid("weighed_at", "%s is outside order %s's delivery window %s to %s",
			stamp(at), o.id, stamp(start), stamp(end))
	}
	return nil
}

// fits prices repl and checks that replacing old (nil for a new delivery)
// by it keeps the order within its quantity and its reservation.
func (o *Order) fits(old, repl *line) error {
	amount, err := money.Amount(repl.grams, repl.price)
	if err != nil {
		return failure.Invalid("net_grams", "%d g at %d fen/kg: %v", repl.grams, repl.price, err)
	}
	repl.amount = amount
	if err := o.refuseIfOverflowed(); err != nil {
		return err
	}
	// Accepted grams and value are bounded by the order's limits once the
	// checks below pass; rejected grams only by int64.
	t, err := o.totals.replace(old, repl)
	if err != nil {
		return failure.Overflow(err, "order %s's totals would overflow: refused", o.id)
	}
	accepted, value := t.accepted, t.value
	if limit := o.placed.GetMaxGrams(); accepted > limit {
		return failure.FailedPrecondition("beyond the ordered quantity: order %s would accept %d g; it ordered %d g and accepts at most %d g (tolerance %d bp)",
			o.id, accepted, o.placed.GetOrderedGrams(), limit, o.placed.GetToleranceBp())
	}
	// Reachable only through rounding at the very end of an order delivered
	// at its highest price (each delivery rounds once): the order never
	// costs more than it reserved, so the programme never spends beyond
	// its budget.
	if reserved := o.ReservedFen(); value > reserved {
		return failure.FailedPrecondition("beyond the order's reservation: order %s would cost %d fen; it holds %d fen reserved",
			o.id, value, reserved)
	}
	return nil
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }
