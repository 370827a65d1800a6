package adapters_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	brandevents "github.com/furrow/furrow/proto/furrow/brand/events/v1"
	procurementevents "github.com/furrow/furrow/proto/furrow/procurement/events/v1"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/projection"
	"github.com/furrow/furrow/pkg/projection/projectiontest"

	"github.com/furrow/furrow/services/brand-incubation/adapters"
	"github.com/furrow/furrow/services/brand-incubation/app"
	"github.com/furrow/furrow/services/brand-incubation/domain"
)

// forEachStore runs test on SQLite and on PostgreSQL: the read models'
// SQL must mean the same on both.
func forEachStore(t *testing.T, test func(t *testing.T, db *projection.DB)) {
	projectiontest.ForEachStore(t, test)
}

// feed applies events to projections the way the runner does, one
// transaction per event, at sequences 1, 2, …
type feed struct {
	t     *testing.T
	db    *projection.DB
	projs []projection.Projection
	seq   uint64
}

func newFeed(t *testing.T, db *projection.DB, projs ...projection.Projection) *feed {
	t.Helper()
	ctx := context.Background()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // Migrate runs on every start: twice must do no harm
		for _, p := range projs {
			if err := p.Migrate(ctx, tx); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	return &feed{t: t, db: db, projs: projs}
}

func (f *feed) apply(msgs ...proto.Message) {
	f.t.Helper()
	ctx := context.Background()
	for _, m := range msgs {
		f.seq++
		ev, err := eventstore.NewEvent("brand.x", m, eventstore.Metadata{})
		if err != nil {
			f.t.Fatal(err)
		}
		rec := eventstore.Recorded{Stream: domain.Stream, Sequence: f.seq, Type: ev.Type, ID: "ev", Data: ev.Data}
		tx, err := f.db.BeginTx(ctx, nil)
		if err != nil {
			f.t.Fatal(err)
		}
		for _, p := range f.projs {
			if err := p.Apply(ctx, tx, rec); err != nil {
				tx.Rollback()
				f.t.Fatalf("%s: apply %T at %d: %v", p.Name(), m, f.seq, err)
			}
		}
		if err := tx.Commit(); err != nil {
			f.t.Fatal(err)
		}
	}
}

var (
	oct20 = timestamppb.New(time.Date(2026, 10, 20, 2, 0, 0, 0, time.UTC))
	nov20 = timestamppb.New(time.Date(2026, 11, 20, 2, 0, 0, 0, time.UTC))
	// 2026-11-30 23:30 in Shanghai: still November there.
	nov30 = timestamppb.New(time.Date(2026, 11, 30, 15, 30, 0, 0, time.UTC))
)

func earned(line, farmer string, grams, rate int64, at *timestamppb.Timestamp) *brandevents.PremiumEarned {
	return &brandevents.PremiumEarned{SaleId: "r1/" + line, ReportId: "r1", LineId: line, BrandId: "xunwu", FarmerId: farmer,
		Channel: "hema", Grams: grams, RuleId: "season", RuleVersion: 1, FenPerKg: rate, PremiumFen: grams * rate / 1000, SoldAt: at}
}

func TestPremiumsProjection(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, db *projection.DB) {
		ctx := context.Background()
		f := newFeed(t, db, adapters.PremiumsProjection{})
		f.apply(
			&brandevents.FarmerEnrolled{BrandId: "xunwu", FarmerId: "F1", EnrolledFrom: "2026-10-01"},
			&brandevents.FarmerEnrolled{BrandId: "xunwu", FarmerId: "F2", EnrolledFrom: "2026-10-01"},
			&brandevents.FarmerSuspended{BrandId: "xunwu", FarmerId: "F2", SuspendedFrom: "2026-11-05"},
			earned("a", "F1", 3_000, 100, oct20),
			earned("b", "F1", 2_000, 100, nov20),
			earned("c", "F2", 1_000, 100, oct20),
			&brandevents.PremiumWithheld{SaleId: "r1/d", ReportId: "r1", LineId: "d", BrandId: "xunwu", FarmerId: "F2", Channel: "hema",
				Grams: 4_000, SoldAt: nov30, Reason: domain.WithheldSuspended},
			// A restatement moves a to November; a revision re-rates b; c is withdrawn.
			&brandevents.PremiumAdjusted{SaleId: "r1/a", ReportId: "r1", LineId: "a", BrandId: "xunwu", FarmerId: "F1", Channel: "hema",
				Grams: 3_000, SoldAt: nov20, RuleId: "season", RuleVersion: 1, FenPerKg: 100, PremiumFen: 300, Cause: domain.CauseReportRestated},
			&brandevents.PremiumAdjusted{SaleId: "r1/b", ReportId: "r1", LineId: "b", BrandId: "xunwu", FarmerId: "F1", Channel: "hema",
				Grams: 2_000, SoldAt: nov20, RuleId: "season", RuleVersion: 2, FenPerKg: 120, PremiumFen: 240, DeltaFen: 40, Cause: domain.CauseRuleRevised},
			&brandevents.PremiumAdjusted{SaleId: "r1/c", ReportId: "r1", LineId: "c", BrandId: "xunwu", FarmerId: "F2", Channel: "hema",
				Grams: 0, SoldAt: oct20, PremiumFen: 0, DeltaFen: -100, WithheldReason: domain.WithheldWithdrawn, Cause: domain.CauseReportRestated},
		)
		r := adapters.NewPremiumsReader(db)

		rows, err := r.FarmerPremiums(ctx, app.PremiumFilter{Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		key := func(farmer, month string) app.PremiumKey {
			return app.PremiumKey{FarmerID: farmer, BrandID: "xunwu", Channel: "hema", Month: month}
		}
		want := []app.FarmerPremiumRow{
			{PremiumKey: key("F1", "2026-11"), Sales: 2, GramsSold: 5_000, GramsEarning: 5_000, PremiumFen: 540},
			{PremiumKey: key("F2", "2026-11"), Sales: 1, GramsSold: 4_000},
		}
		if diff := cmp.Diff(want, rows); diff != "" {
			t.Fatalf("farmer months (-want +got):\n%s", diff)
		}
		// Paging resumes after the last key; filters narrow.
		page, err := r.FarmerPremiums(ctx, app.PremiumFilter{After: key("F1", "2026-11"), Limit: 10})
		if err != nil || len(page) != 1 || page[0].FarmerID != "F2" {
			t.Fatalf("second page: %v, %v", page, err)
		}
		none, err := r.FarmerPremiums(ctx, app.PremiumFilter{From: "2026-12", Limit: 10})
		if err != nil || len(none) != 0 {
			t.Fatalf("from December: %v, %v", none, err)
		}

		months, err := r.BrandMonths(ctx, "xunwu")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]app.BrandMonthRow{{Month: "2026-11", Sales: 3, GramsSold: 9_000, GramsEarning: 5_000, PremiumFen: 540}}, months); diff != "" {
			t.Fatalf("brand months (-want +got):\n%s", diff)
		}

		reports, err := r.EarningReports(ctx, "xunwu", "hema", "season", domain.MustDate("2026-11-01"))
		if err != nil || !cmp.Equal(reports, []string{"r1"}) {
			t.Fatalf("earning reports: %v, %v", reports, err)
		}
		sales, err := r.EarningSales(ctx, "xunwu", "hema", "season", domain.MustDate("2026-11-01"))
		if err != nil {
			t.Fatal(err)
		}
		wantSales := []domain.SaleView{
			{SaleID: "r1/a", FarmerID: "F1", SoldOn: domain.MustDate("2026-11-20"), Grams: 3_000, PremiumFen: 300, Rate: domain.Rate{RuleID: "season", Version: 1, FenPerKg: 100}},
			{SaleID: "r1/b", FarmerID: "F1", SoldOn: domain.MustDate("2026-11-20"), Grams: 2_000, PremiumFen: 240, Rate: domain.Rate{RuleID: "season", Version: 2, FenPerKg: 120}},
		}
		if diff := cmp.Diff(wantSales, sales); diff != "" {
			t.Fatalf("earning sales (-want +got):\n%s", diff)
		}

		periods, err := r.EnrolmentPeriods(ctx, "xunwu")
		if err != nil {
			t.Fatal(err)
		}
		wantPeriods := []app.EnrolmentPeriod{
			{FarmerID: "F1", From: domain.MustDate("2026-10-01"), Open: true},
			{FarmerID: "F2", From: domain.MustDate("2026-10-01"), Until: domain.MustDate("2026-11-05")},
		}
		if diff := cmp.Diff(wantPeriods, periods); diff != "" {
			t.Fatalf("enrolment periods (-want +got):\n%s", diff)
		}
	})
}

