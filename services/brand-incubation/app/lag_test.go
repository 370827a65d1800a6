package app_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/furrow/furrow/pkg/eventstore"

	"github.com/furrow/furrow/services/brand-incubation/app"
	"github.com/furrow/furrow/services/brand-incubation/domain"
)

// laggingReplica answers the next stale loads of a report as a replica of
// a replicated stream that has not yet caught up with the report's
// events would: with none of them. Loads are direct gets, which any
// replica may answer.
type laggingReplica struct {
	app.Events
	report string
	stale  atomic.Int32
}

func (l *laggingReplica) Load(ctx context.Context, agg domain.Aggregate) (*eventstore.Requests, error) {
	if agg.Filter() == domain.NewReport(l.report).Filter() && l.stale.Add(-1) >= 0 {
		return eventstore.NewRequests(domain.Stream), nil
	}
	return l.Events.Load(ctx, agg)
}

// A retried ReportSales (the first attempt's answer was lost) must answer
// with the report its first attempt wrote, even when the loads it makes
// are answered by a replica that lags: before, the retry found the first
// attempt by its key and then rebuilt its answer from a load that held
// none of the report, and answered with no lines and no premium, which a
// client books as a report that earned nothing.
func TestRetriedReportFromALaggingReplicaKeepsItsLines(t *testing.T) {
	t.Parallel()
	lag := &laggingReplica{report: "R-lag"}
	h := newHarness(t, func(e app.Events) app.Events { lag.Events = e; return lag })
	h.setUp(t)
	cmd := report("R-lag", sale("l1", 10_000), sale("l2", 2_500))
	first, err := h.app.ReportSales(testCtx(t), cmd)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(first.Report.Sales()); n != 2 || first.Report.PremiumFen() != 1250 {
		t.Fatalf("first attempt: %d sales, premium %d; want 2 sales earning 1250 fen", n, first.Report.PremiumFen())
	}
	// The retry's own load (which would find the key) and the loads after
	// it are answered by the lagging replica, twice each way round.
	for _, stale := range []int32{1, 2, 3} {
		lag.stale.Store(stale)
		again, err := h.app.ReportSales(testCtx(t), cmd)
		if err != nil {
			t.Fatalf("retry with %d stale loads: %v", stale, err)
		}
		if !again.Result.Duplicate || again.Result.First != first.Result.First || again.Result.Last != first.Result.Last {
			t.Errorf("retry with %d stale loads: result %+v, want the first attempt's %+v", stale, again.Result, first.Result)
		}
		if n := len(again.Report.Sales()); n != 2 || again.Report.PremiumFen() != first.Report.PremiumFen() || again.ChangedLines != first.ChangedLines {
			t.Errorf("retry with %d stale loads: %d sales, premium %d, %d changed lines; want the first attempt's 2 sales, %d fen, %d changed lines",
				stale, n, again.Report.PremiumFen(), again.ChangedLines, first.Report.PremiumFen(), first.ChangedLines)
		}
	}
}
