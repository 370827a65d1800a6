package domain_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	procurementevents "github.com/furrow/furrow/proto/furrow/procurement/events/v1"

	"github.com/furrow/furrow/pkg/failure"

	"github.com/furrow/furrow/services/procurement/domain"
)

var (
	periodStart = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	periodEnd   = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	winStart    = time.Date(2025, 11, 1, 0, 0, 0, 0, time.UTC)
	winEnd      = time.Date(2025, 12, 1, 0, 0, 0, 0, time.UTC)
	inWindow    = time.Date(2025, 11, 15, 9, 30, 0, 0, time.UTC)
	qinglong    = domain.Farmer{ID: "F1", Name: "Li Wei", County: "Qinglong"}
)

// seq hands out stream sequences to events folded in a test, the way the
// stream would.
type seq struct{ n uint64 }

func (s *seq) next() uint64 { s.n++; return s.n }

// fold applies changes to the aggregates whose subjects they carry, as a
// repository reloading them would.
func (s *seq) fold(t testing.TB, prog *domain.Program, order *domain.Order, changes []domain.Change) {
	t.Helper()
	for _, c := range changes {
		n := s.next()
		switch {
		case prog != nil && strings.HasPrefix(c.Subject, "procurement.program."+prog.ID()+"."):
			prog.Apply(n, c.Event)
		case order != nil && strings.HasPrefix(c.Subject, "procurement.order."+order.ID()+"."):
			order.Apply(n, c.Event)
		default:
			t.Fatalf("change on %s belongs to no aggregate under test", c.Subject)
		}
	}
}

func wantFailure(t testing.TB, err error, kind failure.Kind, field string) {
	t.Helper()
	var fe *failure.Error
	if !errors.As(err, &fe) {
		t.Fatalf("err = %v, want a %s failure", err, kind)
	}
	if fe.Kind != kind || fe.Field != field {
		t.Fatalf("err = %v (%s, field %q), want %s naming %q", err, fe.Kind, fe.Field, kind, field)
	}
}

func openProgram(t testing.TB, s *seq, budget int64) *domain.Program {
	t.Helper()
	p := domain.NewProgram("baba-2025")
	ev, err := p.Open(domain.ProgramTerms{
		Name: "Baba Farm 2025 direct purchase", BudgetFen: budget, PeriodStart: periodStart, PeriodEnd: periodEnd,
		Products: []string{"qinglong-chestnut", "xunwu-navel-orange"}, Counties: []string{"Xunwu", "Qinglong"},
	})
	if err != nil {
		t.Fatal(err)
	}
	p.Apply(s.next(), ev)
	return p
}

func terms() domain.OrderTerms {
	return domain.OrderTerms{
		ProgramID: "baba-2025", FarmerID: "F1", Product: "qinglong-chestnut",
		Prices:       []domain.GradePrice{{Grade: "B", PriceFenPerKg: 900}, {Grade: "A", PriceFenPerKg: 1200}},
		OrderedGrams: 100_000, ToleranceBP: 500, WindowStart: winStart, WindowEnd: winEnd, OriginWarehouse: "WH-QL-1",
	}
}

func placeOrder(t testing.TB, s *seq, prog *domain.Program, tm domain.OrderTerms) *domain.Order {
	t.Helper()
	o := domain.NewOrder(domain.OrderIDFor("po-" + tm.FarmerID))
	changes, _, err := domain.PlaceOrder(prog, o, tm, qinglong)
	if err != nil {
		t.Fatal(err)
	}
	s.fold(t, prog, o, changes)
	return o
}

