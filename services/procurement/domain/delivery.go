package domain

import (
	"errors"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	procurementevents "github.com/furrow/furrow/proto/furrow/procurement/events/v1"

	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/ident"
	"github.com/furrow/furrow/pkg/money"
)

// DeliveryView is a delivery as last corrected.
type DeliveryView struct {
	DeliveryID    string
	FarmerID      string
	Product       string
	Grade         string
	NetGrams      int64
	PriceFenPerKg int64
	AmountFen     int64
	WeighedAt     time.Time
	OrderID       string
	ProgramID     string
	Warehouse     string
	County        string
	// DistributionCentre is empty when the weigh-in named none.
	DistributionCentre string
	Corrections        int32
	// Version is the stream sequence of the delivery's last event.
	Version uint64
}

// line is one delivery's state: as recorded, then as each correction left it.
type line struct {
	recorded    *procurementevents.DeliveryRecorded
	grams       int64
	grade       string
	price       int64
	amount      int64
	corrections int32
	seq         uint64
	// history holds the delivery's corrections with their sequences, so a
	// retried CorrectDelivery can answer with the correction it made.
	history []correctionAt
}

type correctionAt struct {
	seq uint64
	ev  *procurementevents.DeliveryCorrected
}

// RecordedView is the view of a delivery just recorded at seq.
func RecordedView(seq uint64, e *procurementevents.DeliveryRecorded) DeliveryView {
	return newLine(seq, e).view()
}

func newLine(seq uint64, e *procurementevents.DeliveryRecorded) *line {
	return &line{recorded: e, grams: e.GetNetGrams(), grade: e.GetGrade(), price: e.GetPriceFenPerKg(),
		amount: e.GetAmountFen(), seq: seq}
}

func (l *line) correct(seq uint64, e *procurementevents.DeliveryCorrected) {
	l.grams, l.grade, l.price, l.amount = e.GetNetGrams(), e.GetGrade(), e.GetPriceFenPerKg(), e.GetAmountFen()
	l.corrections = e.GetCorrectionNumber()
	l.seq = seq
	// An order's lines are values shared between copies of the order: the
	// history is copied, never appended to in place.
	l.history = append(slices.Clip(l.history), correctionAt{seq: seq, ev: e})
}

// correctionAt returns the correction written at seq.
func (l *line) correctionAt(seq uint64) (*procurementevents.DeliveryCorrected, bool) {
	for _, c := range l.history {
		if c.seq == seq {
			return c.ev, true
		}
	}
	return nil, false
}

// acceptedGrams is the weight bought: none when the grade is REJECTED.
func (l *line) acceptedGrams() int64 {
	if l.grade == GradeRejected {
		return 0
	}
	return l.grams
}

// correction is the event replacing l by repl: it reverses l's amount.
func (l *line) correction(repl *line, reason string) *procurementevents.DeliveryCorrected {
	r := l.recorded
	return &procurementevents.DeliveryCorrected{
		DeliveryId: r.GetDeliveryId(), FarmerId: r.GetFarmerId(),
		CorrectionNumber: l.corrections + 1, ReversedAmountFen: l.amount,
		NetGrams: repl.grams, Grade: repl.grade, PriceFenPerKg: repl.price, AmountFen: repl.amount,
		Reason: reason, OrderId: r.GetOrderId(), ProgramId: r.GetProgramId(), Product: r.GetProduct(),
	}
}

func (l *line) view() DeliveryView {
	r := l.recorded
	return DeliveryView{
		DeliveryID: r.GetDeliveryId(), FarmerID: r.GetFarmerId(), Product: r.GetProduct(),
		Grade: l.grade, NetGrams: l.grams, PriceFenPerKg: l.price, AmountFen: l.amount,
		WeighedAt: r.GetWeighedAt().AsTime(), OrderID: r.GetOrderId(), ProgramID: r.GetProgramId(),
		Warehouse: r.GetWarehouse(), County: r.GetCounty(), DistributionCentre: r.GetDistributionCentre(),
		Corrections: l.corrections, Version: l.seq,
	}
}

// Delivery is an ad-hoc weigh-in (bought at a stated price, without an
// order), rebuilt from its events.
type Delivery struct {
	id      string
	line    *line
	version uint64
}

// NewDelivery returns the empty aggregate for id, ready to replay events.
func NewDelivery(id string) *Delivery { return &Delivery{id: id} }

