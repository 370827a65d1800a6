package app_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	procurementevents "github.com/furrow/furrow/proto/furrow/procurement/events/v1"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/failure"

	"github.com/furrow/furrow/services/brand-incubation/app"
	"github.com/furrow/furrow/services/brand-incubation/domain"
)

// deliver appends procurement's DeliveryRecorded for F1's lot id of grams.
func (h *harness) deliver(t testing.TB, id string, grams int64) {
	t.Helper()
	h.procurementEvent(t, id, "delivery_recorded", &procurementevents.DeliveryRecorded{
		DeliveryId: id, FarmerId: "F1", Product: "navel-orange", Grade: "A", NetGrams: grams, PriceFenPerKg: 500,
		WeighedAt: timestamppb.New(h.now.Add(-240 * time.Hour)),
	})
}

func (h *harness) procurementEvent(t testing.TB, id, kind string, msg proto.Message) {
	t.Helper()
	ev, err := eventstore.NewEvent("procurement.delivery."+id+"."+kind, msg, eventstore.Metadata{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.store.Append(testCtx(t), eventstore.AppendRequest{Stream: "PROCUREMENT", Aggregate: "procurement.delivery." + id + ".>",
		Expect: eventstore.ExpectAny, Events: []eventstore.Event{ev}}); err != nil {
		t.Fatal(err)
	}
}

func lotSale(line, lot string, grams int64) domain.SaleLine {
	l := sale(line, grams)
	l.FarmerID, l.DeliveryID = "", lot
	return l
}

// TestSalesNeverClaimMoreThanALotDelivered: a 1,000 kg lot, 600 kg sold in
// one report; 500 kg more in another report is refused naming the lot and
// the 400 kg left, and so is a restatement of the first that adds them;
// a correction of the lot is what the next claim is checked against; a
// restatement that gives grams back frees them for others.
func TestSalesNeverClaimMoreThanALotDelivered(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.setUp(t)
	ctx := testCtx(t)
	h.deliver(t, "D1", 1_000_000)
	if _, err := h.app.ReportSales(ctx, report("r1", lotSale("L1", "D1", 600_000))); err != nil {
		t.Fatal(err)
	}
	_, err := h.app.ReportSales(ctx, report("r2", sale("other", 5_000), lotSale("L1", "D1", 500_000)))
	if failure.KindOf(err) != failure.KindFailedPrecondition || !strings.Contains(err.Error(), "lot D1 has 400 kg left") ||
		!strings.Contains(err.Error(), "lines[1].grams") {
		t.Fatalf("500 kg more of a lot with 400 kg left: %v", err)
	}
	restated := report("r1", lotSale("L1", "D1", 600_000), lotSale("L2", "D1", 500_000))
	restated.Report.Revision, restated.Fingerprint = 2, "r1#2"
	if _, err := h.app.ReportSales(ctx, restated); failure.KindOf(err) != failure.KindFailedPrecondition {
		t.Fatalf("a restatement claiming 1,100 kg of a 1,000 kg lot: %v", err)
	}
	if _, err := h.app.ReportSales(ctx, report("r2", lotSale("L1", "D1", 400_000))); err != nil {
		t.Fatalf("the 400 kg left: %v", err)
	}
	lot := domain.NewLot("D1")
	if _, err := h.events.Load(ctx, lot); err != nil {
		t.Fatal(err)
	}
	if lot.Claimed() != 1_000_000 {
		t.Fatalf("lot claims %d g, want all 1,000 kg", lot.Claimed())
	}
	// r1 restated down to 100 kg gives 500 kg back; the lot is corrected
	// to 900 kg, so 400 kg are left.
	down := report("r1", lotSale("L1", "D1", 100_000))
	down.Report.Revision, down.Fingerprint = 3, "r1#3"
	if _, err := h.app.ReportSales(ctx, down); err != nil {
		t.Fatal(err)
	}
	h.procurementEvent(t, "D1", "delivery_corrected", &procurementevents.DeliveryCorrected{
		DeliveryId: "D1", FarmerId: "F1", CorrectionNumber: 1, NetGrams: 900_000, Grade: "A", PriceFenPerKg: 500, Product: "navel-orange",
	})
	_, err = h.app.ReportSales(ctx, report("r3", lotSale("L1", "D1", 400_001)))
	if failure.KindOf(err) != failure.KindFailedPrecondition || !strings.Contains(err.Error(), "has 400 kg left (900 kg delivered, 500 kg claimed") {
		t.Fatalf("400.001 kg of the corrected lot: %v", err)
	}
	if _, err := h.app.ReportSales(ctx, report("r3", lotSale("L1", "D1", 400_000))); err != nil {
		t.Fatal(err)
	}
}

// barrier holds the first n report appends until all n have arrived: they
// were all decided on the same claims of the lot.
type barrier struct {
	app.Events
	n       int32
	arrived atomic.Int32
	all     chan struct{}
	once    sync.Once
}

func (b *barrier) Append(ctx context.Context, agg domain.Aggregate, key, fp string, md eventstore.Metadata, changes ...domain.Change) (eventstore.AppendResult, error) {
	if _, ok := agg.(*domain.Report); ok {
		if n := b.arrived.Add(1); n <= b.n {
			if n == b.n {
				b.once.Do(func() { close(b.all) })
			}
			select {
			case <-b.all:
			case <-ctx.Done():
				return eventstore.AppendResult{}, ctx.Err()
			}
		}
	}
	return b.Events.Append(ctx, agg, key, fp, md, changes...)
}

// TestConcurrentReportsCannotOverclaimALot: two reports of 600 kg each of
// a 1,000 kg lot, both checked against the same (empty) claims before
// either lands: the lot's guard lets one in; the other is decided again
// and refused.
func TestConcurrentReportsCannotOverclaimALot(t *testing.T) {
	t.Parallel()
	b := &barrier{n: 2, all: make(chan struct{})}
	h := newHarness(t, func(e app.Events) app.Events { b.Events = e; return b })
	h.setUp(t)
	ctx := testCtx(t)
	h.deliver(t, "D1", 1_000_000)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for k, id := range []string{"ra", "rb"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[k] = h.app.ReportSales(ctx, report(id, lotSale("L1", "D1", 600_000)))
		}()
	}
	wg.Wait()
	ok, refused := 0, 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case failure.KindOf(err) == failure.KindFailedPrecondition && strings.Contains(err.Error(), "lot D1 has 400 kg left"):
			refused++
		default:
			t.Errorf("unexpected outcome: %v", err)
		}
	}
	if ok != 1 || refused != 1 {
		t.Fatalf("%d accepted, %d refused; want one of each", ok, refused)
	}
	lot := domain.NewLot("D1")
	if _, err := h.events.Load(ctx, lot); err != nil {
		t.Fatal(err)
	}
	if lot.Claimed() != 600_000 {
		t.Fatalf("lot claims %d g, want 600 kg", lot.Claimed())
	}
}