func TestOpenProgramRefusesBadTerms(t *testing.T) {
	t.Parallel()
	good := domain.ProgramTerms{Name: "n", BudgetFen: 1, PeriodStart: periodStart, PeriodEnd: periodEnd,
		Products: []string{"p"}, Counties: []string{"c"}}
	for _, tc := range []struct {
		name  string
		edit  func(*domain.ProgramTerms)
		field string
	}{
		{"no name", func(p *domain.ProgramTerms) { p.Name = " " }, "name"},
		{"zero budget", func(p *domain.ProgramTerms) { p.BudgetFen = 0 }, "budget_fen"},
		{"negative budget", func(p *domain.ProgramTerms) { p.BudgetFen = -1 }, "budget_fen"},
		{"no start", func(p *domain.ProgramTerms) { p.PeriodStart = time.Time{} }, "period_start"},
		{"end before start", func(p *domain.ProgramTerms) { p.PeriodEnd = periodStart }, "period_end"},
		{"no products", func(p *domain.ProgramTerms) { p.Products = nil }, "products"},
		{"bad product", func(p *domain.ProgramTerms) { p.Products = []string{"a.b"} }, "products[0]"},
		{"product twice", func(p *domain.ProgramTerms) { p.Products = []string{"p", "p"} }, "products[1]"},
		{"no counties", func(p *domain.ProgramTerms) { p.Counties = nil }, "counties"},
		{"blank county", func(p *domain.ProgramTerms) { p.Counties = []string{"c", " "} }, "counties[1]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tm := good
			tc.edit(&tm)
			_, err := domain.NewProgram("P1").Open(tm)
			wantFailure(t, err, failure.KindInvalid, tc.field)
		})
	}
	s := &seq{}
	p := openProgram(t, s, 100)
	_, err := p.Open(good)
	wantFailure(t, err, failure.KindAlreadyExists, "program_id")
}

func TestPlaceOrderReservesMaximumValue(t *testing.T) {
	t.Parallel()
	s := &seq{}
	prog := openProgram(t, s, 1_000_000)
	o := placeOrder(t, s, prog, terms())
	// 100 kg + 5 % = 105,000 g at the highest price, 1,200 fen/kg.
	if got := o.Placed(); got.GetMaxGrams() != 105_000 || got.GetReservedFen() != 126_000 {
		t.Fatalf("max %d g, reserved %d fen; want 105000 g, 126000 fen", got.GetMaxGrams(), got.GetReservedFen())
	}
	if prog.ReservedFen() != 126_000 || prog.AvailableFen() != 874_000 || prog.Orders() != 1 {
		t.Fatalf("programme reserved %d, available %d, orders %d", prog.ReservedFen(), prog.AvailableFen(), prog.Orders())
	}
	if diff := cmp.Diff([]string{"A", "B"}, []string{o.Placed().GetPrices()[0].GetGrade(), o.Placed().GetPrices()[1].GetGrade()}); diff != "" {
		t.Errorf("price table not sorted by grade (-want +got):\n%s", diff)
	}
	if o.Placed().GetCounty() != "Qinglong" {
		t.Errorf("order county %q, want the farmer's", o.Placed().GetCounty())
	}
}

func TestPlaceOrderBudget(t *testing.T) {
	t.Parallel()
	s := &seq{}
	// Room for exactly one order of 126,000 fen, and 1 fen less than two.
	prog := openProgram(t, s, 2*126_000-1)
	placeOrder(t, s, prog, terms())
	tm := terms()
	tm.FarmerID = "F2"
	_, _, err := domain.PlaceOrder(prog, domain.NewOrder("O2"), tm, qinglong)
	wantFailure(t, err, failure.KindFailedPrecondition, "")
	if !strings.Contains(err.Error(), "over budget") {
		t.Errorf("err = %v, want it to say over budget", err)
	}
	// The last fen fits exactly.
	tm.Prices = []domain.GradePrice{{Grade: "A", PriceFenPerKg: 1}}
	tm.OrderedGrams, tm.ToleranceBP = (126_000-1)*1000, 0
	if _, _, err := domain.PlaceOrder(prog, domain.NewOrder("O3"), tm, qinglong); err != nil {
		t.Fatalf("order using exactly the rest of the budget: %v", err)
	}
}

