package stack_test

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	brandv1 "github.com/furrow/furrow/proto/furrow/brand/v1"
	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"
	typesv1 "github.com/furrow/furrow/proto/furrow/types/v1"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/projection"

	"github.com/furrow/furrow/cmd/furrow/internal/stack"
	"github.com/furrow/furrow/services/brand-incubation/adapters"
	"github.com/furrow/furrow/services/brand-incubation/domain"
)

// brandProtoCmp lets go-cmp compare protobuf messages.
var brandProtoCmp = protocmp.Transform()

// brandWorld is a running stack with the brand and ledger clients, and
// days relative to today (sales cannot lie in the future).
type brandWorld struct {
	st     *stack.Stack
	dir    string
	brand  brandv1.BrandServiceClient
	ledger ledgerv1.LedgerServiceClient
	// day0 is 40 days ago, in CST.
	day0 domain.Date
}

func startBrandWorld(t testing.TB) *brandWorld {
	t.Helper()
	dir := t.TempDir()
	st, err := stack.Start(context.Background(), stack.Config{DataDir: dir, GRPCAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st.Shutdown(ctx)
	})
	conn, err := grpc.NewClient(st.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &brandWorld{
		st: st, dir: dir, brand: brandv1.NewBrandServiceClient(conn), ledger: ledgerv1.NewLedgerServiceClient(conn),
		day0: domain.DateOf(time.Now()) - 40,
	}
}

func bctx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// day is the date n days after day0; at is noon (CST) that day.
func (w *brandWorld) day(n int) string { return (w.day0 + domain.Date(n)).String() }
func (w *brandWorld) at(n int) *timestamppb.Timestamp {
	return timestamppb.New((w.day0 + domain.Date(n)).Start().Add(12 * time.Hour))
}

// setUp registers farmers with the ledger, the Xunwu navel-orange brand,
// the hema channel, enrols the given farmers from day0 and sets the rule
// of 100 fen/kg at hema from day0 on.
func (w *brandWorld) setUp(t testing.TB, registered []string, enrolled ...string) {
	t.Helper()
	ctx := bctx(t)
	for _, f := range registered {
		if _, err := w.ledger.RegisterFarmer(ctx, &ledgerv1.RegisterFarmerRequest{
			RequestId: "reg-" + f, FarmerId: f, Name: "Farmer " + f, County: "Xunwu", Cooperative: "Xunwu Navel Orange Co-op",
			PayoutAccount: "6222-" + f,
		}); err != nil {
			t.Fatalf("RegisterFarmer(%s): %v", f, err)
		}
	}
	must(t, func() error {
		_, err := w.brand.RegisterBrand(ctx, &brandv1.RegisterBrandRequest{
			RequestId: "brand-xunwu", BrandId: "xunwu-navel", Kind: brandv1.BrandKind_BRAND_KIND_REGIONAL_PRODUCT,
			Name: "Xunwu navel orange", County: "Xunwu", ProductCategory: "citrus", RegisteredOn: w.day(-30),
		})
		return err
	})
	must(t, func() error {
		_, err := w.brand.RegisterChannel(ctx, &brandv1.RegisterChannelRequest{RequestId: "ch-hema", ChannelId: "hema", Name: "Hema Fresh"})
		return err
	})
	for _, f := range enrolled {
		must(t, func() error {
			_, err := w.brand.EnrolFarmer(ctx, &brandv1.EnrolFarmerRequest{
				RequestId: "enrol-" + f, BrandId: "xunwu-navel", FarmerId: f, EnrolledFrom: w.day(0), Certificate: "GI-" + f,
			})
			return err
		})
	}
	must(t, func() error {
		_, err := w.brand.SetPremiumRule(ctx, &brandv1.SetPremiumRuleRequest{
			RequestId: "rule-season", BrandId: "xunwu-navel", Channel: "hema", RuleId: "season", FenPerKg: 100, EffectiveFrom: w.day(0),
		})
		return err
	})
}

func must(t testing.TB, f func() error) {
	t.Helper()
	if err := f(); err != nil {
		t.Fatal(err)
	}
}

// premiums returns a farmer's premium balance once the ledger reflects pos.
func (w *brandWorld) premiums(t testing.TB, farmer string, pos *typesv1.Position) int64 {
	t.Helper()
	bal, err := w.ledger.GetFarmerBalance(bctx(t), &ledgerv1.GetFarmerBalanceRequest{FarmerId: farmer, MinPosition: pos})
	if err != nil {
		t.Fatalf("GetFarmerBalance(%s): %v", farmer, err)
	}
	return bal.GetPremiumsFen()
}

// kinds counts the BRAND stream's events on subjects matching filter, by
// event kind (the last subject token).
func (w *brandWorld) kinds(t testing.TB, filter string) map[string]uint64 {
	t.Helper()
	s, err := w.st.JetStream().Stream(bctx(t), domain.Stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(bctx(t), jetstream.WithSubjectFilter(filter))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	for subj, n := range info.State.Subjects {
		out[subj[strings.LastIndex(subj, ".")+1:]] += n
	}
	return out
}

func (w *brandWorld) brandEvents(t testing.TB) uint64 {
	t.Helper()
	s, err := w.st.JetStream().Stream(bctx(t), domain.Stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(bctx(t))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// TestBrandNavelOrangeStory is the brand side end to end, through the
// public APIs: a rule of 100 fen/kg at hema, 1,234,567 g sold → 123,457 fen
// in the farmer's balance; a preview of a retroactive revision to 120
// fen/kg; the revision re-rating exactly the affected sales, the balance
// moving by exactly the previewed delta; the same revision again changing
// nothing; a restatement emitting only its differences; the premium read
// model; and a rebuild of it from zero giving identical rows.
func TestBrandNavelOrangeStory(t *testing.T) {
	t.Parallel()
	w := startBrandWorld(t)
	ctx := bctx(t)
	w.setUp(t, []string{"F1", "F2", "F3"}, "F1", "F2")

	report := &brandv1.ReportSalesRequest{ReportId: "hema-r1", Revision: 1, Channel: "hema", Lines: []*brandv1.SaleLine{
		{LineId: "L1", BrandId: "xunwu-navel", FarmerId: "F1", Grams: 1_234_567, SoldAt: w.at(20)},
		{LineId: "L2", BrandId: "xunwu-navel", FarmerId: "F2", Grams: 10_000, SoldAt: w.at(5)},
		{LineId: "L3", BrandId: "xunwu-navel", FarmerId: "F3", Grams: 5_000, SoldAt: w.at(20)}, // not enrolled
	}}
	rep, err := w.brand.ReportSales(ctx, report)
	if err != nil {
		t.Fatal(err)
	}
	type outcome struct {
		Line     string
		Premium  int64
		Rate     int64
		Version  int32
		Withheld brandv1.WithheldReason
	}
	outcomes := func(lines []*brandv1.SaleOutcome) []outcome {
		var out []outcome
		for _, l := range lines {
			out = append(out, outcome{l.GetLineId(), l.GetPremiumFen(), l.GetFenPerKg(), l.GetRuleVersion(), l.GetWithheldReason()})
		}
		return out
	}
	want := []outcome{
		{"L1", 123_457, 100, 1, 0},
		{"L2", 1_000, 100, 1, 0},
		{"L3", 0, 0, 0, brandv1.WithheldReason_WITHHELD_REASON_NOT_ENROLLED},
	}
	if diff := cmp.Diff(want, outcomes(rep.GetLines())); diff != "" {
		t.Fatalf("report outcomes (-want +got):\n%s", diff)
	}
	if rep.GetChangedLines() != 3 || rep.GetPremiumFen() != 124_457 {
		t.Fatalf("report: %d changed lines, %d fen", rep.GetChangedLines(), rep.GetPremiumFen())
	}
	if got := w.premiums(t, "F1", rep.GetPosition()); got != 123_457 {
		t.Fatalf("F1's premiums = %d fen, want 123457", got)
	}

	// A retry is the same report; the same id and revision with other content is not.
	events := w.brandEvents(t)
	again, err := w.brand.ReportSales(ctx, report)
	if err != nil || !proto.Equal(again, rep) {
		t.Fatalf("retry: %v, %v", again, err)
	}
	report.Lines[0].Grams++
	if _, err := w.brand.ReportSales(ctx, report); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("same revision, other content: %v, want AlreadyExists", err)
	}
	report.Lines[0].Grams--
	if n := w.brandEvents(t); n != events {
		t.Fatalf("retries appended %d events", n-events)
	}

	// Preview, then revise: 100 → 120 fen/kg from day 10, retroactively.
	// L1 (day 20) is re-rated, L2 (day 5) is not.
	preview, err := w.brand.PreviewRevision(ctx, &brandv1.PreviewRevisionRequest{
		BrandId: "xunwu-navel", Channel: "hema", RuleId: "season", FenPerKg: 120, RevisedFrom: w.day(10),
	})
	if err != nil {
		t.Fatal(err)
	}
	wantPreview := []*brandv1.FarmerDelta{{FarmerId: "F1", Sales: 1, Grams: 1_234_567, PremiumBeforeFen: 123_457, PremiumAfterFen: 148_148, DeltaFen: 24_691}}
	if diff := cmp.Diff(wantPreview, preview.GetFarmers(), brandProtoCmp); diff != "" || !preview.GetChanged() || preview.GetRuleVersion() != 2 {
		t.Fatalf("preview (-want +got):\n%s\n%v", diff, preview)
	}
	if n := w.brandEvents(t); n != events {
		t.Fatalf("a preview appended %d events", n-events)
	}

	revise := func(requestID string) *brandv1.ReviseRuleRequest {
		return &brandv1.ReviseRuleRequest{RequestId: requestID, BrandId: "xunwu-navel", Channel: "hema", RuleId: "season",
			FenPerKg: 120, RevisedFrom: w.day(10), Reason: "Hema raised the shelf price"}
	}
	rev, err := w.brand.ReviseRule(ctx, revise("rev-1"))
	if err != nil {
		t.Fatal(err)
	}
	if !rev.GetChanged() || rev.GetRuleVersion() != 2 || rev.GetAdjustedSales() != 1 || rev.GetDeltaFen() != preview.GetDeltaFen() {
		t.Fatalf("revision = %v, preview said %d sales, %d fen", rev, preview.GetAdjustedSales(), preview.GetDeltaFen())
	}
	if got := w.premiums(t, "F1", rev.GetPosition()); got != 123_457+24_691 {
		t.Fatalf("F1's premiums after the revision = %d, want %d", got, 123_457+24_691)
	}
	if got := w.premiums(t, "F2", rev.GetPosition()); got != 1_000 {
		t.Fatalf("F2's premiums = %d, want 1000 (sold before the revised day)", got)
	}
	if k := w.kinds(t, "brand.report.hema-r1.>"); k[domain.KindPremiumAdjusted] != 1 {
		t.Fatalf("report events after the revision: %v, want exactly one premium_adjusted", k)
	}

	// Revising twice to the same value changes nothing; a retry of the
	// first revision returns its outcome without re-rating anything again.
	events = w.brandEvents(t)
	same, err := w.brand.ReviseRule(ctx, revise("rev-1-again"))
	if err != nil || same.GetChanged() || same.GetAdjustedSales() != 0 {
		t.Fatalf("same revision again: %v, %v", same, err)
	}
	retry, err := w.brand.ReviseRule(ctx, revise("rev-1"))
	if err != nil || !retry.GetChanged() || retry.GetRuleVersion() != 2 || retry.GetAdjustedSales() != 1 ||
		retry.GetDeltaFen() != 24_691 || retry.GetPosition().GetSequence() != rev.GetPosition().GetSequence() {
		t.Fatalf("retried revision: %v, %v; first: %v", retry, err, rev)
	}
	if n := w.brandEvents(t); n != events {
		t.Fatalf("repeating the revision appended %d events", n-events)
	}

	// Restatement: L1 unchanged, L2 more grams, L3 left out, L4 new.
	restated, err := w.brand.ReportSales(ctx, &brandv1.ReportSalesRequest{ReportId: "hema-r1", Revision: 2, Channel: "hema", Lines: []*brandv1.SaleLine{
		{LineId: "L1", BrandId: "xunwu-navel", FarmerId: "F1", Grams: 1_234_567, SoldAt: w.at(20)},
		{LineId: "L2", BrandId: "xunwu-navel", FarmerId: "F2", Grams: 12_000, SoldAt: w.at(5)},
		{LineId: "L4", BrandId: "xunwu-navel", FarmerId: "F2", Grams: 2_000, SoldAt: w.at(20)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if restated.GetChangedLines() != 3 {
		t.Fatalf("restatement changed %d lines, want 3 (L2, L3, L4)", restated.GetChangedLines())
	}
	if diff := cmp.Diff(map[string]uint64{
		domain.KindSalesReported: 2, domain.KindPremiumEarned: 3, domain.KindPremiumWithheld: 2, domain.KindPremiumAdjusted: 2,
	}, w.kinds(t, "brand.report.hema-r1.>")); diff != "" {
		t.Fatalf("report events after the restatement (-want +got):\n%s", diff)
	}
	// L2: 10 kg → 12 kg at 100 fen/kg (+200); L4: 2 kg at 120 fen/kg (240).
	if got := w.premiums(t, "F2", restated.GetPosition()); got != 1_000+200+240 {
		t.Fatalf("F2's premiums after the restatement = %d, want %d", got, 1_000+200+240)
	}

	// The premium read model.
	month := (w.day0 + 20).Month().String()
	rows, err := w.brand.ListFarmerPremiums(ctx, &brandv1.ListFarmerPremiumsRequest{FarmerId: "F1", MinPosition: restated.GetPosition()})
	if err != nil {
		t.Fatal(err)
	}
	wantRows := []*brandv1.FarmerPremium{{FarmerId: "F1", BrandId: "xunwu-navel", Channel: "hema", Month: month, Sales: 1,
		GramsSold: 1_234_567, GramsEarning: 1_234_567, PremiumFen: 148_148, EffectiveFenPerKg: 120}}
	if diff := cmp.Diff(wantRows, rows.GetPremiums(), brandProtoCmp); diff != "" {
		t.Fatalf("F1's premiums (-want +got):\n%s", diff)
	}
	dash, err := w.brand.GetBrandDashboard(ctx, &brandv1.GetBrandDashboardRequest{BrandId: "xunwu-navel", MinPosition: restated.GetPosition()})
	if err != nil {
		t.Fatal(err)
	}
	var grams, premium int64
	for _, m := range dash.GetMonths() {
		grams += m.GetGramsSold()
		premium += m.GetPremiumFen()
		if m.GetEnrolledFarmers() != 2 {
			t.Errorf("dashboard month %s: %d enrolled farmers, want 2", m.GetMonth(), m.GetEnrolledFarmers())
		}
	}
	if dash.GetEnrolledFarmers() != 2 || grams != 1_234_567+12_000+2_000 || premium != 148_148+1_200+240 {
		t.Fatalf("dashboard: %d enrolled, %d g, %d fen\n%v", dash.GetEnrolledFarmers(), grams, premium, dash)
	}

	// Rebuilding the premium projection from zero gives identical rows.
	live, err := projection.OpenSQLite(filepath.Join(w.dir, "projections.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	rebuilt := rebuildPremiums(t, w.st, filepath.Join(t.TempDir(), "rebuilt.db"))
	for _, table := range (adapters.PremiumsProjection{}).Tables() {
		want, got := dumpTable(t, live, table), dumpTable(t, rebuilt, table)
		if len(want) == 0 && table != "brand_enrolment_periods" {
			t.Errorf("live %s is empty", table)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s rebuilt from zero differs (-live +rebuilt):\n%s", table, diff)
		}
	}
}

// rebuildPremiums replays the BRAND stream from zero into a fresh database
// through the premium projection, up to where the live copy is.
func rebuildPremiums(t testing.TB, st *stack.Stack, path string) *projection.DB {
	t.Helper()
	var liveRunner *projection.Runner
	for _, r := range st.Projections() {
		if r.Name() == (adapters.PremiumsProjection{}).Name() {
			liveRunner = r
		}
	}
	if liveRunner == nil {
		t.Fatal("no premium projection in the stack")
	}
	db, err := projection.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	r, err := projection.NewRunner(db, st.JetStream(), adapters.PremiumsProjection{}, projection.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	if err := r.WaitFor(bctx(t), liveRunner.Checkpoint()); err != nil {
		t.Fatal(err)
	}
	return db
}

// dumpTable returns a table's rows as text, ordered.
func dumpTable(t testing.TB, db *projection.DB, table string) []string {
	t.Helper()
	rows, err := db.QueryContext(bctx(t), `SELECT * FROM `+table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for i, v := range vals {
			fmt.Fprintf(&b, "%s=%s ", cols[i], v.String)
		}
		out = append(out, b.String())
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// TestBrandBadInputAppendsNothing: each bad request gets the right code,
// names the offending field, and appends nothing.
func TestBrandBadInputAppendsNothing(t *testing.T) {
	t.Parallel()
	w := startBrandWorld(t)
	ctx := bctx(t)
	w.setUp(t, []string{"F1", "F4"}, "F1")
	must(t, func() error {
		_, err := w.brand.EnrolFarmer(ctx, &brandv1.EnrolFarmerRequest{RequestId: "enrol-F4", BrandId: "xunwu-navel", FarmerId: "F4", EnrolledFrom: w.day(10)})
		return err
	})
	line := func(edit func(*brandv1.SaleLine)) *brandv1.ReportSalesRequest {
		l := &brandv1.SaleLine{LineId: "L1", BrandId: "xunwu-navel", FarmerId: "F1", Grams: 1000, SoldAt: w.at(20)}
		edit(l)
		return &brandv1.ReportSalesRequest{ReportId: "bad", Revision: 1, Channel: "hema", Lines: []*brandv1.SaleLine{l}}
	}
	rule := func(edit func(*brandv1.SetPremiumRuleRequest)) *brandv1.SetPremiumRuleRequest {
		r := &brandv1.SetPremiumRuleRequest{RequestId: "bad-rule", BrandId: "xunwu-navel", Channel: "hema", RuleId: "other",
			FenPerKg: 50, EffectiveFrom: w.day(-20), EffectiveTo: w.day(-10)}
		edit(r)
		return r
	}
	events := w.brandEvents(t)
	for _, tc := range []struct {
		name  string
		call  func() error
		code  codes.Code
		field string
	}{
		{"overlapping rule", func() error {
			_, err := w.brand.SetPremiumRule(ctx, rule(func(r *brandv1.SetPremiumRuleRequest) { r.EffectiveTo = w.day(3) }))
			return err
		}, codes.FailedPrecondition, "effective_from"},
		{"negative rate", func() error {
			_, err := w.brand.SetPremiumRule(ctx, rule(func(r *brandv1.SetPremiumRuleRequest) { r.FenPerKg = -1 }))
			return err
		}, codes.InvalidArgument, "fen_per_kg"},
		{"rule for an unknown brand", func() error {
			_, err := w.brand.SetPremiumRule(ctx, rule(func(r *brandv1.SetPremiumRuleRequest) { r.BrandId = "nope" }))
			return err
		}, codes.NotFound, "brand_id"},
		{"rule at an unknown channel", func() error {
			_, err := w.brand.SetPremiumRule(ctx, rule(func(r *brandv1.SetPremiumRuleRequest) { r.Channel = "hemma" }))
			return err
		}, codes.NotFound, "channel"},
		{"sale of an unknown brand", func() error {
			_, err := w.brand.ReportSales(ctx, line(func(l *brandv1.SaleLine) { l.BrandId = "nope" }))
			return err
		}, codes.NotFound, "lines[0].brand_id"},
		{"sale at an unknown channel", func() error {
			r := line(func(*brandv1.SaleLine) {})
			r.Channel = "hemma"
			_, err := w.brand.ReportSales(ctx, r)
			return err
		}, codes.NotFound, "channel"},
		{"sale before enrolment", func() error {
			_, err := w.brand.ReportSales(ctx, line(func(l *brandv1.SaleLine) { l.FarmerId, l.SoldAt = "F4", w.at(5) }))
			return err
		}, codes.FailedPrecondition, "lines[0].sold_at"},
		{"unknown farmer", func() error {
			_, err := w.brand.ReportSales(ctx, line(func(l *brandv1.SaleLine) { l.FarmerId = "NOBODY" }))
			return err
		}, codes.NotFound, "lines[0].farmer_id"},
		{"unknown delivery", func() error {
			_, err := w.brand.ReportSales(ctx, line(func(l *brandv1.SaleLine) { l.FarmerId, l.DeliveryId = "", "D404" }))
			return err
		}, codes.NotFound, "lines[0].delivery_id"},
		{"zero grams", func() error {
			_, err := w.brand.ReportSales(ctx, line(func(l *brandv1.SaleLine) { l.Grams = 0 }))
			return err
		}, codes.InvalidArgument, "lines[0].grams"},
		{"sold in the future", func() error {
			_, err := w.brand.ReportSales(ctx, line(func(l *brandv1.SaleLine) { l.SoldAt = timestamppb.New(time.Now().Add(time.Hour)) }))
			return err
		}, codes.InvalidArgument, "lines[0].sold_at"},
		{"revision without a reason", func() error {
			_, err := w.brand.ReviseRule(ctx, &brandv1.ReviseRuleRequest{RequestId: "bad-rev", BrandId: "xunwu-navel", Channel: "hema", RuleId: "season", FenPerKg: 120})
			return err
		}, codes.InvalidArgument, "reason"},
		{"revision to a negative rate", func() error {
			_, err := w.brand.ReviseRule(ctx, &brandv1.ReviseRuleRequest{RequestId: "bad-rev", BrandId: "xunwu-navel", Channel: "hema", RuleId: "season", FenPerKg: -120, Reason: "r"})
			return err
		}, codes.InvalidArgument, "fen_per_kg"},
		{"revision of an unknown rule", func() error {
			_, err := w.brand.ReviseRule(ctx, &brandv1.ReviseRuleRequest{RequestId: "bad-rev", BrandId: "xunwu-navel", Channel: "hema", RuleId: "nope", FenPerKg: 120, Reason: "r"})
			return err
		}, codes.NotFound, "rule_id"},
		{"enrolment of an unknown farmer", func() error {
			_, err := w.brand.EnrolFarmer(ctx, &brandv1.EnrolFarmerRequest{RequestId: "bad-enrol", BrandId: "xunwu-navel", FarmerId: "NOBODY"})
			return err
		}, codes.NotFound, "farmer_id"},
		{"request id reused with other content", func() error {
			_, err := w.brand.RegisterBrand(ctx, &brandv1.RegisterBrandRequest{RequestId: "brand-xunwu", BrandId: "xunwu-navel",
				Kind: brandv1.BrandKind_BRAND_KIND_REGIONAL_PRODUCT, Name: "Another name", County: "Xunwu"})
			return err
		}, codes.AlreadyExists, ""},
		{"second registration of a brand", func() error {
			_, err := w.brand.RegisterBrand(ctx, &brandv1.RegisterBrandRequest{RequestId: "brand-xunwu-2", BrandId: "xunwu-navel",
				Kind: brandv1.BrandKind_BRAND_KIND_REGIONAL_PRODUCT, Name: "Xunwu navel orange", County: "Xunwu"})
			return err
		}, codes.AlreadyExists, "brand_id"},
		{"stage backwards", func() error {
			_, err := w.brand.ChangeBrandStage(ctx, &brandv1.ChangeBrandStageRequest{RequestId: "bad-stage", BrandId: "xunwu-navel", Stage: brandv1.BrandStage_BRAND_STAGE_INCUBATING})
			return err
		}, codes.InvalidArgument, "stage"},
	} {
		err := tc.call()
		if status.Code(err) != tc.code || !strings.Contains(status.Convert(err).Message(), tc.field) {
			t.Errorf("%s: %v, want %v naming %q", tc.name, err, tc.code, tc.field)
		}
	}
	if n := w.brandEvents(t); n != events {
		t.Fatalf("bad requests appended %d events", n-events)
	}
}

// TestPremiumRulesNeverOverlapUnderConcurrency races overlapping rules for
// one brand and channel: the rule set's optimistic concurrency lets
// exactly one in.
func TestPremiumRulesNeverOverlapUnderConcurrency(t *testing.T) {
	t.Parallel()
	w := startBrandWorld(t)
	w.setUp(t, nil)
	const n = 8
	codesSeen := make([]codes.Code, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, err := w.brand.SetPremiumRule(bctx(t), &brandv1.SetPremiumRuleRequest{
				RequestId: fmt.Sprint("race-", i), BrandId: "xunwu-navel", Channel: "hema", RuleId: fmt.Sprint("winter-", i),
				FenPerKg: int64(50 + i), EffectiveFrom: w.day(-20 + i), EffectiveTo: w.day(-5),
			})
			codesSeen[i] = status.Code(err)
		})
	}
	wg.Wait()
	ok, refused := 0, 0
	for _, c := range codesSeen {
		switch c {
		case codes.OK:
			ok++
		case codes.FailedPrecondition:
			refused++
		}
	}
	if ok != 1 || refused != n-1 {
		t.Fatalf("codes %v: want one OK and %d FailedPrecondition", codesSeen, n-1)
	}
	rules, err := w.brand.ListPremiumRules(bctx(t), &brandv1.ListPremiumRulesRequest{BrandId: "xunwu-navel", Channel: "hema"})
	if err != nil || len(rules.GetRules()) != 2 {
		t.Fatalf("rules: %v, %v", rules, err)
	}
}

// TestReportsBeforeAndDuringARevisionEndAtTheRevisedRate reports sales
// before a retroactive revision (its own re-rating pass must find them) and
// while it lands: whichever order the appends take, every sale ends up at
// the revised rate, earned once and adjusted at most once.
func TestReportsBeforeAndDuringARevisionEndAtTheRevisedRate(t *testing.T) {
	t.Parallel()
	w := startBrandWorld(t)
	w.setUp(t, []string{"F1"}, "F1")
	const before, during = 6, 6
	reportSale := func(i int) error {
		_, err := w.brand.ReportSales(bctx(t), &brandv1.ReportSalesRequest{ReportId: fmt.Sprint("r-", i), Revision: 1, Channel: "hema",
			Lines: []*brandv1.SaleLine{{LineId: "L", BrandId: "xunwu-navel", FarmerId: "F1", Grams: 1_001, SoldAt: w.at(20)}}})
		return err
	}
	for i := range before {
		must(t, func() error { return reportSale(i) })
	}
	var wg sync.WaitGroup
	errs := make(chan error, during+1)
	for i := range during {
		wg.Go(func() { errs <- reportSale(before + i) })
	}
	var rev *brandv1.ReviseRuleResponse
	wg.Go(func() {
		var err error
		rev, err = w.brand.ReviseRule(bctx(t), &brandv1.ReviseRuleRequest{RequestId: "rev", BrandId: "xunwu-navel", Channel: "hema",
			RuleId: "season", FenPerKg: 130, Reason: "race"})
		errs <- err
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if rev.GetAdjustedSales() < before {
		t.Fatalf("the revision re-rated %d sales; the %d reported before it at least", rev.GetAdjustedSales(), before)
	}
	waitForRates(t, w, 130, before+during)
	k := w.kinds(t, "brand.report.>")
	if k[domain.KindPremiumEarned] != before+during || k[domain.KindPremiumAdjusted] > before+during {
		t.Fatalf("report events: %v", k)
	}
	// 1,001 g × 130 fen/kg = 130.13 → 130 fen each.
	waitForPremiums(t, w, "F1", 130*(before+during))
}

// waitForPremiums waits until the ledger shows farmer's premiums at want:
// re-rating done by a reaction has no position for the caller to wait on.
func waitForPremiums(t testing.TB, w *brandWorld, farmer string, want int64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for got := w.premiums(t, farmer, nil); got != want; got = w.premiums(t, farmer, nil) {
		if time.Now().After(deadline) {
			t.Fatalf("%s's premiums %d fen, want %d", farmer, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitForRates waits until reports r-0 … r-<n-1> earn at fenPerKg.
func waitForRates(t testing.TB, w *brandWorld, fenPerKg int64, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for i := range n {
		for {
			rep, err := w.brand.GetSalesReport(bctx(t), &brandv1.GetSalesReportRequest{ReportId: fmt.Sprint("r-", i)})
			if err != nil {
				t.Fatal(err)
			}
			if l := rep.GetLines()[0]; l.GetFenPerKg() == fenPerKg {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("report r-%d still at %v", i, rep.GetLines()[0])
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// TestRevisionLeftUnfinishedIsFinishedByTheReaction appends a revision
// straight to the stream, as a ReviseRule that crashed right after its
// append would leave it: the RerateOnPremiumRuleRevised reaction re-rates
// the premiums, and the ledger follows.
func TestRevisionLeftUnfinishedIsFinishedByTheReaction(t *testing.T) {
	t.Parallel()
	w := startBrandWorld(t)
	w.setUp(t, []string{"F1"}, "F1")
	ctx := bctx(t)
	for i := range 3 {
		if _, err := w.brand.ReportSales(ctx, &brandv1.ReportSalesRequest{ReportId: fmt.Sprint("r-", i), Revision: 1, Channel: "hema",
			Lines: []*brandv1.SaleLine{{LineId: "L", BrandId: "xunwu-navel", FarmerId: "F1", Grams: 10_000, SoldAt: w.at(20)}}}); err != nil {
			t.Fatal(err)
		}
	}
	events := adapters.NewEvents(eventstore.New(w.st.JetStream()))
	rs := domain.NewRuleSet("xunwu-navel", "hema")
	if _, err := events.Load(ctx, rs); err != nil {
		t.Fatal(err)
	}
	ev, _, err := rs.Revise(domain.Revision{RuleID: "season", FenPerKg: 140, Reason: "crashed right after"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Append(ctx, rs, "", "", eventstore.Metadata{}, domain.Change{Kind: domain.KindPremiumRuleRevised, Event: ev}); err != nil {
		t.Fatal(err)
	}
	waitForRates(t, w, 140, 3)
	waitForPremiums(t, w, "F1", 3*1_400) // 3 × 10 kg × 140 fen/kg
}

// TestBrandCatalogStagesAndEnrolment: brands listed by county, kind and
// stage, page by page; a stage change; enrolment and suspension, and what
// a suspended farmer's sale earns.
func TestBrandCatalogStagesAndEnrolment(t *testing.T) {
	t.Parallel()
	w := startBrandWorld(t)
	ctx := bctx(t)
	w.setUp(t, []string{"F1", "F2"}, "F1", "F2")
	for _, b := range []*brandv1.RegisterBrandRequest{
		{RequestId: "b-qinglong", BrandId: "qinglong-chestnut", Kind: brandv1.BrandKind_BRAND_KIND_REGIONAL_PRODUCT, Name: "Qinglong chestnut", County: "Qinglong"},
		{RequestId: "b-yongshun", BrandId: "yongshun-county", Kind: brandv1.BrandKind_BRAND_KIND_COUNTY_PUBLIC, Name: "Yongshun public brand", County: "Yongshun", ProductCategory: "berry tea"},
	} {
		if _, err := w.brand.RegisterBrand(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	stage, err := w.brand.ChangeBrandStage(ctx, &brandv1.ChangeBrandStageRequest{
		RequestId: "launch", BrandId: "xunwu-navel", Stage: brandv1.BrandStage_BRAND_STAGE_LAUNCHED, EffectiveOn: w.day(1), Note: "on Hema shelves"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := w.brand.GetBrand(ctx, &brandv1.GetBrandRequest{BrandId: "xunwu-navel"})
	if err != nil {
		t.Fatal(err)
	}
	wantStages := []*brandv1.StageChange{
		{Stage: brandv1.BrandStage_BRAND_STAGE_INCUBATING, EffectiveOn: w.day(-30)},
		{Stage: brandv1.BrandStage_BRAND_STAGE_LAUNCHED, EffectiveOn: w.day(1), Note: "on Hema shelves"},
	}
	if diff := cmp.Diff(wantStages, got.GetBrand().GetStages(), brandProtoCmp); diff != "" || got.GetBrand().GetStage() != brandv1.BrandStage_BRAND_STAGE_LAUNCHED {
		t.Fatalf("stages (-want +got):\n%s", diff)
	}

	list := func(req *brandv1.ListBrandsRequest) []string {
		t.Helper()
		req.MinPosition = stage.GetPosition()
		var ids []string
		for {
			page, err := w.brand.ListBrands(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range page.GetBrands() {
				ids = append(ids, b.GetBrandId())
			}
			if page.GetNextPageToken() == "" {
				return ids
			}
			req.PageToken = page.GetNextPageToken()
		}
	}
	for _, tc := range []struct {
		req  *brandv1.ListBrandsRequest
		want []string
	}{
		{&brandv1.ListBrandsRequest{PageSize: 1}, []string{"qinglong-chestnut", "xunwu-navel", "yongshun-county"}},
		{&brandv1.ListBrandsRequest{County: "Xunwu"}, []string{"xunwu-navel"}},
		{&brandv1.ListBrandsRequest{Kind: brandv1.BrandKind_BRAND_KIND_COUNTY_PUBLIC}, []string{"yongshun-county"}},
		{&brandv1.ListBrandsRequest{Stage: brandv1.BrandStage_BRAND_STAGE_INCUBATING, PageSize: 1}, []string{"qinglong-chestnut", "yongshun-county"}},
		{&brandv1.ListBrandsRequest{Stage: brandv1.BrandStage_BRAND_STAGE_RETIRED}, nil},
	} {
		if diff := cmp.Diff(tc.want, list(tc.req)); diff != "" {
			t.Errorf("ListBrands(%v) (-want +got):\n%s", tc.req, diff)
		}
	}

	sus, err := w.brand.SuspendFarmer(ctx, &brandv1.SuspendFarmerRequest{
		RequestId: "sus-F2", BrandId: "xunwu-navel", FarmerId: "F2", SuspendedFrom: w.day(15), Reason: "failed the residue test"})
	if err != nil {
		t.Fatal(err)
	}
	farmers, err := w.brand.ListBrandFarmers(ctx, &brandv1.ListBrandFarmersRequest{BrandId: "xunwu-navel", MinPosition: sus.GetPosition()})
	if err != nil {
		t.Fatal(err)
	}
	wantFarmers := []*brandv1.BrandFarmer{
		{BrandId: "xunwu-navel", FarmerId: "F1", Status: brandv1.EnrolmentStatus_ENROLMENT_STATUS_ENROLLED, EnrolledFrom: w.day(0), Certificate: "GI-F1"},
		{BrandId: "xunwu-navel", FarmerId: "F2", Status: brandv1.EnrolmentStatus_ENROLMENT_STATUS_SUSPENDED, EnrolledFrom: w.day(0), SuspendedFrom: w.day(15), Certificate: "GI-F2"},
	}
	if diff := cmp.Diff(wantFarmers, farmers.GetFarmers(), brandProtoCmp, protocmp.IgnoreFields(&brandv1.BrandFarmer{}, "version")); diff != "" {
		t.Fatalf("farmers (-want +got):\n%s", diff)
	}
	suspended, err := w.brand.ListBrandFarmers(ctx, &brandv1.ListBrandFarmersRequest{BrandId: "xunwu-navel", Status: brandv1.EnrolmentStatus_ENROLMENT_STATUS_SUSPENDED})
	if err != nil || len(suspended.GetFarmers()) != 1 || suspended.GetFarmers()[0].GetFarmerId() != "F2" {
		t.Fatalf("suspended farmers: %v, %v", suspended, err)
	}

	// F2 sold before and after the suspension.
	rep, err := w.brand.ReportSales(ctx, &brandv1.ReportSalesRequest{ReportId: "hema-r9", Revision: 1, Channel: "hema", Lines: []*brandv1.SaleLine{
		{LineId: "before", BrandId: "xunwu-navel", FarmerId: "F2", Grams: 4_000, SoldAt: w.at(14)},
		{LineId: "after", BrandId: "xunwu-navel", FarmerId: "F2", Grams: 4_000, SoldAt: w.at(15)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	lines := rep.GetLines()
	if lines[0].GetLineId() != "after" || lines[0].GetWithheldReason() != brandv1.WithheldReason_WITHHELD_REASON_SUSPENDED || lines[0].GetPremiumFen() != 0 ||
		lines[1].GetLineId() != "before" || lines[1].GetPremiumFen() != 400 {
		t.Fatalf("suspended farmer's sales: %v", lines)
	}
	channels, err := w.brand.ListChannels(ctx, &brandv1.ListChannelsRequest{})
	if err != nil || len(channels.GetChannels()) != 1 || channels.GetChannels()[0].GetName() != "Hema Fresh" {
		t.Fatalf("channels: %v, %v", channels, err)
	}
}

// TestConcurrentRetriesOfOneReportWriteItOnce sends the same report eight
// times at once, as a client retrying on timeouts might: one batch is
// written, and every caller gets its outcome.
func TestConcurrentRetriesOfOneReportWriteItOnce(t *testing.T) {
	t.Parallel()
	w := startBrandWorld(t)
	w.setUp(t, []string{"F1"}, "F1")
	req := &brandv1.ReportSalesRequest{ReportId: "hema-retry", Revision: 1, Channel: "hema", Lines: []*brandv1.SaleLine{
		{LineId: "1", BrandId: "xunwu-navel", FarmerId: "F1", Grams: 2_500, SoldAt: w.at(20)},
		{LineId: "2", BrandId: "xunwu-navel", FarmerId: "F1", Grams: 1_500, SoldAt: w.at(21)},
	}}
	const n = 8
	res := make([]*brandv1.ReportSalesResponse, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { res[i], errs[i] = w.brand.ReportSales(bctx(t), req) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("call %d: %v", i, errs[i])
		}
		if res[i].GetPremiumFen() != 400 || len(res[i].GetLines()) != 2 || res[i].GetPosition().GetSequence() != res[0].GetPosition().GetSequence() {
			t.Fatalf("call %d: %v; call 0: %v", i, res[i], res[0])
		}
	}
	if diff := cmp.Diff(map[string]uint64{domain.KindSalesReported: 1, domain.KindPremiumEarned: 2}, w.kinds(t, "brand.report.hema-retry.>")); diff != "" {
		t.Fatalf("events (-want +got):\n%s", diff)
	}
}
