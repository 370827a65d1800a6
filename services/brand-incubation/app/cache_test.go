package app_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/furrow/furrow/pkg/aggregate"

	"github.com/furrow/furrow/services/brand-incubation/adapters"
	"github.com/furrow/furrow/services/brand-incubation/domain"
)

// TestBrandAggregatesLoadIncrementally: brand incubation's aggregates load
// through pkg/aggregate's cache, like the ledger's farmers: loading a
// report again reads no event; after a restatement it reads only the
// restatement's events; and what it returns equals a rebuild from the
// first event.
func TestBrandAggregatesLoadIncrementally(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.setUp(t)
	ctx := testCtx(t)
	if _, err := h.app.ReportSales(ctx, report("r1", sale("L1", 1_000), sale("L2", 2_000), sale("L3", 3_000))); err != nil {
		t.Fatal(err)
	}
	load := func(ev *adapters.Events) *domain.Report {
		t.Helper()
		r := domain.NewReport("r1")
		if _, err := ev.Load(ctx, r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	load(h.events)
	before := h.events.CacheStats()["report"]
	load(h.events)
	after := h.events.CacheStats()["report"]
	if after.Hits != before.Hits+1 || after.EventsRead != before.EventsRead {
		t.Fatalf("second load of an unchanged report: %+v then %+v; want a hit reading no event", before, after)
	}
	restated := report("r1", sale("L1", 1_500), sale("L2", 2_000))
	restated.Report.Revision, restated.Fingerprint = 2, "r1#2"
	if _, err := h.app.ReportSales(ctx, restated); err != nil {
		t.Fatal(err)
	}
	got := load(h.events)
	final := h.events.CacheStats()["report"]
	// The restatement wrote a header, L1's adjustment and L3's withdrawal.
	if read := final.EventsRead - after.EventsRead; read != 3 {
		t.Errorf("load after a restatement read %d events, want the restatement's 3", read)
	}
	fresh := load(adapters.NewEventsWith(h.store, aggregate.Options{MaxAggregates: -1}))
	if diff := cmp.Diff(fresh.Sales(), got.Sales()); diff != "" || fresh.Version() != got.Version() || fresh.PremiumFen() != got.PremiumFen() {
		t.Fatalf("cached report differs from a rebuild (-rebuilt +cached):\n%s", diff)
	}
}