func TestPlaceOrderRefusals(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		edit   func(*domain.OrderTerms)
		farmer domain.Farmer
		kind   failure.Kind
		field  string
	}{
		{"grade twice", func(o *domain.OrderTerms) { o.Prices[1].Grade = "B" }, qinglong, failure.KindInvalid, "prices[1].grade"},
		{"REJECTED in the table", func(o *domain.OrderTerms) { o.Prices[0].Grade = "rejected" }, qinglong, failure.KindInvalid, "prices[0].grade"},
		{"zero price", func(o *domain.OrderTerms) { o.Prices[0].PriceFenPerKg = 0 }, qinglong, failure.KindInvalid, "prices[0].price_fen_per_kg"},
		{"no prices", func(o *domain.OrderTerms) { o.Prices = nil }, qinglong, failure.KindInvalid, "prices"},
		{"zero grams", func(o *domain.OrderTerms) { o.OrderedGrams = 0 }, qinglong, failure.KindInvalid, "ordered_grams"},
		{"negative grams", func(o *domain.OrderTerms) { o.OrderedGrams = -1 }, qinglong, failure.KindInvalid, "ordered_grams"},
		{"tolerance above 100 %", func(o *domain.OrderTerms) { o.ToleranceBP = 10_001 }, qinglong, failure.KindInvalid, "tolerance_bp"},
		{"price overflow", func(o *domain.OrderTerms) { o.Prices[0].PriceFenPerKg = 1 << 62 }, qinglong, failure.KindInvalid, "prices"},
		{"tolerance overflow", func(o *domain.OrderTerms) { o.OrderedGrams = 1<<63 - 1 }, qinglong, failure.KindInvalid, "ordered_grams"},
		{"window reversed", func(o *domain.OrderTerms) { o.WindowEnd = winStart }, qinglong, failure.KindInvalid, "window_end"},
		{"window outside period", func(o *domain.OrderTerms) { o.WindowEnd = periodEnd.Add(time.Hour) }, qinglong, failure.KindInvalid, "window_start"},
		{"product not bought", func(o *domain.OrderTerms) { o.Product = "berry-tea" }, qinglong, failure.KindInvalid, "product"},
		{"county not served", func(*domain.OrderTerms) {}, domain.Farmer{ID: "F1", County: "Yongshun"}, failure.KindInvalid, "farmer_id"},
		{"no warehouse", func(o *domain.OrderTerms) { o.OriginWarehouse = "" }, qinglong, failure.KindInvalid, "origin_warehouse"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := &seq{}
			prog := openProgram(t, s, 1<<62)
			tm := terms()
			tc.edit(&tm)
			_, _, err := domain.PlaceOrder(prog, domain.NewOrder("O1"), tm, tc.farmer)
			wantFailure(t, err, tc.kind, tc.field)
		})
	}
	t.Run("unknown programme", func(t *testing.T) {
		t.Parallel()
		_, _, err := domain.PlaceOrder(domain.NewProgram("baba-2025"), domain.NewOrder("O1"), terms(), qinglong)
		wantFailure(t, err, failure.KindNotFound, "program_id")
	})
	t.Run("closed programme", func(t *testing.T) {
		t.Parallel()
		s := &seq{}
		prog := openProgram(t, s, 1<<40)
		ev, err := prog.Close("season over")
		if err != nil {
			t.Fatal(err)
		}
		prog.Apply(s.next(), ev)
		_, _, err = domain.PlaceOrder(prog, domain.NewOrder("O1"), terms(), qinglong)
		wantFailure(t, err, failure.KindFailedPrecondition, "")
		_, err = prog.Close("again")
		wantFailure(t, err, failure.KindFailedPrecondition, "")
	})
}

func record(t testing.TB, s *seq, o *domain.Order, id string, w domain.WeighIn) *procurementevents.DeliveryRecorded {
	t.Helper()
	ev, err := o.RecordDelivery(id, w)
	if err != nil {
		t.Fatalf("record %s: %v", id, err)
	}
	o.Apply(s.next(), ev)
	return ev
}

func TestDeliveryAmountsAreHalfToEven(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		grams, price, want int64
	}{
		{12_345, 680, 8_395}, // 8,394.6
		{1_500, 1, 2},        // 1.5 → 2
		{2_500, 1, 2},        // 2.5 → 2 (even)
		{3_500, 1, 4},        // 3.5 → 4
		{999, 1_200, 1_199},  // 1,198.8
	} {
		s := &seq{}
		prog := openProgram(t, s, 1<<50)
		tm := terms()
		tm.Prices = []domain.GradePrice{{Grade: "A", PriceFenPerKg: tc.price}}
		o := placeOrder(t, s, prog, tm)
		ev := record(t, s, o, "D1", domain.WeighIn{Grade: "A", NetGrams: tc.grams, WeighedAt: inWindow})
		if ev.GetAmountFen() != tc.want || ev.GetPriceFenPerKg() != tc.price {
			t.Errorf("%d g × %d fen/kg = %d fen, want %d", tc.grams, tc.price, ev.GetAmountFen(), tc.want)
		}
	}
}

