package app_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	brandevents "github.com/furrow/furrow/proto/furrow/brand/events/v1"
	ledgerevents "github.com/furrow/furrow/proto/furrow/ledger/events/v1"
	procurementevents "github.com/furrow/furrow/proto/furrow/procurement/events/v1"

	"github.com/furrow/furrow/pkg/consistency"
	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/natstest"
	"github.com/furrow/furrow/pkg/projection"

	"github.com/furrow/furrow/services/brand-incubation/adapters"
	"github.com/furrow/furrow/services/brand-incubation/app"
	"github.com/furrow/furrow/services/brand-incubation/domain"
)

// harness is the application service over a real in-process JetStream
// and SQLite, with its projections running (no reactions: tests call
// them).
type harness struct {
	js     jetstream.JetStream
	store  *eventstore.Store
	events *adapters.Events
	app    *app.Incubator
	// now is the application's clock: 2026-11-28 12:00 CST.
	now time.Time
}

func newHarness(t testing.TB, wrap func(app.Events) app.Events) *harness {
	t.Helper()
	dir := t.TempDir()
	js := natstest.Embedded(t).JetStream(t)
	ctx := testCtx(t)
	if err := eventstore.EnsureStreams(ctx, js,
		eventstore.StreamSpec{Name: domain.Stream, Subjects: []string{domain.Subjects}},
		eventstore.StreamSpec{Name: "LEDGER", Subjects: []string{"ledger.>"}},
		eventstore.StreamSpec{Name: "PROCUREMENT", Subjects: []string{"procurement.>"}},
	); err != nil {
		t.Fatal(err)
	}
	db, err := projection.OpenSQLite(filepath.Join(dir, "projections.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	runners := map[string]*projection.Runner{}
	for _, p := range []projection.Projection{adapters.CatalogProjection{}, adapters.PremiumsProjection{}, adapters.DeliveriesProjection{}, adapters.LotsProjection{}, adapters.LotCorrectionsProjection{}} {
		r, err := projection.NewRunner(db, js, p, projection.Options{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		runCtx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = r.Run(runCtx) }()
		t.Cleanup(func() { cancel(); <-done })
		runners[p.Name()] = r
	}
	store := eventstore.New(js)
	h := &harness{js: js, store: store, events: adapters.NewEvents(store), now: time.Date(2026, 11, 28, 4, 0, 0, 0, time.UTC)}
	var events app.Events = h.events
	if wrap != nil {
		events = wrap(events)
	}
	h.app = app.New(app.Deps{
		Events:     events,
		Farmers:    adapters.NewLedgerFarmers(store),
		Deliveries: adapters.NewDeliveryDirectory(db, store, runners["brand_lots"], runners["brand_lot_corrections"]),
		Catalog:    adapters.NewCatalogReader(db),
		Premiums:   adapters.NewPremiumsReader(db),
		CatalogAt:  consistency.NewWaiter(js, runners["brand_catalog"], nil),
		PremiumsAt: consistency.NewWaiter(js, runners["brand_premiums"], nil),
		Log:        slog.New(slog.DiscardHandler),
		Now:        func() time.Time { return h.now },
	})
	return h
}

func testCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// registerFarmer appends the ledger's FarmerRegistered, as the ledger would.
func (h *harness) registerFarmer(t testing.TB, id string) {
	t.Helper()
	ev, err := eventstore.NewEvent("ledger.farmer."+id+".farmer_registered", &ledgerevents.FarmerRegistered{FarmerId: id, Name: "n", County: "Xunwu"}, eventstore.Metadata{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.store.Append(testCtx(t), eventstore.AppendRequest{Stream: "LEDGER", Aggregate: "ledger.farmer." + id + ".>", Expect: eventstore.ExpectNew(), Events: []eventstore.Event{ev}}); err != nil {
		t.Fatal(err)
	}
}

// setUp registers F1 with the ledger, the brand xunwu, the channel hema,
// enrols F1 from 2026-10-01 and sets rule "season": 100 fen/kg from
// 2026-10-01 on.
func (h *harness) setUp(t testing.TB) {
	t.Helper()
	ctx := testCtx(t)
	h.registerFarmer(t, "F1")
	for _, f := range []func() error{
		func() error {
			_, err := h.app.RegisterBrand(ctx, app.RegisterBrand{RequestID: "b", Fingerprint: "b", Brand: &brandevents.BrandRegistered{
				BrandId: "xunwu", Kind: domain.KindRegionalProduct, Name: "Xunwu navel orange", County: "Xunwu", RegisteredOn: "2026-10-01"}})
			return err
		},
		func() error {
			_, err := h.app.RegisterChannel(ctx, app.RegisterChannel{RequestID: "c", Fingerprint: "c", ChannelID: "hema", Name: "Hema"})
			return err
		},
		func() error {
			_, err := h.app.EnrolFarmer(ctx, app.EnrolFarmer{RequestID: "e", Fingerprint: "e", BrandID: "xunwu", FarmerID: "F1", EnrolledFrom: "2026-10-01"})
			return err
		},
		func() error {
			_, err := h.app.SetPremiumRule(ctx, app.SetPremiumRule{RequestID: "r", Fingerprint: "r", BrandID: "xunwu", Channel: "hema",
				Rule: domain.NewRule{RuleID: "season", FenPerKg: 100, EffectiveFrom: "2026-10-01"}})
			return err
		},
	} {
		if err := f(); err != nil {
			t.Fatal(err)
		}
	}
}

// reviseBehindTheBack appends a revision of "season" to fenPerKg straight
// to the stream, as a ReviseRule that crashed right after its append
// would leave it: nothing re-rated yet.
func reviseBehindTheBack(t testing.TB, events app.Events, fenPerKg int64) (eventstore.Recorded, *brandevents.PremiumRuleRevised) {
	t.Helper()
	ctx := testCtx(t)
	rs := domain.NewRuleSet("xunwu", "hema")
	if _, err := events.Load(ctx, rs); err != nil {
		t.Fatal(err)
	}
	ev, changed, err := rs.Revise(domain.Revision{RuleID: "season", FenPerKg: fenPerKg, Reason: "behind the back"}, false)
	if err != nil || !changed {
		t.Fatalf("revise: %v %v", changed, err)
	}
	res, err := events.Append(ctx, rs, "", "", eventstore.Metadata{}, domain.Change{Kind: domain.KindPremiumRuleRevised, Event: ev})
	if err != nil {
		t.Fatal(err)
	}
	return eventstore.Recorded{Stream: domain.Stream, Sequence: res.Last, ID: res.EventIDs[0], Type: string(ev.ProtoReflect().Descriptor().FullName())}, ev
}

func report(id string, lines ...domain.SaleLine) app.ReportSales {
	return app.ReportSales{Fingerprint: id, Report: domain.SalesReport{ReportID: id, Revision: 1, Channel: "hema", Lines: lines}}
}

func sale(line string, grams int64) domain.SaleLine {
	return domain.SaleLine{LineID: line, BrandID: "xunwu", FarmerID: "F1", Grams: grams, SoldAt: time.Date(2026, 11, 20, 2, 0, 0, 0, time.UTC)}
}

func rateOf(t testing.TB, h *harness, reportID string) (int64, int64) {
	t.Helper()
	rep, err := h.app.SalesReport(testCtx(t), reportID)
	if err != nil {
		t.Fatal(err)
	}
	s := rep.Sales()[0]
	return s.Rate.FenPerKg, s.PremiumFen
}

// racingRevision appends a revision to 130 fen/kg the first time a report
// is appended, just before it: the report was rated at 100 but lands after
// the revision, the race the post-append check and RerateOnSalesReported
// exist for.
type racingRevision struct {
	app.Events
	fired atomic.Bool
	t     testing.TB
}

func (r *racingRevision) Append(ctx context.Context, agg domain.Aggregate, key, fp string, md eventstore.Metadata, changes ...domain.Change) (eventstore.AppendResult, error) {
	if _, ok := agg.(*domain.Report); ok && r.fired.CompareAndSwap(false, true) {
		reviseBehindTheBack(r.t, r.Events, 130)
	}
	return r.Events.Append(ctx, agg, key, fp, md, changes...)
}

func TestReportRatedBeforeARacingRevisionIsReRated(t *testing.T) {
	t.Parallel()
	var race *racingRevision
	h := newHarness(t, func(e app.Events) app.Events { race = &racingRevision{Events: e, t: t}; return race })
	h.setUp(t)
	out, err := h.app.ReportSales(testCtx(t), report("r1", sale("L1", 1_000)))
	if err != nil {
		t.Fatal(err)
	}
	if !race.fired.Load() {
		t.Fatal("the revision did not race the report")
	}
	if s := out.Report.Sales()[0]; s.Rate.FenPerKg != 130 || s.PremiumFen != 130 {
		t.Fatalf("report after the race: %+v, want 130 fen/kg", s)
	}
	if rate, fen := rateOf(t, h, "r1"); rate != 130 || fen != 130 {
		t.Fatalf("stored report at %d fen/kg, %d fen", rate, fen)
	}
}

func TestRerateOnSalesReportedCatchesUpWithARevision(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.setUp(t)
	ctx := testCtx(t)
	out, err := h.app.ReportSales(ctx, report("r1", sale("L1", 2_000)))
	if err != nil {
		t.Fatal(err)
	}
	// The report's header as the reaction receives it.
	evs, err := h.store.Load(ctx, domain.Stream, domain.ReportAggregate("r1"), 0)
	if err != nil {
		t.Fatal(err)
	}
	head, err := eventstore.Decode(evs[0])
	if err != nil {
		t.Fatal(err)
	}
	// Nothing changed since: nothing to do.
	if err := h.app.RerateOnSalesReported(ctx, evs[0], head.(*brandevents.SalesReported)); err != nil {
		t.Fatal(err)
	}
	if v, _ := h.events.Version(ctx, domain.ReportAggregate("r1")); v != out.Result.Last {
		t.Fatalf("an up-to-date report was re-rated: version %d, want %d", v, out.Result.Last)
	}
	reviseBehindTheBack(t, h.events, 150)
	for range 2 { // twice: the second time finds nothing left to do
		if err := h.app.RerateOnSalesReported(ctx, evs[0], head.(*brandevents.SalesReported)); err != nil {
			t.Fatal(err)
		}
	}
	if rate, fen := rateOf(t, h, "r1"); rate != 150 || fen != 300 {
		t.Fatalf("report at %d fen/kg, %d fen; want 150 and 300", rate, fen)
	}
	all, err := h.store.Load(ctx, domain.Stream, domain.ReportAggregate("r1"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 3 { // sales_reported, premium_earned, one premium_adjusted
		t.Fatalf("report has %d events, want 3", len(all))
	}
}

// TestRerateOnPremiumRuleRevisedFinishesARevision: a revision recorded by
// a ReviseRule that never got to re-rate is finished by the reaction,
// exactly once however often it runs.
func TestRerateOnPremiumRuleRevisedFinishesARevision(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.setUp(t)
	ctx := testCtx(t)
	for _, id := range []string{"r1", "r2", "r3"} {
		if _, err := h.app.ReportSales(ctx, report(id, sale("L1", 1_500), sale("L2", 500))); err != nil {
			t.Fatal(err)
		}
	}
	rec, ev := reviseBehindTheBack(t, h.events, 200)
	for range 3 {
		if err := h.app.RerateOnPremiumRuleRevised(ctx, rec, ev); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"r1", "r2", "r3"} {
		rep, err := h.app.SalesReport(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if rep.PremiumFen() != 400 {
			t.Errorf("report %s: %d fen, want 2 kg × 200 fen/kg", id, rep.PremiumFen())
		}
		evs, err := h.store.Load(ctx, domain.Stream, domain.ReportAggregate(id), 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 5 { // header, 2 earned, 2 adjusted
			t.Errorf("report %s has %d events, want 5", id, len(evs))
		}
	}
}

// TestSaleLineMayNameADelivery: the farmer comes from procurement's
// DeliveryRecorded, whatever aggregate procurement keeps it in.
func TestSaleLineMayNameADelivery(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.setUp(t)
	ctx := testCtx(t)
	ev, err := eventstore.NewEvent("procurement.order.O1.delivery_recorded", &procurementevents.DeliveryRecorded{
		DeliveryId: "O1-D7", FarmerId: "F1", Product: "navel-orange", NetGrams: 50_000, WeighedAt: timestamppb.New(h.now.Add(-240 * time.Hour)),
	}, eventstore.Metadata{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.store.Append(ctx, eventstore.AppendRequest{Stream: "PROCUREMENT", Aggregate: "procurement.order.O1.>", Expect: eventstore.ExpectAny, Events: []eventstore.Event{ev}}); err != nil {
		t.Fatal(err)
	}
	line := sale("L1", 10_000)
	line.FarmerID, line.DeliveryID = "", "O1-D7"
	out, err := h.app.ReportSales(ctx, report("r1", line))
	if err != nil {
		t.Fatal(err)
	}
	if s := out.Report.Sales()[0]; s.FarmerID != "F1" || s.DeliveryID != "O1-D7" || s.PremiumFen != 1_000 {
		t.Fatalf("delivery line: %+v", s)
	}
}

// TestPremiumReadModelFollowsRestatements: a restatement that moves a sale
// to another month moves its grams and premium with it; a withdrawn line
// leaves the months; the dashboard and the per-farmer rows agree.
func TestPremiumReadModelFollowsRestatements(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.setUp(t)
	ctx := testCtx(t)
	oct, nov := time.Date(2026, 10, 20, 2, 0, 0, 0, time.UTC), time.Date(2026, 11, 20, 2, 0, 0, 0, time.UTC)
	first := report("r1",
		domain.SaleLine{LineID: "moves", BrandID: "xunwu", FarmerID: "F1", Grams: 3_000, SoldAt: oct},
		domain.SaleLine{LineID: "goes", BrandID: "xunwu", FarmerID: "F1", Grams: 1_000, SoldAt: oct},
		domain.SaleLine{LineID: "stays", BrandID: "xunwu", FarmerID: "F1", Grams: 2_000, SoldAt: nov})
	if _, err := h.app.ReportSales(ctx, first); err != nil {
		t.Fatal(err)
	}
	restated := report("r1",
		domain.SaleLine{LineID: "moves", BrandID: "xunwu", FarmerID: "F1", Grams: 3_000, SoldAt: nov},
		domain.SaleLine{LineID: "stays", BrandID: "xunwu", FarmerID: "F1", Grams: 2_000, SoldAt: nov})
	restated.Report.Revision, restated.Fingerprint = 2, "r1#2"
	out, err := h.app.ReportSales(ctx, restated)
	if err != nil {
		t.Fatal(err)
	}
	if out.ChangedLines != 2 {
		t.Fatalf("restatement changed %d lines, want 2", out.ChangedLines)
	}
	pos := out.Result.Position()
	page, err := h.app.FarmerPremiums(ctx, app.PremiumFilter{FarmerID: "F1"}, 0, "", &pos)
	if err != nil {
		t.Fatal(err)
	}
	want := []app.FarmerPremiumRow{{PremiumKey: app.PremiumKey{FarmerID: "F1", BrandID: "xunwu", Channel: "hema", Month: "2026-11"},
		Sales: 2, GramsSold: 5_000, GramsEarning: 5_000, PremiumFen: 500}}
	if diff := cmp.Diff(want, page.Items); diff != "" {
		t.Fatalf("F1's months (-want +got):\n%s", diff)
	}
	dash, err := h.app.BrandDashboard(ctx, "xunwu", "2026-10", "2026-11", &pos)
	if err != nil {
		t.Fatal(err)
	}
	if len(dash.Months) != 2 || dash.Months[0].GramsSold != 0 || dash.Months[1].GramsSold != 5_000 ||
		dash.Months[1].PremiumFen != 500 || dash.Months[0].Enrolled != 1 || dash.EnrolledNow != 1 {
		t.Fatalf("dashboard: %+v", dash)
	}
}