// TestManyConcurrentReportsNeverOverclaim: eight reports of 200 kg each
// race for a 1,000 kg lot through the store's group commit: exactly five
// land, and the lot's claims are exactly its grams.
func TestManyConcurrentReportsNeverOverclaim(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.setUp(t)
	ctx := testCtx(t)
	h.deliver(t, "D1", 1_000_000)
	var (
		wg       sync.WaitGroup
		accepted atomic.Int32
	)
	for k := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := h.app.ReportSales(ctx, report(fmt.Sprintf("r%d", k), lotSale("L1", "D1", 200_000)))
			switch {
			case err == nil:
				accepted.Add(1)
			case failure.KindOf(err) == failure.KindFailedPrecondition, failure.KindOf(err) == failure.KindConflict:
			default:
				t.Errorf("report r%d: %v", k, err)
			}
		}()
	}
	wg.Wait()
	lot := domain.NewLot("D1")
	if _, err := h.events.Load(ctx, lot); err != nil {
		t.Fatal(err)
	}
	if lot.Claimed() != 200_000*int64(accepted.Load()) || lot.Claimed() > 1_000_000 {
		t.Fatalf("%d reports accepted, the lot claims %d g; never more than 1,000 kg", accepted.Load(), lot.Claimed())
	}
	if accepted.Load() != 5 {
		t.Errorf("%d reports accepted, want 5 (a lost race is retried until the lot is full)", accepted.Load())
	}
}
