package domain_test

import (
	"errors"
	"math"
	"strings"
	"testing"

	procurementevents "github.com/furrow/furrow/proto/furrow/procurement/events/v1"

	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/money"

	"github.com/furrow/furrow/services/procurement/domain"
)

// wantOverflow fails unless err is a failed precondition wrapping
// money.ErrOverflow that names the overflow.
func wantOverflow(t *testing.T, what string, err error) {
	t.Helper()
	if failure.KindOf(err) != failure.KindFailedPrecondition || !errors.Is(err, money.ErrOverflow) || !strings.Contains(err.Error(), "overflow") {
		t.Fatalf("%s: err = %v; want a failed precondition wrapping money.ErrOverflow", what, err)
	}
}

// An order's accepted grams and value are bounded by its terms, but the
// weight graded REJECTED is not (it is weighed, recorded and not bought):
// a weigh-in that would take the order's rejected total beyond int64 is
// refused, and the totals stay exact.
func TestOrderRefusesRejectedGramsBeyondInt64(t *testing.T) {
	t.Parallel()
	s := &seq{}
	prog := openProgram(t, s, 1_000_000)
	o := placeOrder(t, s, prog, terms())
	w := domain.WeighIn{Grade: domain.GradeRejected, NetGrams: math.MaxInt64, WeighedAt: inWindow}
	ev, err := o.RecordDelivery(domain.OrderDeliveryID(o.ID(), "r1"), w)
	if err != nil {
		t.Fatal(err)
	}
	o.Apply(s.next(), ev)
	w.NetGrams = 1
	ev, err = o.RecordDelivery(domain.OrderDeliveryID(o.ID(), "r2"), w)
	if ev != nil {
		t.Fatalf("second rejected weigh-in = %v, want refused", ev)
	}
	wantOverflow(t, "rejected grams beyond int64", err)
	if o.RejectedGrams() != math.MaxInt64 || o.DeliveredGrams() != 0 {
		t.Fatalf("order totals: rejected %d g, accepted %d g", o.RejectedGrams(), o.DeliveredGrams())
	}
	// Accepted deliveries still fit beside the rejected weight.
	ev, err = o.RecordDelivery(domain.OrderDeliveryID(o.ID(), "r3"), domain.WeighIn{Grade: "A", NetGrams: 1_000, WeighedAt: inWindow})
	if err != nil || ev.GetAmountFen() != 1_200 {
		t.Fatalf("an accepted weigh-in = %v, %v", ev, err)
	}
}

// An order or a programme rebuilt from events whose totals overflow (a
// stream written before the domain checked) keeps the totals before the
// event that overflowed and refuses every change, rather than decide on a
// wrapped number.
func TestAggregatesRebuiltFromOverflowingEventsRefuseChanges(t *testing.T) {
	t.Parallel()
	s := &seq{}
	prog := openProgram(t, s, 1_000_000)
	o := placeOrder(t, s, prog, terms())
	for _, id := range []string{"r1", "r2"} {
		o.Apply(s.next(), &procurementevents.DeliveryRecorded{DeliveryId: domain.OrderDeliveryID(o.ID(), id), FarmerId: "F1",
			Grade: domain.GradeRejected, NetGrams: math.MaxInt64, OrderId: o.ID(), ProgramId: prog.ID()})
	}
	if o.RejectedGrams() != math.MaxInt64 {
		t.Fatalf("rejected grams = %d, want the total before the overflowing delivery", o.RejectedGrams())
	}
	_, err := o.RecordDelivery(domain.OrderDeliveryID(o.ID(), "r3"), domain.WeighIn{Grade: "A", NetGrams: 1_000, WeighedAt: inWindow})
	wantOverflow(t, "a delivery against the order", err)
	_, err = o.CorrectDelivery(domain.OrderDeliveryID(o.ID(), "r1"), domain.Correction{NetGrams: 1, Grade: domain.GradeRejected, Reason: "tare"})
	wantOverflow(t, "a correction", err)
	_, _, err = o.Cancel("stop")
	wantOverflow(t, "a cancellation", err)

	for range 2 {
		prog.Apply(s.next(), &procurementevents.BudgetReserved{ProgramId: prog.ID(), OrderId: "O-legacy", AmountFen: math.MaxInt64})
	}
	// The first order reserved 126,000 fen; the first legacy reservation
	// already overflows.
	if got := prog.ReservedFen(); got != 126_000 {
		t.Fatalf("reserved = %d, want the 126,000 fen before the overflowing reservation", got)
	}
	tm := terms()
	tm.FarmerID = "F2"
	_, _, err = domain.PlaceOrder(prog, domain.NewOrder("O2"), tm, qinglong)
	wantOverflow(t, "an order under the programme", err)
}