func TestCatalogAndDeliveriesProjections(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, db *projection.DB) {
		ctx := context.Background()
		f := newFeed(t, db, adapters.CatalogProjection{}, adapters.DeliveriesProjection{})
		f.apply(
			&brandevents.BrandRegistered{BrandId: "xunwu", Kind: domain.KindRegionalProduct, Name: "Xunwu navel orange", County: "Xunwu", RegisteredOn: "2026-03-01"},
			&brandevents.BrandRegistered{BrandId: "yongshun", Kind: domain.KindCountyPublic, Name: "Yongshun", County: "Yongshun", RegisteredOn: "2026-04-01"},
			&brandevents.BrandStageChanged{BrandId: "xunwu", Stage: domain.StageLaunched, PreviousStage: domain.StageIncubating, EffectiveOn: "2026-11-01"},
			&brandevents.ChannelRegistered{ChannelId: "hema", Name: "Hema Fresh"},
			&brandevents.FarmerEnrolled{BrandId: "xunwu", FarmerId: "F1", EnrolledFrom: "2026-10-01", Certificate: "c1"},
			&brandevents.FarmerEnrolled{BrandId: "xunwu", FarmerId: "F2", EnrolledFrom: "2026-10-01"},
			&brandevents.FarmerSuspended{BrandId: "xunwu", FarmerId: "F2", SuspendedFrom: "2026-11-05", Reason: "r"},
			&procurementevents.DeliveryRecorded{DeliveryId: "D1", FarmerId: "F1", Product: "navel-orange"},
		)
		c := adapters.NewCatalogReader(db)
		brands, err := c.Brands(ctx, app.BrandFilter{Stage: domain.StageLaunched, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		want := []app.BrandRow{{BrandID: "xunwu", Kind: domain.KindRegionalProduct, Name: "Xunwu navel orange", County: "Xunwu",
			Stage: domain.StageLaunched, StageSince: "2026-11-01", RegisteredOn: "2026-03-01", Version: 3}}
		if diff := cmp.Diff(want, brands); diff != "" {
			t.Fatalf("launched brands (-want +got):\n%s", diff)
		}
		for _, tc := range []struct {
			f    app.BrandFilter
			want int
		}{
			{app.BrandFilter{Limit: 10}, 2},
			{app.BrandFilter{County: "Yongshun", Limit: 10}, 1},
			{app.BrandFilter{Kind: domain.KindCountyPublic, Limit: 10}, 1},
			{app.BrandFilter{After: "xunwu", Limit: 10}, 1},
			{app.BrandFilter{Limit: 1}, 1},
		} {
			if got, err := c.Brands(ctx, tc.f); err != nil || len(got) != tc.want {
				t.Errorf("Brands(%+v) = %d rows, %v; want %d", tc.f, len(got), err, tc.want)
			}
		}
		suspended, err := c.BrandFarmers(ctx, app.FarmerFilter{BrandID: "xunwu", Status: app.StatusSuspended, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]app.BrandFarmerRow{{BrandID: "xunwu", FarmerID: "F2", Status: app.StatusSuspended, EnrolledFrom: "2026-10-01",
			SuspendedFrom: "2026-11-05", Version: 7}}, suspended); diff != "" {
			t.Fatalf("suspended farmers (-want +got):\n%s", diff)
		}
		channels, err := c.Channels(ctx)
		if err != nil || len(channels) != 1 || channels[0].Name != "Hema Fresh" {
			t.Fatalf("channels: %v, %v", channels, err)
		}
		var farmer string
		if err := db.QueryRowContext(ctx, `SELECT farmer_id FROM brand_deliveries WHERE delivery_id = $1`, "D1").Scan(&farmer); err != nil || farmer != "F1" {
			t.Fatalf("delivery D1: %q, %v", farmer, err)
		}
	})
}