func TestRecordDeliveryAgainstOrder(t *testing.T) {
	t.Parallel()
	s := &seq{}
	prog := openProgram(t, s, 1<<40)
	o := placeOrder(t, s, prog, terms())

	ev := record(t, s, o, "D1", domain.WeighIn{Grade: "B", NetGrams: 60_000, WeighedAt: winStart})
	want := &procurementevents.DeliveryRecorded{
		DeliveryId: "D1", FarmerId: "F1", Product: "qinglong-chestnut", Grade: "B", NetGrams: 60_000,
		PriceFenPerKg: 900, AmountFen: 54_000, WeighedAt: ev.GetWeighedAt(), OrderId: o.ID(),
		ProgramId: "baba-2025", Warehouse: "WH-QL-1", County: "Qinglong",
	}
	if !proto.Equal(want, ev) {
		t.Fatalf("recorded %v, want %v", ev, want)
	}
	// Rejected produce is recorded, pays nothing and does not count.
	rej := record(t, s, o, "D2", domain.WeighIn{Grade: domain.GradeRejected, NetGrams: 50_000, WeighedAt: inWindow})
	if rej.GetAmountFen() != 0 || o.DeliveredGrams() != 60_000 || o.RejectedGrams() != 50_000 {
		t.Fatalf("rejected: amount %d, delivered %d g, rejected %d g", rej.GetAmountFen(), o.DeliveredGrams(), o.RejectedGrams())
	}
	// 45 kg more reaches 105 kg, exactly the tolerance; one gram more does not fit.
	_, err := o.RecordDelivery("D3", domain.WeighIn{Grade: "A", NetGrams: 45_001, WeighedAt: inWindow})
	wantFailure(t, err, failure.KindFailedPrecondition, "")
	record(t, s, o, "D3", domain.WeighIn{Grade: "A", NetGrams: 45_000, WeighedAt: inWindow})
	if o.Status() != domain.OrderFulfilled || o.DeliveredFen() != 54_000+54_000 {
		t.Fatalf("status %s, value %d", o.Status(), o.DeliveredFen())
	}
	_, err = o.RecordDelivery("D4", domain.WeighIn{Grade: "A", NetGrams: 1, WeighedAt: inWindow})
	wantFailure(t, err, failure.KindFailedPrecondition, "")
}

func TestRecordDeliveryRefusals(t *testing.T) {
	t.Parallel()
	ok := domain.WeighIn{Grade: "A", NetGrams: 1000, WeighedAt: inWindow}
	for _, tc := range []struct {
		name  string
		edit  func(*domain.WeighIn)
		field string
	}{
		{"zero grams", func(w *domain.WeighIn) { w.NetGrams = 0 }, "net_grams"},
		{"negative grams", func(w *domain.WeighIn) { w.NetGrams = -1 }, "net_grams"},
		{"grade not in table", func(w *domain.WeighIn) { w.Grade = "C" }, "grade"},
		{"no grade", func(w *domain.WeighIn) { w.Grade = "" }, "grade"},
		{"before the window", func(w *domain.WeighIn) { w.WeighedAt = winStart.Add(-time.Nanosecond) }, "weighed_at"},
		{"at the window's end", func(w *domain.WeighIn) { w.WeighedAt = winEnd }, "weighed_at"},
		{"another farmer", func(w *domain.WeighIn) { w.FarmerID = "F9" }, "farmer_id"},
		{"another product", func(w *domain.WeighIn) { w.Product = "xunwu-navel-orange" }, "product"},
		{"price given", func(w *domain.WeighIn) { w.PriceFenPerKg = 1200 }, "price_fen_per_kg"},
		{"bad warehouse", func(w *domain.WeighIn) { w.Warehouse = "WH 1" }, "warehouse"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := &seq{}
			o := placeOrder(t, s, openProgram(t, s, 1<<40), terms())
			w := ok
			tc.edit(&w)
			_, err := o.RecordDelivery("D1", w)
			wantFailure(t, err, failure.KindInvalid, tc.field)
		})
	}
	t.Run("unknown order", func(t *testing.T) {
		t.Parallel()
		_, err := domain.NewOrder("O1").RecordDelivery("D1", ok)
		wantFailure(t, err, failure.KindNotFound, "order_id")
	})
}

