package domain

import (
	"errors"

	"google.golang.org/protobuf/proto"

	procurementevents "github.com/furrow/furrow/proto/furrow/procurement/events/v1"

	"github.com/furrow/furrow/pkg/cowmap"
	"github.com/furrow/furrow/pkg/snapshot"
)

// Versions of the programme's and the order's snapshot schemas. Bump one
// whenever its encoding changes, e.g. when the aggregate gains a field:
// snapshots of another version are not used (TestSnapshotsCoverEveryField
// fails until the encoding and the version follow a change of the structs).
const (
	ProgramSnapshotVersion = 1
	OrderSnapshotVersion   = 1
)

// ErrSnapshotUnsupported means the aggregate is in a state its snapshot
// schema does not hold (an overflowed total, kept only as an error): it
// is loaded by replaying its events instead.
var ErrSnapshotUnsupported = errors.New("aggregate state not held by its snapshot schema")

// EncodeProgramSnapshot writes the programme's state for a snapshot.
func EncodeProgramSnapshot(p *Program, w *snapshot.Writer) error {
	if p.overflow != nil {
		return ErrSnapshotUnsupported
	}
	if err := writeProto(w, p.opened); err != nil {
		return err
	}
	w.Bool(p.closed)
	w.Int(p.reserved)
	w.Int(p.orders)
	w.Uint(p.version)
	return nil
}

// DecodeProgramSnapshot reads what EncodeProgramSnapshot wrote back into
// programme id; r reports a failure.
func DecodeProgramSnapshot(id string, r *snapshot.Reader) *Program {
	p := NewProgram(id)
	p.opened = readProto[procurementevents.ProgramOpened](r)
	p.closed = r.Bool()
	p.reserved, p.orders = r.Int(), r.Int()
	p.version = r.Uint()
	return p
}

// EncodeOrderSnapshot writes the order's state for a snapshot.
func EncodeOrderSnapshot(o *Order, w *snapshot.Writer) error {
	if o.overflow != nil {
		return ErrSnapshotUnsupported
	}
	if err := writeProto(w, o.placed); err != nil {
		return err
	}
	w.Uint(uint64(len(o.prices)))
	for grade, price := range o.prices {
		w.String(grade)
		w.Int(price)
	}
	w.Bool(o.cancelled)
	w.Int(o.released)
	w.Int(o.totals.accepted)
	w.Int(o.totals.rejected)
	w.Int(o.totals.value)
	w.Uint(uint64(o.deliveries.Len()))
	for id, l := range o.deliveries.All() {
		w.String(id)
		if err := writeProto(w, l.recorded); err != nil {
			return err
		}
		w.Int(l.grams)
		w.String(l.grade)
		w.Int(l.price)
		w.Int(l.amount)
		w.Int(int64(l.corrections))
		w.Uint(l.seq)
		w.Uint(uint64(len(l.history)))
		for _, c := range l.history {
			w.Uint(c.seq)
			if err := writeProto(w, c.ev); err != nil {
				return err
			}
		}
	}
	w.Uint(o.version)
	return nil
}

// DecodeOrderSnapshot reads what EncodeOrderSnapshot wrote back into
// order id; r reports a failure.
func DecodeOrderSnapshot(id string, r *snapshot.Reader) *Order {
	o := NewOrder(id)
	o.placed = readProto[procurementevents.OrderPlaced](r)
	nPrices := r.Count(2)
	for range nPrices {
		grade := r.Text()
		o.prices[grade] = r.Int()
	}
	o.cancelled = r.Bool()
	o.released = r.Int()
	o.totals = orderTotals{accepted: r.Int(), rejected: r.Int(), value: r.Int()}
	nDeliveries := r.Count(8)
	deliveries := make(map[string]line, nDeliveries)
	for range nDeliveries {
		id := r.Text()
		l := line{recorded: readProto[procurementevents.DeliveryRecorded](r), grams: r.Int(), grade: r.Text(),
			price: r.Int(), amount: r.Int(), corrections: int32(r.Int()), seq: r.Uint()}
		if n := r.Count(2); n > 0 {
			l.history = make([]correctionAt, n)
			for i := range l.history {
				l.history[i].seq = r.Uint()
				l.history[i].ev = readProto[procurementevents.DeliveryCorrected](r)
			}
		}
		deliveries[id] = l
	}
	o.deliveries = cowmap.Of(deliveries)
	o.version = r.Uint()
	if len(o.prices) != nPrices || len(deliveries) != nDeliveries {
		r.Fail("repeated keys")
	}
	return o
}

// writeProto writes an event message the aggregate keeps: present or not,
// then its wire form.
func writeProto(w *snapshot.Writer, m proto.Message) error {
	if m == nil || !m.ProtoReflect().IsValid() {
		w.Bool(false)
		return nil
	}
	b, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	w.Bool(true)
	w.Bytes(b)
	return nil
}

// readProto reads what writeProto wrote (nil: absent).
func readProto[M any, P interface {
	*M
	proto.Message
}](r *snapshot.Reader) P {
	if !r.Bool() {
		return nil
	}
	b := r.Bytes()
	if r.Err() != nil {
		return nil
	}
	m := P(new(M))
	if err := proto.Unmarshal(b, m); err != nil {
		r.Fail("event message: " + err.Error())
		return nil
	}
	return m
}
