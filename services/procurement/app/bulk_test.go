package app_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	ledgerevents "github.com/furrow/furrow/proto/furrow/ledger/events/v1"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/natstest"

	"github.com/furrow/furrow/services/procurement/adapters"
	"github.com/furrow/furrow/services/procurement/app"
	"github.com/furrow/furrow/services/procurement/domain"
)

// bulkHarness is procurement's application service over an embedded
// JetStream, with farmers F1..F4 registered, programme P1 open and order
// O1 (farmer F1) and O2 (farmer F2) placed, each for 100 kg of grade A
// chestnuts at 1,000 fen/kg with no tolerance.
type bulkHarness struct {
	app    *app.Procurement
	store  *eventstore.Store // the one procurement appends through
	events *adapters.EventStore
	js     func() *eventstore.Store
	o1, o2 string
}

var (
	bulkStart = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	bulkEnd   = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	bulkDay   = time.Date(2025, 11, 15, 8, 0, 0, 0, time.UTC)
)

func newBulkHarness(t *testing.T, wrap func(app.Events) app.Events) *bulkHarness {
	t.Helper()
	js := natstest.Embedded(t).JetStream(t)
	ctx := context.Background()
	if err := eventstore.EnsureStreams(ctx, js,
		eventstore.StreamSpec{Name: domain.Stream, Subjects: []string{domain.Subjects}},
		eventstore.StreamSpec{Name: adapters.LedgerStream, Subjects: []string{"ledger.>"}},
	); err != nil {
		t.Fatal(err)
	}
	ledger := eventstore.New(js)
	for i := 1; i <= 4; i++ {
		id := fmt.Sprintf("F%d", i)
		reg, err := eventstore.NewEvent("ledger.farmer."+id+".farmer_registered",
			&ledgerevents.FarmerRegistered{FarmerId: id, Name: "n", County: "Qinglong"}, eventstore.Metadata{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ledger.Append(ctx, eventstore.AppendRequest{Stream: adapters.LedgerStream, Aggregate: "ledger.farmer." + id + ".>",
			Expect: eventstore.ExpectNew(), Events: []eventstore.Event{reg}}); err != nil {
			t.Fatal(err)
		}
	}
	h := &bulkHarness{store: eventstore.New(js), js: func() *eventstore.Store { return eventstore.New(js) }}
	h.events = adapters.NewEventStore(h.store)
	var events app.Events = h.events
	if wrap != nil {
		events = wrap(events)
	}
	h.app = app.New(events, adapters.NewLedgerFarmers(ledger), nil, nil, slog.New(slog.DiscardHandler))
	if _, err := h.app.OpenProgram(ctx, app.OpenProgram{RequestID: "open", Fingerprint: "open", ProgramID: "P1",
		Terms: domain.ProgramTerms{Name: "Qinglong chestnuts", BudgetFen: 10_000_000, PeriodStart: bulkStart, PeriodEnd: bulkEnd,
			Products: []string{"chestnut"}, Counties: []string{"Qinglong"}}}); err != nil {
		t.Fatal(err)
	}
	for i, farmer := range []string{"F1", "F2"} {
		out, err := h.app.PlaceOrder(ctx, app.PlaceOrder{RequestID: fmt.Sprint("po-", i), Fingerprint: "po", Terms: domain.OrderTerms{
			ProgramID: "P1", FarmerID: farmer, Product: "chestnut",
			Prices:       []domain.GradePrice{{Grade: "A", PriceFenPerKg: 1_000}},
			OrderedGrams: 100_000, WindowStart: bulkStart, WindowEnd: bulkEnd, OriginWarehouse: "WH-1",
		}})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			h.o1 = out.Order.GetOrderId()
		} else {
			h.o2 = out.Order.GetOrderId()
		}
	}
	return h
}

func onOrder(requestID, orderID string, grams int64) app.RecordDelivery {
	return app.RecordDelivery{RequestID: requestID, Fingerprint: "fp-" + requestID, OrderID: orderID,
		WeighIn: domain.WeighIn{Grade: "A", NetGrams: grams, WeighedAt: bulkDay}}
}

func adHoc(requestID, farmer string, grams int64) app.RecordDelivery {
	return app.RecordDelivery{RequestID: requestID, Fingerprint: "fp-" + requestID,
		WeighIn: domain.WeighIn{FarmerID: farmer, Product: "chestnut", Grade: "A", NetGrams: grams, PriceFenPerKg: 1_000, WeighedAt: bulkDay}}
}

// outcome is a line's result as a comparable string: the amount, or the
// error's kind.
func outcome(r app.LineResult) string {
	if r.Err != nil {
		return fmt.Sprintf("error %v", failure.KindOf(r.Err))
	}
	return fmt.Sprintf("%d fen", r.Recorded.Delivery.GetAmountFen())
}

// TestRecordDeliveriesAppendsInBulk: a warehouse's day of 200 ad-hoc
// weigh-ins and three weigh-ins on one order is written in as many
// atomic batches as the order has lines to append (the order's lines go
// in successive rounds, each decided on what the one before left), not
// one publish per line; each line keeps its own result.
func TestRecordDeliveriesAppendsInBulk(t *testing.T) {
	t.Parallel()
	h := newBulkHarness(t, nil)
	ctx := context.Background()
	var lines []app.RecordDelivery
	var want []string
	for i := range 200 {
		lines = append(lines, adHoc(fmt.Sprint("d-", i), fmt.Sprintf("F%d", 1+i%4), int64(1_000+i)))
		want = append(want, fmt.Sprintf("%d fen", 1_000+i))
		if i == 10 {
			lines = append(lines, onOrder("o-1", h.o1, 60_000))
			want = append(want, "60000 fen")
		}
		if i == 20 {
			lines = append(lines, onOrder("o-2", h.o1, 30_000), onOrder("o-3", h.o1, 20_000)) // 110 kg: too much
			want = append(want, "30000 fen", fmt.Sprintf("error %v", failure.KindFailedPrecondition))
		}
	}
	lines = append(lines, adHoc("d-5", "F2", 1_005)) // a line sent twice in one day
	want = append(want, "1005 fen")
	lines = append(lines, adHoc("d-bad", "F-nobody", 1_000))
	want = append(want, fmt.Sprintf("error %v", failure.KindNotFound))

	before := h.store.Stats()
	results, err := h.app.RecordDeliveries(ctx, lines)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range results {
		got = append(got, outcome(r))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("line results (-want +got):\n%s", diff)
	}
	if first, again := results[5].Recorded.Result, results[len(results)-2].Recorded.Result; !again.Duplicate || again.Last != first.Last {
		t.Fatalf("d-5 sent twice: first %+v, again %+v", first, again)
	}
	st := h.store.Stats()
	appends, publishes := st.Appends-before.Appends, st.Publishes-before.Publishes
	t.Logf("%d lines: %d appends in %d publishes (%+v)", len(lines), appends, publishes, st)
	if appends != 202 || publishes > 2 {
		t.Fatalf("%d lines made %d appends in %d publishes; want 202 appends in 2 (one per round)", len(lines), appends, publishes)
	}
	o1, _, err := h.events.LoadOrder(ctx, h.o1)
	if err != nil {
		t.Fatal(err)
	}
	if o1.DeliveredGrams() != 90_000 || o1.Deliveries() != 2 {
		t.Fatalf("O1 holds %d g in %d deliveries, want 90000 g in 2", o1.DeliveredGrams(), o1.Deliveries())
	}
	// Resending the day writes nothing and answers as before.
	again, err := h.app.RecordDeliveries(ctx, lines)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range again {
		if outcome(r) != got[i] || (r.Err == nil && r.Recorded.Result.Last != results[i].Recorded.Result.Last) {
			t.Fatalf("line %d resent: %s at %d, first %s at %d", i, outcome(r), r.Recorded.Result.Last, got[i], results[i].Recorded.Result.Last)
		}
	}
	if st := h.store.Stats(); st.Publishes != before.Publishes+publishes {
		t.Fatalf("resending the day published %d times", st.Publishes-before.Publishes-publishes)
	}
}

// racingEvents records a delivery on an order from another replica just
// before the first bulk append, so the order the bulk call loaded is stale.
type racingEvents struct {
	app.Events
	once  sync.Once
	other func() *app.Procurement
	order *string
	t     *testing.T
}

func (r *racingEvents) AppendMany(ctx context.Context, appends []app.Append) []eventstore.AppendOutcome {
	r.once.Do(func() {
		if _, err := r.other().RecordDelivery(ctx, onOrder("behind-the-back", *r.order, 50_000)); err != nil {
			r.t.Errorf("racing delivery: %v", err)
		}
	})
	return r.Events.AppendMany(ctx, appends)
}

// TestRecordDeliveriesLostRace: when an order changes between the bulk
// call's load and its append (another replica recorded a delivery on it),
// only that order's lines are decided again, line by line, on the order as
// it now stands; the other lines of the batch are written.
func TestRecordDeliveriesLostRace(t *testing.T) {
	t.Parallel()
	race := &racingEvents{t: t}
	h := newBulkHarness(t, func(e app.Events) app.Events { race.Events = e; return race })
	race.order = &h.o2
	race.other = func() *app.Procurement {
		ledger := h.js()
		return app.New(adapters.NewEventStore(h.js()), adapters.NewLedgerFarmers(ledger), nil, nil, slog.New(slog.DiscardHandler))
	}
	ctx := context.Background()
	var lines []app.RecordDelivery
	for i := range 20 {
		lines = append(lines, adHoc(fmt.Sprint("d-", i), "F3", 2_000))
	}
	// 50 kg arrive behind the back: of these 60 kg only 50 fit.
	lines = append(lines, onOrder("o2-a", h.o2, 30_000), onOrder("o2-b", h.o2, 30_000), onOrder("o2-c", h.o2, 20_000))
	results, err := h.app.RecordDeliveries(ctx, lines)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range results[20:] {
		got = append(got, outcome(r))
	}
	want := []string{"30000 fen", fmt.Sprintf("error %v", failure.KindFailedPrecondition), "20000 fen"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("O2's lines (-want +got):\n%s", diff)
	}
	for i, r := range results[:20] {
		if r.Err != nil {
			t.Fatalf("ad-hoc line %d: %v", i, r.Err)
		}
	}
	o2, _, err := h.events.LoadOrder(ctx, h.o2)
	if err != nil {
		t.Fatal(err)
	}
	if o2.DeliveredGrams() != 100_000 || o2.Deliveries() != 3 {
		t.Fatalf("O2 holds %d g in %d deliveries, want 100000 g in 3", o2.DeliveredGrams(), o2.Deliveries())
	}
}