// TestOrderNeverCostsMoreThanItReserved: each delivery rounds once, so at
// the very end of an order delivered at its highest price the rounded
// amounts could add up to more than the reservation; the order refuses that.
func TestOrderNeverCostsMoreThanItReserved(t *testing.T) {
	t.Parallel()
	s := &seq{}
	prog := openProgram(t, s, 1<<40)
	tm := terms()
	tm.Prices, tm.OrderedGrams, tm.ToleranceBP = []domain.GradePrice{{Grade: "A", PriceFenPerKg: 1}}, 3_000, 0
	o := placeOrder(t, s, prog, tm)                                                         // reserves 3 fen
	record(t, s, o, "D1", domain.WeighIn{Grade: "A", NetGrams: 1_500, WeighedAt: inWindow}) // 1.5 → 2 fen
	_, err := o.RecordDelivery("D2", domain.WeighIn{Grade: "A", NetGrams: 1_500, WeighedAt: inWindow})
	wantFailure(t, err, failure.KindFailedPrecondition, "")
	if !strings.Contains(err.Error(), "reservation") {
		t.Fatalf("err = %v, want it to name the reservation", err)
	}
}

func TestCorrectionChain(t *testing.T) {
	t.Parallel()
	s := &seq{}
	prog := openProgram(t, s, 1<<40)
	o := placeOrder(t, s, prog, terms())
	record(t, s, o, "D1", domain.WeighIn{Grade: "A", NetGrams: 10_000, WeighedAt: inWindow}) // 12,000 fen

	c1, err := o.CorrectDelivery("D1", domain.Correction{NetGrams: 9_500, Grade: "A", Reason: "tare not deducted"})
	if err != nil {
		t.Fatal(err)
	}
	o.Apply(s.next(), c1)
	c2, err := o.CorrectDelivery("D1", domain.Correction{NetGrams: 9_500, Grade: "B", Reason: "regraded"})
	if err != nil {
		t.Fatal(err)
	}
	o.Apply(s.next(), c2)
	got := []int64{int64(c1.GetCorrectionNumber()), c1.GetReversedAmountFen(), c1.GetAmountFen(),
		int64(c2.GetCorrectionNumber()), c2.GetReversedAmountFen(), c2.GetAmountFen()}
	if diff := cmp.Diff([]int64{1, 12_000, 11_400, 2, 11_400, 8_550}, got); diff != "" {
		t.Fatalf("corrections (number, reversed, amount) (-want +got):\n%s", diff)
	}
	// Recorded amount − reversals + replacements = the last correction.
	if o.DeliveredFen() != 8_550 || o.DeliveredGrams() != 9_500 {
		t.Fatalf("order value %d fen, %d g; want 8550 fen, 9500 g", o.DeliveredFen(), o.DeliveredGrams())
	}
	v, _ := o.Delivery("D1")
	if v.Corrections != 2 || v.Grade != "B" || v.AmountFen != 8_550 || v.PriceFenPerKg != 900 {
		t.Fatalf("delivery view %+v", v)
	}
	if ev, ok := o.CorrectionAt("D1", v.Version); !ok || !proto.Equal(ev, c2) {
		t.Fatalf("CorrectionAt(%d) = %v, want the second correction", v.Version, ev)
	}

	_, err = o.CorrectDelivery("D1", domain.Correction{NetGrams: 9_500, Grade: "B", Reason: "again"})
	wantFailure(t, err, failure.KindInvalid, "net_grams")
	_, err = o.CorrectDelivery("D1", domain.Correction{NetGrams: 106_000, Grade: "B", Reason: "x"})
	wantFailure(t, err, failure.KindFailedPrecondition, "")
	_, err = o.CorrectDelivery("D1", domain.Correction{NetGrams: 1, Grade: "Z", Reason: "x"})
	wantFailure(t, err, failure.KindInvalid, "grade")
	_, err = o.CorrectDelivery("D1", domain.Correction{NetGrams: 1, Grade: "A"})
	wantFailure(t, err, failure.KindInvalid, "reason")
	_, err = o.CorrectDelivery("D9", domain.Correction{NetGrams: 1, Grade: "A", Reason: "x"})
	wantFailure(t, err, failure.KindNotFound, "delivery_id")
}