// Apply folds one recorded event into the aggregate.
func (d *Delivery) Apply(seq uint64, ev proto.Message) {
	d.version = seq
	switch e := ev.(type) {
	case *procurementevents.DeliveryRecorded:
		d.line = newLine(seq, e)
	case *procurementevents.DeliveryCorrected:
		if d.line != nil {
			d.line.correct(seq, e)
		}
	}
}

// ID returns the delivery id.
func (d *Delivery) ID() string { return d.id }

// Filter is the subject filter covering the delivery's events.
func (d *Delivery) Filter() string { return DeliveryAggregate(d.id) }

// Version is the stream sequence of the delivery's last event.
func (d *Delivery) Version() uint64 { return d.version }

// View returns the delivery as last corrected, false when none was recorded.
func (d *Delivery) View() (DeliveryView, bool) {
	if d.line == nil {
		return DeliveryView{}, false
	}
	return d.line.view(), true
}

// Recorded returns the delivery as first recorded (nil when none was).
func (d *Delivery) Recorded() *procurementevents.DeliveryRecorded {
	if d.line == nil {
		return nil
	}
	return d.line.recorded
}

// CorrectionAt returns the correction of the delivery written at seq.
func (d *Delivery) CorrectionAt(seq uint64) (*procurementevents.DeliveryCorrected, bool) {
	if d.line == nil {
		return nil, false
	}
	return d.line.correctionAt(seq)
}

// Record validates an ad-hoc weigh-in and returns its event with the
// amount payable (grams × price / 1000, rounded half-to-even; nothing for
// the REJECTED grade). known says whether farmer is registered with the
// ledger; an unknown farmer is NotFound, as for an order.
func (d *Delivery) Record(w WeighIn, farmer Farmer, known bool) (*procurementevents.DeliveryRecorded, error) {
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
	amount, err := adHocAmount(w.NetGrams, w.PriceFenPerKg, w.Grade)
	if err != nil {
		return nil, err
	}
	if w.Warehouse != "" {
		if err := ident.Check("warehouse", w.Warehouse); err != nil {
			return nil, err
		}
	}
	if err := checkCentre(w.DistributionCentre); err != nil {
		return nil, err
	}
	if !known {
		return nil, failure.NotFound("farmer_id", "farmer %s is not registered with the ledger", w.FarmerID)
	}
	if d.line != nil {
		return nil, failure.AlreadyExists("request_id", "delivery %s is already recorded", d.id)
	}
	return &procurementevents.DeliveryRecorded{
		DeliveryId: d.id, FarmerId: w.FarmerID, Product: w.Product, Grade: w.Grade,
		NetGrams: w.NetGrams, PriceFenPerKg: w.PriceFenPerKg, AmountFen: amount,
		WeighedAt: timestamppb.New(w.WeighedAt), Warehouse: w.Warehouse, County: farmer.County,
		DistributionCentre: w.DistributionCentre,
	}, nil
}

// Correct decides a correction of an ad-hoc delivery: its weight, grade
// and (when given) price.
func (d *Delivery) Correct(c Correction) (*procurementevents.DeliveryCorrected, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	if d.line == nil {
		return nil, failure.NotFound("delivery_id", "delivery %s does not exist", d.id)
	}
	price := d.line.price
	if c.PriceFenPerKg != nil {
		if price = *c.PriceFenPerKg; price < 0 {
			return nil, failure.Invalid("price_fen_per_kg", "must not be negative, got %d", price)
		}
	}
	if c.NetGrams == d.line.grams && c.Grade == d.line.grade && price == d.line.price {
		return nil, failure.Invalid("net_grams", "the correction changes nothing: delivery %s is already %d g of grade %q at %d fen/kg",
			d.id, d.line.grams, d.line.grade, d.line.price)
	}
	amount, err := adHocAmount(c.NetGrams, price, c.Grade)
	if err != nil {
		return nil, err
	}
	return d.line.correction(&line{grams: c.NetGrams, grade: c.Grade, price: price, amount: amount}, c.Reason), nil
}

func adHocAmount(grams, price int64, grade string) (int64, error) {
	if grade == GradeRejected {
		return 0, nil
	}
	amount, err := money.Amount(grams, price)
	if errors.Is(err, money.ErrOverflow) {
		return 0, failure.Invalid("price_fen_per_kg", "%d g at %d fen/kg overflows the amount", grams, price)
	}
	if err != nil {
		return 0, failure.Invalid("net_grams", "%v", err)
	}
	return amount, nil
}