func TestCancelReleasesTheUnusedPart(t *testing.T) {
	t.Parallel()
	s := &seq{}
	prog := openProgram(t, s, 1_000_000)
	o := placeOrder(t, s, prog, terms())                                                     // reserves 126,000
	record(t, s, o, "D1", domain.WeighIn{Grade: "A", NetGrams: 10_000, WeighedAt: inWindow}) // 12,000

	changes, cancelled, err := o.Cancel("farmer sold elsewhere")
	if err != nil {
		t.Fatal(err)
	}
	if cancelled.GetReleasedFen() != 114_000 {
		t.Fatalf("released %d fen, want 114000", cancelled.GetReleasedFen())
	}
	if !strings.HasPrefix(changes[0].Subject, "procurement.order.") {
		t.Fatalf("first change on %s; the order must carry the expectation", changes[0].Subject)
	}
	s.fold(t, prog, o, changes)
	if prog.ReservedFen() != 12_000 || o.ReservedFen() != 12_000 || o.Status() != domain.OrderCancelled {
		t.Fatalf("programme reserved %d, order reserved %d, status %s", prog.ReservedFen(), o.ReservedFen(), o.Status())
	}
	_, _, err = o.Cancel("again")
	wantFailure(t, err, failure.KindFailedPrecondition, "")
	_, err = o.RecordDelivery("D2", domain.WeighIn{Grade: "A", NetGrams: 1, WeighedAt: inWindow})
	wantFailure(t, err, failure.KindFailedPrecondition, "")
	// After the cancellation the order holds only what was delivered: a
	// correction may lower the value, not raise it.
	_, err = o.CorrectDelivery("D1", domain.Correction{NetGrams: 10_001, Grade: "A", Reason: "x"})
	wantFailure(t, err, failure.KindFailedPrecondition, "")
	if _, err := o.CorrectDelivery("D1", domain.Correction{NetGrams: 9_000, Grade: "A", Reason: "x"}); err != nil {
		t.Fatalf("lowering correction after cancel: %v", err)
	}
}

func TestAdHocDelivery(t *testing.T) {
	t.Parallel()
	d := domain.NewDelivery(domain.DeliveryIDFor("r1"))
	w := domain.WeighIn{FarmerID: "F1", Product: "berry-tea", Grade: domain.GradeRejected, NetGrams: 1000, PriceFenPerKg: 500, WeighedAt: inWindow}
	ev, err := d.Record(w, qinglong, true)
	if err != nil || ev.GetAmountFen() != 0 || ev.GetCounty() != "Qinglong" {
		t.Fatalf("rejected ad-hoc: %v, %v", ev, err)
	}
	d.Apply(1, ev)
	price := int64(700)
	c, err := d.Correct(domain.Correction{NetGrams: 1000, Grade: "A", PriceFenPerKg: &price, Reason: "misgraded"})
	if err != nil {
		t.Fatal(err)
	}
	if c.GetAmountFen() != 700 || c.GetReversedAmountFen() != 0 || c.GetCorrectionNumber() != 1 {
		t.Fatalf("correction %v", c)
	}
	if _, err := domain.NewDelivery("D").Record(w, domain.Farmer{}, false); err == nil {
		t.Fatal("unknown farmer accepted")
	} else {
		wantFailure(t, err, failure.KindNotFound, "farmer_id")
	}
}

func TestDeliveryIDsLeadToTheirAggregate(t *testing.T) {
	t.Parallel()
	order := domain.OrderIDFor("po-1")
	id := domain.OrderDeliveryID(order, "wh-1")
	if got, ok := domain.OrderOfDelivery(id); !ok || got != order {
		t.Fatalf("OrderOfDelivery(%s) = %s, %v; want %s", id, got, ok, order)
	}
	if _, ok := domain.OrderOfDelivery(domain.DeliveryIDFor("wh-1")); ok {
		t.Fatal("an ad-hoc delivery id was taken for an order's")
	}
	// The issue-2 derivation must not change: recorded ids stay valid.
	if got := domain.DeliveryIDFor("wh-7/2026-11-28/001"); len(got) != 21 || got[0] != 'D' {
		t.Fatalf("DeliveryIDFor = %s", got)
	}
}
